/**
 * Alerts end to end, with real parts: a file queue, a SQLite database and a dispatcher whose lanes
 * handle (or hang on, or dead-letter) events; the Teamwork simulator answering 401 to a rotated-away
 * API key and listing our webhooks; a PostgreSQL server of the test's own stopped (when its binaries
 * are installed); and a local HTTP receiver standing for ALERT_WEBHOOK_URL.
 *
 * The storm: for STORM_MS every condition is provoked again and again (dead letters every 100 ms, a
 * 401 every 50 ms with accepted requests between them, a hung lane with events waiting and ageing,
 * missed webhooks every 300 ms, the database down), then everything is put right. The receiver must
 * get exactly one `started` and one `cleared` per condition. Thresholds and the clear delay are short
 * (1-2 s) so that the whole storm takes STORM_MS plus a few seconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { manageWebhooks } from '../../src/admin/register-webhooks.ts';
import { ALERT_CONDITIONS, type AlertCondition } from '../../src/alerts/alert.ts';
import { AlertSender, jsonBody, slackBody } from '../../src/alerts/alert-sender.ts';
import { createAlerts, watchVendorAuth } from '../../src/alerts/alerts.ts';
import { judgeRegistration, webhookLister } from '../../src/alerts/webhook-registrations.ts';
import { parseConfig } from '../../src/config.ts';
import { PostgresDatabase } from '../../src/db/postgres/postgres-database.ts';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { FakeClock } from '../../src/http/index.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import type { QueueEvent, SourceName } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import { buildApp } from '../../src/server/app.ts';
import { HealthChecks, type WorkerProbe } from '../../src/server/health.ts';
import { createTeamworkLimiter, TeamworkClient } from '../../src/sources/teamwork/client.ts';
import { TASK_WEBHOOK_EVENTS } from '../../src/sources/teamwork/webhook.ts';
import { Dispatcher } from '../../src/workers/dispatcher.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { findPostgresBinaries, startPrivatePostgres, type PrivatePostgres } from '../helpers/services.ts';
import { ScriptedSource, type TestPayload } from '../workers/scripted-source.ts';

/** How long every condition is provoked, again and again, in the storm test. */
/** 10 s in the suite; `ALERT_STORM_SECONDS=120 npx vitest run test/alerts` runs the 2-minute storm. */
const STORM_MS = Number(process.env.ALERT_STORM_SECONDS ?? 10) * 1000;
/** How long a condition must have been over before its alert clears (ALERT_CLEAR_AFTER_MS is 60 s in production). */
const CLEAR_AFTER_MS = 2_000;

const silent = createLogger({ level: 'silent', console: false });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(25);
  }
}

/** A logger whose JSON lines are kept (to assert on what is logged, and what is not). */
function sinkLogger(): { log: Logger; lines: Array<Record<string, unknown>>; text: () => string } {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  const log = createLogger({ level: 'debug', console: false, destination });
  return { log, get lines() { return raw.map((l) => JSON.parse(l) as Record<string, unknown>); }, text: () => raw.join('\n') };
}

interface Received {
  body: Record<string, unknown>;
  at: number;
  path: string;
}

