/**
 * GET /health, /health/ready, /health/live and connector_health_check_ok, each failing check provoked
 * for real and cleared again: an old event in the queue, dead letters over the threshold, a worker
 * whose lane hangs while events wait, a PostgreSQL server of the test's own stopped and started, a
 * queue on a full disk (a tiny tmpfs; needs mount privileges, skipped otherwise). Thresholds are set
 * short (a second) so that each case takes about that long.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { PostgresDatabase } from '../../src/db/postgres/postgres-database.ts';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { RateLimiter } from '../../src/http/rate-limiter.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { Queue } from '../../src/queue/queue.ts';
import { buildApp } from '../../src/server/app.ts';
import { DEFAULT_HEALTH_THRESHOLDS, HealthChecks, healthThresholds, type HealthThresholds, type WorkerProbe } from '../../src/server/health.ts';
import { Dispatcher } from '../../src/workers/dispatcher.ts';
import { findPostgresBinaries, startPrivatePostgres } from '../helpers/services.ts';
import { ScriptedSource, type TestPayload } from '../workers/scripted-source.ts';

const log = createLogger({ level: 'silent', console: false });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let counter = 0;
function ev(recordId: string, receivedAt = new Date()): QueueEvent {
  const payload: TestPayload = { recordId, title: `task ${recordId}`, updatedAt: new Date(Date.UTC(2026, 10, 1)).toISOString() };
  return { id: `health-${++counter}-${recordId}`, source: 'teamwork', type: 'TASK.UPDATED', entityKey: `task:${recordId}`, origin: 'webhook', receivedAt, payload };
}

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-health-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function fileQueue(dir: string): Promise<FileQueue> {
  const queue = await FileQueue.open({ dir, log });
  cleanups.push(() => queue.close());
  return queue;
}

/** An app whose /health runs `checks` (made from the queue, the probe and the thresholds). */
async function appWith(queue: Queue, options: { queueDir?: string; worker?: WorkerProbe; thresholds?: Partial<HealthThresholds>; lifecycle?: Lifecycle } = {}): Promise<{ app: FastifyInstance; health: HealthChecks }> {
  const lifecycle = options.lifecycle ?? new Lifecycle();
  const health = new HealthChecks({ queue, lifecycle, ...options });
  const app = await buildApp({ log, queue, sources: [], lifecycle, maxBodyBytes: 1 << 20, health });
  cleanups.push(async () => {
    await app.close();
    health.close();
  });
  return { app, health };
}

