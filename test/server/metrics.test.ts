/**
 * GET /metrics as a scraper first sees it: the delivery counters exist at zero for every source and
 * outcome before any delivery (so rate() and alerts have a series from the start), and the process
 * metrics carry the connector_ prefix once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import { SOURCE_NAMES } from '../../src/model.ts';
import { createQueue } from '../../src/queue/create-queue.ts';
import { buildApp } from '../../src/server/app.ts';
import type { RateLimiter } from '../../src/http/rate-limiter.ts';
import { createSources } from '../../src/sources/index.ts';
import { signTeamwork, teamworkTaskPayload } from '../helpers/deliveries.ts';
import { requireRedis, startPrivateRedis } from '../helpers/services.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'conn-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('/metrics', () => {
  it('has connector_deliveries_total at 0 per source and outcome before any delivery, and no connector_process_process_', async () => {
    const log = createLogger({ level: 'silent', console: false });
    const config = parseConfig({ DATA_DIR: path.join(dir, 'data') });
    const lifecycle = new Lifecycle(() => {});
    const queue = await createQueue(config, { log, lifecycle });
    const app = await buildApp({ log, queue, sources: createSources(config, { log }), lifecycle, maxBodyBytes: 1 << 20 });
    try {
      const body = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      for (const source of SOURCE_NAMES) {
        for (const outcome of ['accepted', '401', '503']) expect(body).toContain(`connector_deliveries_total{source="${source}",outcome="${outcome}"} 0`);
        for (const outcome of ['succeeded', 'retrying', 'dead_lettered']) expect(body).toContain(`connector_events_total{source="${source}",outcome="${outcome}"} 0`);
      }
      expect(body).not.toContain('connector_process_process_');
      expect(body).toMatch(/^connector_process_cpu_user_seconds_total \d/m);
      expect(body).toMatch(/^connector_nodejs_heap_size_used_bytes \d/m);
    } finally {
      await app.close();
      await queue.close();
    }
  });
});

describe('/metrics: vendors (issue 15 item 1)', () => {
  it('shows each vendor with an API paused or not, and its requests by outcome', async () => {
    const log = createLogger({ level: 'silent', console: false });
    const config = parseConfig({ DATA_DIR: path.join(dir, 'data-vendors'), MISSIVE_API_TOKEN: 'missive_pat-metrics', TEAMWORK_API_KEY: 'tw-metrics', TEAMWORK_SITE: 'acme' });
    const lifecycle = new Lifecycle(() => {});
    const queue = await createQueue(config, { log, lifecycle });
    const sources = createSources(config, { log });
    const app = await buildApp({ log, queue, sources, lifecycle, maxBodyBytes: 1 << 20 });
    try {
      const missive = sources.find((s) => s.name === 'missive')?.vendor as RateLimiter;
      missive.record('answered', '/v1/conversations');
      missive.record('rate-limited', '/v1/conversations');
      missive.pauseUntil(Date.now() + 60_000, 'answered 429, asking to wait 60 s');
      const body = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(body).toContain('connector_vendor_paused{source="missive"} 1');
      expect(body).toContain('connector_vendor_paused{source="teamwork"} 0');
      expect(body).toContain('connector_vendor_requests_total{source="missive",outcome="answered"} 1');
      expect(body).toContain('connector_vendor_requests_total{source="missive",outcome="rate_limited"} 1');
      expect(body).toContain('connector_vendor_requests_total{source="teamwork",outcome="failed"} 0');
    } finally {
      await app.close();
      await queue.close();
    }
  });
});

describe('/health', () => {
  it('with the worker\'s facts (healthDetails): the database down is shown at once, /health/ready 503 at once, /health 503 only after HEALTH_DATABASE_DOWN_SECONDS (default 60); /health/live always 200', async () => {
    const log = createLogger({ level: 'silent', console: false });
    const config = parseConfig({ DATA_DIR: path.join(dir, 'health') });
    const lifecycle = new Lifecycle(() => {});
    const queue = await createQueue(config, { log, lifecycle });
    let database = { ok: false, backend: 'sqlite', detail: 'the database file is gone' };
    const app = await buildApp({ log, queue, sources: createSources(config, { log }), lifecycle, maxBodyBytes: 1 << 20, healthDetails: async () => ({ database }) });
    try {
      const down = await app.inject({ method: 'GET', url: '/health' });
      expect(down.statusCode).toBe(200);
      expect(down.json()).toMatchObject({ status: 'ok', database: { ok: false, detail: 'the database file is gone' }, checks: { database: { ok: true, detail: expect.stringMatching(/unavailable for .*the database file is gone; fails after HEALTH_DATABASE_DOWN_SECONDS=60/) } } });
      const ready = await app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toMatchObject({ status: 'not ready', checks: { database: { ok: false, reason: 'the database is not reachable: the database file is gone' } } });
      expect((await app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
      database = { ok: true, backend: 'sqlite', detail: '' };
      const up = await app.inject({ method: 'GET', url: '/health' });
      expect(up.statusCode).toBe(200);
      expect(up.json()).toMatchObject({ status: 'ok' });
    } finally {
      await app.close();
      await queue.close();
    }
  });
});

describe.skipIf(!(await requireRedis()).available)('/metrics and /health with the queue engine away (issue 16)', () => {
  it('answer at once: the queue gauges missing and connector_queue_readable 0, /health 503 naming the queue; a delivery 503 within 3 s', async () => {
    // A Redis of this test's own (never the shared one) on a free port, crashed halfway.
    const redis = await startPrivateRedis();
    if (redis === null) throw new Error('redis-server is not installed');
    try {
      const log = createLogger({ level: 'silent', console: false });
      const config = parseConfig({ DATA_DIR: path.join(dir, 'data-engine'), QUEUE_BACKEND: 'redis', REDIS_URL: redis.url, REDIS_DURABILITY: 'relaxed', TEAMWORK_WEBHOOK_TOKEN: 'metrics-token' });
      const lifecycle = new Lifecycle(() => {});
      const queue = await createQueue(config, { log, lifecycle });
      const app = await buildApp({ log, queue, sources: createSources(config, { log }), lifecycle, maxBodyBytes: 1 << 20 });
      try {
        const before = (await app.inject({ method: 'GET', url: '/metrics' })).body;
        expect(before).toContain('connector_queue_readable 1');
        expect(before).toContain('connector_queue_events{state="pending"} 0');
        expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);

        await redis.stop('kill');
        let started = Date.now();
        const metrics = await app.inject({ method: 'GET', url: '/metrics' });
        expect(metrics.statusCode).toBe(200);
        expect(metrics.body).toContain('connector_queue_readable 0');
        expect(metrics.body).not.toContain('connector_queue_events{');
        const health = await app.inject({ method: 'GET', url: '/health' });
        expect(health.statusCode).toBe(503);
        expect(health.json()).toMatchObject({ status: 'unhealthy', queue: { ok: false, backend: 'redis' } });
        expect(Date.now() - started).toBeLessThan(8_000);

        started = Date.now();
        const body = JSON.stringify(teamworkTaskPayload(4242));
        const delivery = await app.inject({
          method: 'POST',
          url: '/webhooks/teamwork',
          headers: { 'content-type': 'application/json', 'x-projects-event': 'TASK.CREATED', 'x-projects-signature': signTeamwork('metrics-token', body) },
          payload: body,
        });
        expect(delivery.statusCode).toBe(503);
        expect(delivery.json()).toMatchObject({ error: 'CONN_ERR_QUEUE_UNAVAILABLE' });
        expect(Date.now() - started).toBeLessThan(3_500);
      } finally {
        await app.close();
        await queue.close();
      }
    } finally {
      await redis.destroy();
    }
  }, 30_000);
});