/** ALERT_WEBHOOK_URL's stand-in: records every POST; `failNext(n)` answers the next n with 503, `down()` closes it. */
async function startReceiver(): Promise<{ url: string; received: Received[]; failNext(n: number, status?: number): void; attempts: number; close(): Promise<void> }> {
  const received: Received[] = [];
  let failing = 0;
  let failStatus = 503;
  const state = { attempts: 0 };
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.attempts++;
      if (failing > 0) {
        failing--;
        res.writeHead(failStatus).end('try later');
        return;
      }
      received.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>, at: Date.now(), path: req.url ?? '' });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/services/T0001/B0002/s3cr3t-path-token`,
    received,
    failNext(n: number, status = 503) {
      failing = n;
      failStatus = status;
    },
    get attempts() {
      return state.attempts;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let counter = 0;
function ev(source: SourceName, recordId: string): QueueEvent {
  const payload: TestPayload = { recordId, title: `record ${recordId}`, updatedAt: new Date(Date.UTC(2026, 10, 1)).toISOString() };
  return {
    id: `alert-${++counter}-${recordId}`,
    source,
    type: source === 'teamwork' ? 'TASK.UPDATED' : 'new_comment',
    entityKey: `${source === 'teamwork' ? 'task' : 'conversation'}:${recordId}`,
    origin: 'webhook',
    receivedAt: new Date(),
    payload,
  };
}

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-alerts-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const postgres = findPostgresBinaries() !== null;
if (!postgres && process.env.CI === 'true') throw new Error('PostgreSQL binaries (initdb, pg_ctl) are required under CI=true');
if (!postgres) console.warn('[tests] no PostgreSQL binaries (initdb) here; the alert storm runs without the database_unavailable condition');

describe('alerts', () => {
  it(`one "started" and one "cleared" per condition over a ${STORM_MS / 1000} s storm of every condition`, { timeout: STORM_MS + 40_000 }, async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sink = sinkLogger();
    const config = parseConfig({ ALERT_WEBHOOK_URL: receiver.url, ALERT_WEBHOOK_FORMAT: 'json', MISSED_WEBHOOKS_ALERT_COUNT: '5' });
    const tuning = { tickMs: 200, clearAfterMs: CLEAR_AFTER_MS, missedWindowMs: 3000, retryDelay: () => 50, maxPerMinute: 1000 };
    const thresholds = { workerStallMs: 1000, maxQueueAgeMs: 1000, databaseDownMs: 1000, maxDeadLetters: 1_000_000 };

    /** A worker process: its queue, SQLite database, dispatcher, health checks and alerts. */
    async function worker(sources: ScriptedSource[], databaseHealth?: () => Promise<Record<string, unknown>>, maxQueueAgeMs = thresholds.maxQueueAgeMs) {
      const dir = tempDir();
      const queue = await FileQueue.open({ dir: path.join(dir, 'queue'), log: silent });
      cleanups.push(() => queue.close());
      const db = new SqliteDatabase({ file: path.join(dir, 'connector.db') });
      await db.migrate();
      cleanups.push(() => db.close());
      const lifecycle = new Lifecycle();
      cleanups.push(watchVendorAuth(sources, lifecycle, silent));
      const dispatcher = new Dispatcher({ queue, db, sources, log: silent, lifecycle, idleWaitMs: 50 });
      // What src/main.ts's WorkerStart.health() gives.
      const probe: WorkerProbe = {
        facts: async () => ({
          database: databaseHealth === undefined ? await db.health() : await databaseHealth(),
          worker: { state: 'running' },
          vendors: Object.fromEntries(sources.flatMap((s) => (s.vendor === undefined ? [] : [[s.name, s.vendor.status()]]))),
        }),
      };
      const health = new HealthChecks({ queue, lifecycle, worker: probe, thresholds: { ...thresholds, maxQueueAgeMs } });
      cleanups.push(() => health.close());
      const alerts = createAlerts({ config, lifecycle, health, log: sink.log, tuning });
      alerts.start();
      cleanups.push(() => alerts.stop());
      dispatcher.start();
      cleanups.push(() => dispatcher.stop());
      const app = await buildApp({ log: silent, queue, sources: [], lifecycle, maxBodyBytes: 1 << 20, health, alerts });
      cleanups.push(() => app.close());
      return { queue, lifecycle, alerts, app };
    }

    // Worker A: the vendor is the Teamwork simulator, where our key was rotated away (401) and the new
    // one works (2xx); missive events the vendor says are gone; a database of its own (PostgreSQL,
    // stopped during the storm).
    const sim = await startTeamworkSimulator({ seed: 3, limits: { perMinute: 1_000_000 } });
    cleanups.push(() => sim.stop());
    const limiter = createTeamworkLimiter({ requestsPerMinute: 1_000_000 });
    const clock = new FakeClock({ now: Date.now(), autoAdvance: true });
    const rotatedAway = new TeamworkClient({ baseUrl: sim.url, apiKey: 'the-old-key', limiter, clock, maxAttempts: 1 });
    const current = new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, limiter, clock, maxAttempts: 1 });
    let pg: PrivatePostgres | null = null;
    let pgDb: PostgresDatabase | null = null;
    if (postgres) {
      const server = (await startPrivatePostgres()) as PrivatePostgres;
      pg = server;
      cleanups.push(() => server.destroy());
      const opened = new PostgresDatabase({ connectionString: server.url, log: silent });
      pgDb = opened;
      await opened.migrate();
      cleanups.push(() => opened.close());
    }
    const teamworkA = new ScriptedSource('teamwork');
    teamworkA.vendor = limiter;
    const missiveA = new ScriptedSource('missive');
    // (Its replayed dead letters keep their receipt times: a queue age threshold of a minute keeps them from counting.)
    const a = await worker([teamworkA, missiveA], pgDb === null ? undefined : async () => ({ ...(await (pgDb as PostgresDatabase).health()) }), 60_000);

    // Worker B: its lanes hang (a handler that never returns) while events wait and age.
    const teamworkB = new ScriptedSource('teamwork');
    const missiveB = new ScriptedSource('missive');
    const b = await worker([teamworkB, missiveB]);
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    cleanups.push(() => release()); // before the dispatchers stop, also when the test fails
    const hungT = ev('teamwork', 'hung');
    const hungM = ev('missive', 'hung');
    teamworkB.script(hungT.id, { hold });
    missiveB.script(hungM.id, { hold });
    await b.queue.enqueue([hungT, hungM]);
    await until('the hanging events claimed', () => teamworkB.calls.length === 1 && missiveB.calls.length === 1);

    // The storm.
    await pg?.stop('fast');
    const stormEnds = Date.now() + STORM_MS;
    await Promise.all([
      // Dead letters: a missive event the vendor says is gone, every 100 ms.
      (async () => {
        for (let i = 0; Date.now() < stormEnds; i++) {
          const gone = ev('missive', `gone-${i}`);
          missiveA.script(gone.id, { fail: 'CONN_ERR_HTTP_NOT_FOUND' });
          await a.queue.enqueue([gone]);
          await sleep(100);
        }
      })(),
      // 401s every 50 ms, and now and then an accepted request (the vendor's state flaps; the alert must not).
      (async () => {
        for (let i = 0; Date.now() < stormEnds; i++) {
          await (i % 10 === 9 ? current : rotatedAway).listWebhooks().catch(() => {});
          await sleep(50);
        }
      })(),
      // Reconciliation finds a change no webhook brought, every 300 ms.
      (async () => {
        while (Date.now() < stormEnds) {
          a.lifecycle.emit('reconcile:judged', { source: 'teamwork', judged: 4, missed: 1 });
          await sleep(300);
        }
      })(),
      // Events pile up behind worker B's hung lanes (worker stalled, queue age).
      (async () => {
        for (let i = 0; Date.now() < stormEnds; i++) {
          await b.queue.enqueue([ev('teamwork', `waiting-${i}`), ev('missive', `waiting-${i}`)]);
          await sleep(500);
        }
      })(),
    ]);
    const expectedA: AlertCondition[] = ['dead_letters', 'vendor_auth', 'missed_webhooks', ...(postgres ? (['database_unavailable'] as const) : [])];
    const expectedB: AlertCondition[] = ['queue_age', 'worker_stalled'];
    const expected = [...expectedA, ...expectedB];
    const seen = () => JSON.stringify({ a: a.alerts.active(), b: b.alerts.active(), received: receiver.received.map((r) => r.body) });
    expect(new Set(a.alerts.active().map((x) => x.condition)), seen()).toEqual(new Set(expectedA));
    expect(new Set(b.alerts.active().map((x) => x.condition)), seen()).toEqual(new Set(expectedB));
    const metricsA = (await a.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metricsA).toContain('connector_alert_active{condition="vendor_auth",source="teamwork"} 1');
    expect(metricsA).toContain('connector_alert_active{condition="vendor_auth",source="missive"} 0');
    expect(metricsA).toContain('connector_alert_active{condition="queue_unavailable",source=""} 0');
    expect(metricsA).toMatch(/connector_missed_webhooks_total\{source="teamwork"\} [1-9]\d/);
    expect((await b.app.inject({ method: 'GET', url: '/metrics' })).body).toContain('connector_alert_active{condition="worker_stalled",source=""} 1');

    // Everything put right: the lanes released, the dead letters replayed (they succeed now), the new
    // key only, no more misses, the database back.
    release();
    await a.queue.replayDeadLetters({ all: true });
    await current.listWebhooks();
    await pg?.start();
    await until('every alert cleared', () => a.alerts.active().length + b.alerts.active().length === 0, 20_000);
    await a.alerts.idle();
    await b.alerts.idle();

    const all = JSON.stringify(receiver.received.map((r) => r.body));
    const byState = (state: string) => receiver.received.filter((r) => r.body.alert === state).map((r) => r.body.condition as string).sort();
    expect(byState('started'), all).toEqual([...expected].sort());
    expect(byState('cleared'), all).toEqual([...expected].sort());
    for (const condition of expected) {
      const [start, clear] = receiver.received.filter((r) => r.body.condition === condition);
      expect(start?.body).toMatchObject({ alert: 'started', condition, since: expect.any(String), summary: expect.any(String), host: expect.any(String) });
      expect(clear?.body).toMatchObject({ alert: 'cleared', condition, since: start?.body.since, clearedAt: expect.any(String) });
    }
    expect(receiver.received.find((r) => r.body.condition === 'vendor_auth')?.body).toMatchObject({ source: 'teamwork', summary: expect.stringMatching(/teamwork refuses our credentials \(GET .* answered 401\)/) });
    expect((await a.app.inject({ method: 'GET', url: '/metrics' })).body).toContain(`connector_alerts_sent_total{state="cleared"} ${expectedA.length}`);
    // The URL is a secret: lines name its host only.
    expect(sink.text()).not.toContain('s3cr3t-path-token');
  });

  it('a message the receiver fails (503, then down) is retried with backoff and logged, then delivered once; a refusal (404) is not retried', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sink = sinkLogger();
    const delays: number[] = [];
    const sender = new AlertSender({ url: receiver.url, format: 'slack', log: sink.log, retryDelay: (attempt) => (delays.push(attempt), 20 * attempt), host: 'conn-1' });
    cleanups.push(() => sender.close());
    const message = { state: 'started' as const, condition: 'worker_stalled' as const, source: null, title: 'Worker stalled', summary: '3 events wait', since: new Date().toISOString() };

    receiver.failNext(3);
    const before = performance.now();
    sender.send(message);
    expect(performance.now() - before, 'send() never waits for the receiver').toBeLessThan(5);
    await sender.idle();
    expect(receiver.attempts).toBe(4);
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]?.body).toEqual({ text: ':red_circle: [conn-1] Worker stalled: 3 events wait' });
    expect(delays).toEqual([1, 2, 3]);
    const warns = sink.lines.filter((l) => l.level === 'warn');
    expect(warns.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^alert message not delivered to 127\.0\.0\.1:\d+ \(answered 503\); trying again in /),
      expect.stringMatching(/answered 503/),
      expect.stringMatching(/answered 503/),
    ]);
    expect(warns[0]).toMatchObject({ component: 'alerts', condition: 'worker_stalled', attempt: 1 });
    expect(sink.lines.some((l) => typeof l.msg === 'string' && /delivered to .* at attempt 4/.test(l.msg))).toBe(true);

    // The receiver down (connection refused) for a while, then up again on the same port.
    const down = await startReceiver();
    const url = down.url;
    await down.close();
    const downSink = sinkLogger();
    const later = new AlertSender({ url, format: 'json', log: downSink.log, retryDelay: () => 30, maxAttempts: 3, host: 'conn-1' });
    cleanups.push(() => later.close());
    later.send({ ...message, state: 'cleared', clearedAt: new Date().toISOString() });
    await later.idle();
    expect(downSink.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([expect.stringMatching(/\(ECONNREFUSED\); trying again/), expect.stringMatching(/\(ECONNREFUSED\); trying again/)]);
    expect(downSink.lines.find((l) => l.level === 'error')?.msg).toMatch(/not delivered to 127\.0\.0\.1:\d+ after 3 attempts \(ECONNREFUSED\); given up/);

    // 404: the URL is wrong or revoked; retrying cannot help.
    receiver.failNext(1, 404);
    const attempts = receiver.attempts;
    sender.send(message);
    await sender.idle();
    expect(receiver.attempts - attempts).toBe(1);
    expect(sink.lines.find((l) => l.level === 'error')?.msg).toMatch(/refused by 127\.0\.0\.1:\d+ \(answered 404\); not retried: check ALERT_WEBHOOK_URL/);
    expect(sink.text()).not.toContain('s3cr3t-path-token');
  });

  it('formats: slack text for started and cleared, json with every field', () => {
    const started = { state: 'started' as const, condition: 'vendor_auth' as const, source: 'missive' as const, title: 'Vendor authentication failing', summary: 'missive refuses our credentials', since: '2026-12-08T00:00:00.000Z' };
    expect(slackBody(started, 'h')).toEqual({ text: ':red_circle: [h] Vendor authentication failing (missive): missive refuses our credentials' });
    expect(slackBody({ ...started, state: 'cleared', clearedAt: '2026-12-08T00:03:00.000Z' }, 'h')).toEqual({ text: ':large_green_circle: [h] Cleared after 3 min: Vendor authentication failing (missive)' });
    expect(jsonBody({ ...started, state: 'cleared', clearedAt: '2026-12-08T00:03:00.000Z' }, 'h')).toEqual({ alert: 'cleared', condition: 'vendor_auth', source: 'missive', title: 'Vendor authentication failing', summary: 'missive refuses our credentials', since: '2026-12-08T00:00:00.000Z', clearedAt: '2026-12-08T00:03:00.000Z', host: 'h' });
    expect(ALERT_CONDITIONS).toContain('webhook_registration');
  });

  it('webhook registrations: missing, then disabled at the Teamwork simulator, raise one alert each time; registered and active again clears it; POLLING_ONLY never alerts on misses', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const sim = await startTeamworkSimulator({ seed: 5, limits: { perMinute: 1_000_000 } });
    cleanups.push(() => sim.stop());
    const client = new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, clock: new FakeClock({ now: Date.now(), autoAdvance: true }) });
    const publicUrl = 'https://connector.example.com';
    const settings = parseConfig({ TEAMWORK_BASE_URL: sim.url, TEAMWORK_API_KEY: sim.credentials.apiKey });
    expect(webhookLister(settings, null, silent), 'no public URL: nothing to look for').toBeNull();
    expect(webhookLister({ ...settings, POLLING_ONLY: true }, publicUrl, silent), 'POLLING_ONLY: no webhook expected').toBeNull();
    const list = webhookLister(settings, publicUrl, silent);
    if (list === null) throw new Error('expected a lister');
    const queue = await FileQueue.open({ dir: path.join(tempDir(), 'queue'), log: silent });
    cleanups.push(() => queue.close());
    const lifecycle = new Lifecycle();
    const health = new HealthChecks({ queue, lifecycle });
    cleanups.push(() => health.close());
    const alerts = createAlerts({
      config: parseConfig({ ALERT_WEBHOOK_URL: receiver.url, ALERT_WEBHOOK_FORMAT: 'json', WEBHOOK_REGISTRATION_CHECK_MINUTES: '1', POLLING_ONLY: 'true', MISSED_WEBHOOKS_ALERT_COUNT: '1' }),
      lifecycle,
      health,
      log: silent,
      listWebhooks: list,
      tuning: { tickMs: 100, clearAfterMs: 300, retryDelay: () => 20 },
    });
    cleanups.push(() => alerts.stop());
    alerts.start();
    await until('the first look', () => alerts.registrations() !== null);
    expect(alerts.registrations()?.sources).toEqual([
      { source: 'teamwork', state: 'missing', endpoint: `${publicUrl}/webhooks/teamwork`, hooks: 0, detail: expect.stringMatching(/no hook for .* for TASK\.CREATED, .* \(run npm run register-webhooks\)/) },
      { source: 'missive', state: 'unknown', endpoint: `${publicUrl}/webhooks/missive`, hooks: 0, detail: expect.stringMatching(/API credentials not set/) },
    ]);
    // POLLING_ONLY: a miss is expected, not alerted.
    lifecycle.emit('reconcile:judged', { source: 'missive', judged: 10, missed: 10 });
    await until('the missing alert', () => alerts.active().some((a) => a.condition === 'webhook_registration'));

    await manageWebhooks('register', { publicUrl, teamwork: { client, token: 'tok' }, missive: { api: null } });
    await alerts.checkRegistrations();
    expect(alerts.registrations()?.sources[0]).toMatchObject({ source: 'teamwork', state: 'ok', hooks: TASK_WEBHOOK_EVENTS.length });
    await until('the alert cleared', () => alerts.active().length === 0);
    // Looks that repeat the same finding send nothing.
    for (let i = 0; i < 5; i++) await alerts.checkRegistrations();
    // Teamwork turned one hook off (after failed deliveries).
    const hook = sim.listWebhooks().find((h) => h.event === 'TASK.UPDATED');
    expect(hook).toBeDefined();
    hook!.status = 'inactive';
    await alerts.checkRegistrations();
    expect(alerts.registrations()?.sources[0]).toMatchObject({ state: 'disabled', detail: expect.stringMatching(/TASK\.UPDATED \(inactive\)/) });
    await until('the disabled alert', () => alerts.active().some((a) => a.condition === 'webhook_registration'));
    for (let i = 0; i < 5; i++) await alerts.checkRegistrations();
    await alerts.idle();
    const messages = receiver.received.map((r) => `${String(r.body.alert)} ${String(r.body.condition)} ${String(r.body.source)}`);
    expect(messages).toEqual(['started webhook_registration teamwork', 'cleared webhook_registration teamwork', 'started webhook_registration teamwork']);
    expect(alerts.active()).toEqual([{ condition: 'webhook_registration', source: 'teamwork', title: 'Webhook registration missing or disabled', summary: expect.stringMatching(/Teamwork turned off the hooks for TASK\.UPDATED/), since: expect.any(String) }]);
  });

  it('judges each vendor\'s list report: missing events named, an inactive hook disabled, Missive without API hooks unknown, a failed look failed', () => {
    const endpoint = 'https://c.example/webhooks/teamwork';
    const hooks = TASK_WEBHOOK_EVENTS.map((event, i) => ({ id: String(i), event, url: endpoint, status: 'active' }));
    const report = { source: 'teamwork' as const, endpoint, status: 'ok' as const, created: [], removed: [], notes: [] };
    expect(judgeRegistration({ ...report, existing: hooks }).state).toBe('ok');
    expect(judgeRegistration({ ...report, existing: hooks.slice(1) })).toMatchObject({ state: 'missing', detail: expect.stringMatching(new RegExp(`for ${TASK_WEBHOOK_EVENTS[0]?.replace('.', '\\.')} \\(`)) });
    expect(judgeRegistration({ ...report, existing: hooks.map((h, i) => (i === 2 ? { ...h, status: 'inactive' } : h)) }).state).toBe('disabled');
    expect(judgeRegistration({ ...report, status: 'failed', existing: [], error: 'CONN_ERR_HTTP_AUTH (HTTP 401): refused', fix: 'check TEAMWORK_API_KEY' })).toEqual({ source: 'teamwork', state: 'failed', endpoint, hooks: 0, detail: 'CONN_ERR_HTTP_AUTH (HTTP 401): refused; check TEAMWORK_API_KEY' });
    expect(judgeRegistration({ ...report, source: 'missive', endpoint: 'https://c.example/webhooks/missive', existing: [] }).state).toBe('unknown');
    expect(judgeRegistration({ ...report, source: 'missive', endpoint: 'https://c.example/webhooks/missive', existing: [{ id: 'h1', event: 'incoming_email', url: 'https://c.example/webhooks/missive' }] }).state).toBe('ok');
  });

  it('a process alerts only on the conditions it is given (a serve process next to workers: its queue)', async () => {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const queue = await FileQueue.open({ dir: path.join(tempDir(), 'queue'), log: silent });
    cleanups.push(() => queue.close());
    const lifecycle = new Lifecycle();
    const health = new HealthChecks({ queue, lifecycle, thresholds: { maxQueueAgeMs: 1 } });
    cleanups.push(() => health.close());
    const alerts = createAlerts({ config: parseConfig({ ALERT_WEBHOOK_URL: receiver.url }), lifecycle, health, log: silent, conditions: ['queue_unavailable'], tuning: { tickMs: 50 } });
    cleanups.push(() => alerts.stop());
    alerts.start();
    await queue.enqueue([ev('teamwork', 'old')]);
    const [claimed] = await queue.claim();
    await queue.deadLetter(claimed!.event.id, { code: 'CONN_ERR_HTTP_NOT_FOUND', message: 'gone', retryable: false });
    lifecycle.emit('event:dead-lettered', { source: 'teamwork', eventId: claimed!.event.id, attempt: 1, error: { code: 'CONN_ERR_HTTP_NOT_FOUND', message: 'gone', retryable: false }, event: claimed!.event });
    await queue.enqueue([ev('teamwork', 'waiting')]);
    await sleep(300);
    await alerts.idle();
    expect(alerts.active()).toEqual([]);
    expect(receiver.received).toEqual([]);
  });

  it('a refusal that lasted longer than the clear delay is not cleared by the first accepted request, but a clear delay after it', async () => {
    const queue = await FileQueue.open({ dir: path.join(tempDir(), 'queue'), log: silent });
    cleanups.push(() => queue.close());
    const lifecycle = new Lifecycle();
    const health = new HealthChecks({ queue, lifecycle });
    cleanups.push(() => health.close());
    const alerts = createAlerts({ config: parseConfig({}), lifecycle, health, log: silent, tuning: { tickMs: 50, clearAfterMs: 500 } });
    cleanups.push(() => alerts.stop());
    alerts.start();
    lifecycle.emit('vendor:auth', { source: 'missive', failing: true, status: 403, detail: 'GET /v1/conversations answered 403' });
    await sleep(800);
    const accepted = Date.now();
    lifecycle.emit('vendor:auth', { source: 'missive', failing: false });
    await sleep(100);
    expect(alerts.active().map((x) => x.condition)).toEqual(['vendor_auth']);
    await until('cleared', () => alerts.active().length === 0, 3000);
    expect(Date.now() - accepted).toBeGreaterThanOrEqual(350);
  });
});