/** A JSON answer, read loosely (the assertions say what it must hold). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the tests walk the JSON freely
type Body = Record<string, any>;

async function get(app: FastifyInstance, url: string): Promise<{ status: number; body: Body }> {
  const res = await app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() };
}

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('health settings', () => {
  it('are read from HEALTH_* with documented defaults, and a bad value names the variable', () => {
    expect(healthThresholds(parseConfig({}))).toEqual(DEFAULT_HEALTH_THRESHOLDS);
    expect(healthThresholds(parseConfig({ HEALTH_WORKER_STALL_SECONDS: '30', HEALTH_MAX_QUEUE_AGE_SECONDS: '120', HEALTH_DATABASE_DOWN_SECONDS: '0', HEALTH_MAX_DEAD_LETTERS: '0' }))).toEqual({ workerStallMs: 30_000, maxQueueAgeMs: 120_000, databaseDownMs: 0, maxDeadLetters: 0 });
    expect(() => parseConfig({ HEALTH_WORKER_STALL_SECONDS: 'soon' })).toThrow(/Invalid setting HEALTH_WORKER_STALL_SECONDS: must be a number/);
    expect(() => parseConfig({ HEALTH_MAX_DEAD_LETTERS: '-1' })).toThrow(/Invalid setting HEALTH_MAX_DEAD_LETTERS: must be at least 0/);
    expect(() => parseConfig({ ALERT_WEBHOOK_FORMAT: 'xml' })).toThrow(/Invalid setting ALERT_WEBHOOK_FORMAT: must be slack or json/);
    // The alert URL is a secret (a Slack URL is a credential): never echoed back.
    const bad = (() => {
      try {
        parseConfig({ ALERT_WEBHOOK_URL: 'ftp://hooks.example/T000/B000/s3cr3t' });
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    })();
    expect(bad).toMatch(/Invalid setting ALERT_WEBHOOK_URL: must be an http\(s\) URL/);
    expect(bad).not.toContain('s3cr3t');
  });
});

describe('GET /health', () => {
  it('keeps the queue facts and adds `checks`; 503 naming queue_age for an event older than HEALTH_MAX_QUEUE_AGE_SECONDS, 200 once it is done', async () => {
    const queue = await fileQueue(path.join(tempDir(), 'queue'));
    const { app } = await appWith(queue, { thresholds: { maxQueueAgeMs: 3600_000 } });
    const fresh = await get(app, '/health');
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ status: 'ok', queue: { size: 0, pending: 0, deadLettered: 0 }, checks: { queue: { ok: true }, queue_age: { ok: true }, dead_letters: { ok: true } } });
    expect(fresh.body.checks).not.toHaveProperty('worker');

    // A delivery received two hours ago still waits (its worker is away).
    await queue.enqueue([ev('1', new Date(Date.now() - 2 * 3600_000))]);
    const old = await get(app, '/health');
    expect(old.status).toBe(503);
    expect(old.body).toMatchObject({ status: 'unhealthy', queue: { pending: 1 }, checks: { queue_age: { ok: false, reason: expect.stringMatching(/oldest event not yet done is 7200 s old \(HEALTH_MAX_QUEUE_AGE_SECONDS=3600\)/) }, queue: { ok: true } } });
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('connector_health_check_ok{check="queue_age"} 0');
    expect(metrics).toContain('connector_health_check_ok{check="queue"} 1');

    const [claimed] = await queue.claim();
    await queue.ack(claimed!.event.id);
    const done = await get(app, '/health');
    expect(done.status).toBe(200);
    expect(done.body.checks.queue_age).toEqual({ ok: true });
    expect((await app.inject({ method: 'GET', url: '/metrics' })).body).toContain('connector_health_check_ok{check="queue_age"} 1');
  });

  it('503 naming dead_letters over HEALTH_MAX_DEAD_LETTERS, 200 again once they are replayed', async () => {
    const queue = await fileQueue(path.join(tempDir(), 'queue'));
    const { app } = await appWith(queue, { thresholds: { maxDeadLetters: 1 } });
    await queue.enqueue([ev('10'), ev('11')]);
    for (const claimed of await queue.claim({ limit: 2 })) await queue.deadLetter(claimed.event.id, { code: 'CONN_ERR_HTTP_NOT_FOUND', message: 'task gone', retryable: false });
    const over = await get(app, '/health');
    expect(over.status).toBe(503);
    expect(over.body.checks.dead_letters).toEqual({ ok: false, reason: expect.stringMatching(/^2 dead letters \(HEALTH_MAX_DEAD_LETTERS=1\)/) });
    await queue.replayDeadLetters({ all: true });
    const replayed = await get(app, '/health');
    expect(replayed.status).toBe(200);
    expect(replayed.body).toMatchObject({ queue: { deadLettered: 0, pending: 2 }, checks: { dead_letters: { ok: true } } });
  });

  it('503 naming the worker while its lane hangs and events wait longer than HEALTH_WORKER_STALL_SECONDS; 200 once it claims again; not judged while the vendor is paused', async () => {
    const dir = tempDir();
    const queue = await fileQueue(path.join(dir, 'queue'));
    const db = new SqliteDatabase({ file: path.join(dir, 'connector.db') });
    await db.migrate();
    cleanups.push(() => db.close());
    const lifecycle = new Lifecycle();
    const teamwork = new ScriptedSource('teamwork');
    const vendor = new RateLimiter({});
    teamwork.vendor = vendor;
    const dispatcher = new Dispatcher({ queue, db, sources: [teamwork], log, lifecycle, idleWaitMs: 50 });
    let running = true;
    // What src/main.ts's WorkerStart.health() gives: the database's own health, the worker's state, the vendors'.
    const worker: WorkerProbe = { facts: async () => ({ database: await db.health(), worker: { state: running ? 'running' : 'stopped' }, vendors: { teamwork: vendor.status() } }) };
    const { app } = await appWith(queue, { worker, lifecycle, thresholds: { workerStallMs: 1000 } });
    dispatcher.start();
    cleanups.push(() => dispatcher.stop());

    let release!: () => void;
    const hung = ev('20');
    teamwork.script(hung.id, { hold: new Promise<void>((resolve) => (release = resolve)) });
    cleanups.push(() => release()); // before the dispatcher's stop, also when the test fails
    await queue.enqueue([hung]);
    await until('the hanging event claimed', () => teamwork.calls.length === 1);
    await queue.enqueue([ev('21')]);
    const early = await get(app, '/health');
    expect(early.status).toBe(200);
    expect(early.body).toMatchObject({ worker: { state: 'running' }, database: { ok: true }, checks: { worker: { ok: true }, database: { ok: true } } });

    await sleep(1200);
    const stalled = await get(app, '/health');
    expect(stalled.status).toBe(503);
    expect(stalled.body.checks.worker).toEqual({ ok: false, reason: expect.stringMatching(/^1 events wait and the worker has claimed none for \d\.\d s \(HEALTH_WORKER_STALL_SECONDS=1\)$/) });

    // A paused vendor's events wait by design: not a stall.
    vendor.pauseUntil(Date.now() + 300, 'answered 429, asking to wait 0.3 s');
    const paused = await get(app, '/health');
    expect(paused.status).toBe(200);
    expect(paused.body.checks.worker).toEqual({ ok: true, detail: expect.stringMatching(/not judged while teamwork is paused/) });
    await sleep(400);
    expect((await get(app, '/health')).status).toBe(503);

    release();
    await until('both events done', async () => (await queue.stats()).pending + (await queue.stats()).inFlight === 0);
    const recovered = await get(app, '/health');
    expect(recovered.status).toBe(200);
    expect(recovered.body.checks.worker).toEqual({ ok: true });

    // A worker that is not running (standby, waiting for the database) is not judged.
    running = false;
    await dispatcher.stop();
    await queue.enqueue([ev('22')]);
    await sleep(1100);
    const standing = await get(app, '/health');
    expect(standing.status).toBe(200);
    expect(standing.body.checks.worker).toEqual({ ok: true, detail: 'not judged: the worker is stopped' });
  });

  it('/health/live answers 200 whatever the checks say; /health/ready is 200 with the queue writable and no worker', async () => {
    const queue = await fileQueue(path.join(tempDir(), 'queue'));
    const { app } = await appWith(queue, { thresholds: { maxDeadLetters: 0 } });
    await queue.enqueue([ev('30')]);
    const [claimed] = await queue.claim();
    await queue.deadLetter(claimed!.event.id, { code: 'CONN_ERR_HTTP_NOT_FOUND', message: 'gone', retryable: false });
    expect((await get(app, '/health')).status).toBe(503);
    expect(await get(app, '/health/live')).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await get(app, '/health/ready')).toEqual({ status: 200, body: { status: 'ready', checks: { queue: { ok: true } } } });
  });
});

const postgresBinaries = findPostgresBinaries();
if (postgresBinaries === null) {
  if (process.env.CI === 'true') throw new Error('PostgreSQL binaries (initdb, pg_ctl) are required under CI=true');
  console.warn('[tests] no PostgreSQL binaries (initdb) here; skipping the database-outage /health case');
}

describe('the database check, with a PostgreSQL server of the test\'s own stopped and started', () => {
  it.skipIf(postgresBinaries === null)('fails after HEALTH_DATABASE_DOWN_SECONDS (ok with a detail before), /health/ready at once; both recover when it is back', async () => {
    const pg = await startPrivatePostgres();
    if (pg === null) return;
    cleanups.push(() => pg.destroy());
    const db = new PostgresDatabase({ connectionString: pg.url, log });
    await db.migrate();
    cleanups.push(() => db.close());
    const queue = await fileQueue(path.join(tempDir(), 'queue'));
    const worker: WorkerProbe = { facts: async () => ({ database: await db.health(), worker: { state: 'running' }, vendors: {} }) };
    const { app } = await appWith(queue, { worker, thresholds: { databaseDownMs: 1000 } });
    expect((await get(app, '/health')).status).toBe(200);
    expect((await get(app, '/health/ready')).body).toEqual({ status: 'ready', checks: { queue: { ok: true }, database: { ok: true } } });

    await pg.stop('fast');
    const first = await get(app, '/health');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ database: { ok: false }, checks: { database: { ok: true, detail: expect.stringMatching(/unavailable for .*fails after HEALTH_DATABASE_DOWN_SECONDS=1/) } } });
    const notReady = await get(app, '/health/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.body).toMatchObject({ status: 'not ready', checks: { queue: { ok: true }, database: { ok: false, reason: expect.stringMatching(/the database is not reachable/) } } });

    await sleep(1100);
    const down = await get(app, '/health');
    expect(down.status).toBe(503);
    expect(down.body.checks.database).toEqual({ ok: false, reason: expect.stringMatching(/^the database has been unavailable for \d\.\d s: .*\(HEALTH_DATABASE_DOWN_SECONDS=1\)$/) });
    expect((await app.inject({ method: 'GET', url: '/metrics' })).body).toContain('connector_health_check_ok{check="database"} 0');

    await pg.start();
    await until('the database back in /health', async () => (await get(app, '/health')).status === 200, 10_000);
    expect((await get(app, '/health/ready')).status).toBe(200);
    // The outage clock starts again from zero on the next outage.
    await pg.stop('fast');
    expect((await get(app, '/health')).status).toBe(200);
  });
});

/** Whether this process may mount a tmpfs (root in a container that allows it). */
function canMount(): boolean {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mountable = canMount();
// As test/log-disk-full.test.ts: a full disk needs mount privileges, which CI containers may not grant.
if (!mountable) console.warn('[tests] cannot mount a tmpfs here (needs root); skipping the full-disk /health case');

describe.skipIf(!mountable)('the queue check on a full disk', () => {
  it('503 naming the queue (cannot be written) on /health and /health/ready; 200 once there is room', async () => {
    const dir = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    cleanups.push(() => {
      execFileSync('umount', ['-l', dir]);
    });
    const queueDir = path.join(dir, 'queue');
    const queue = await fileQueue(queueDir);
    const { app } = await appWith(queue, { queueDir });
    expect((await get(app, '/health')).status).toBe(200);

    const filler = path.join(dir, 'filler');
    try {
      writeFileSync(filler, Buffer.alloc(2 * 1024 * 1024));
    } catch {
      // ENOSPC: the disk is full, which is the point.
    }
    const full = await get(app, '/health');
    expect(full.status).toBe(503);
    expect(full.body.checks.queue).toEqual({ ok: false, reason: expect.stringMatching(/^the queue cannot be written \(file\): .*ENOSPC/) });
    const ready = await get(app, '/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.queue.ok).toBe(false);

    rmSync(filler);
    expect((await get(app, '/health')).status).toBe(200);
    expect((await get(app, '/health/ready')).status).toBe(200);
  });
});
