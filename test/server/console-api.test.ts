/**
 * The console's JSON API on a real file queue (issue 17): the overview, events, dead letters listed,
 * shown redacted, replayed and discarded for real, backfills started against the Teamwork simulator
 * and watched to the end; every action logged with who and from where; bad input a 4xx naming the
 * field, never a 500.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/index.ts';
import { BackfillJobs, type BackfillJob } from '../../src/admin/backfill-jobs.ts';
import { openDatabase } from '../../src/admin/resources.ts';
import type { ErrorRecord } from '../../src/errors.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import type { QueueEvent } from '../../src/model.ts';
import { CheckpointStore } from '../../src/sync/checkpoints.ts';
import { consoleHarness, login, TOKEN, type ConsoleHarness } from './console-harness.ts';

const open: ConsoleHarness[] = [];
afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
});
async function harness(...args: Parameters<typeof consoleHarness>): Promise<ConsoleHarness> {
  const h = await consoleHarness(...args);
  open.push(h);
  return h;
}

const bearer = { authorization: `Bearer ${TOKEN}` };
const PERMANENT: ErrorRecord = { code: 'CONN_ERR_EVENT_INVALID', message: 'payload has no task id', retryable: false };

function event(n: number, overrides: Partial<QueueEvent> = {}): QueueEvent {
  return {
    id: `evt-${n}`,
    source: 'teamwork',
    type: 'TASK.UPDATED',
    entityKey: `task:${1000 + n}`,
    origin: 'webhook',
    receivedAt: new Date(Date.now() - 60_000 + n),
    payload: { task: { id: 1000 + n, name: `Task ${n}` }, apiKey: 'tw-secret-api-key', nested: { access_token: 'oauth-secret', Authorization: 'Basic c2VjcmV0', list: [{ password: 'hunter2', ok: true }] } },
    ...overrides,
  };
}

/** Puts events on the queue and dead-letters them, for real. */
async function deadLetter(h: ConsoleHarness, events: QueueEvent[], error: ErrorRecord = PERMANENT): Promise<void> {
  await h.queue.enqueue(events);
  for (const c of await h.queue.claim({ limit: events.length })) await h.queue.deadLetter(c.event.id, error);
}

describe('console API: facts', () => {
  it('overview: the process, the processes, sources, queue with its history, database; health, alerts and webhooks null without providers', async () => {
    const h = await harness();
    await h.queue.enqueue([event(1), event(2)]);
    h.lifecycle.emit('delivery:accepted', { source: 'teamwork', events: 2 });
    const overview = (await h.app.inject({ url: '/dashboard/api/overview', headers: bearer })).json() as {
      process: { uptimeSeconds: number };
      processes: Array<{ self: boolean }>;
      sources: Array<{ name: string; lastDeliveryAt: string | null; perMinute: { deliveries: number[] } }>;
      queue: { history: Array<{ at: string }> };
      [key: string]: unknown;
    };
    expect(overview.process).toMatchObject({ version: '9.9.9-test', role: 'start', pid: process.pid, memory: { rssBytes: expect.any(Number), heapUsedBytes: expect.any(Number) } });
    expect(overview.process.uptimeSeconds).toBeGreaterThanOrEqual(4);
    expect(overview.processes).toEqual([expect.objectContaining({ self: true })]);
    expect(overview.queue).toMatchObject({ stats: { pending: 2, inFlight: 0, delayed: 0, deadLettered: 0 }, error: null });
    expect(overview.queue.history.length).toBeGreaterThanOrEqual(1);
    expect(overview.queue.history[0]).toMatchObject({ at: expect.any(String) });
    expect(overview.sources.map((s) => s.name)).toEqual(['teamwork', 'missive']);
    const teamworkSource = overview.sources[0]!;
    expect(teamworkSource.lastDeliveryAt).not.toBeNull();
    expect(teamworkSource.perMinute.deliveries.at(-1)).toBe(1);
    expect(overview.sources[1]!.lastDeliveryAt).toBeNull();
    expect(overview.database).toEqual({ ok: true, backend: 'sqlite' });
    expect([overview.health, overview.alerts, overview.webhooks]).toEqual([null, null, null]);

    const withProviders = await harness({
      console: {
        health: { evaluate: async () => ({ status: 'ok', checks: [{ name: 'queue', ok: true }] }) },
        alerts: { active: () => [{ condition: 'queue-age', since: '2026-01-01T00:00:00.000Z' }] },
        webhooks: { registrations: () => ({ teamwork: { ok: true } }) },
      },
    });
    const full = (await withProviders.app.inject({ url: '/dashboard/api/overview', headers: bearer })).json() as Record<string, unknown>;
    expect(full.health).toEqual({ status: 'ok', checks: [{ name: 'queue', ok: true }] });
    expect(full.alerts).toEqual([{ condition: 'queue-age', since: '2026-01-01T00:00:00.000Z' }]);
    expect(full.webhooks).toEqual({ teamwork: { ok: true } });
  });

  it('events: search by entity id and source, a limit, one event by id, 404 for an unknown one', async () => {
    const h = await harness();
    await h.queue.enqueue([event(1), event(2), event(3, { source: 'missive', type: 'incoming_email', entityKey: 'conversation:abc' })]);
    const get = (url: string) => h.app.inject({ url, headers: bearer });
    expect(((await get('/dashboard/api/events')).json() as { events: Array<{ id: string }> }).events.map((e) => e.id)).toEqual(['evt-3', 'evt-2', 'evt-1']);
    expect(((await get('/dashboard/api/events?q=1002')).json() as { events: Array<{ id: string }> }).events.map((e) => e.id)).toEqual(['evt-2']);
    expect(((await get('/dashboard/api/events?source=missive')).json() as { events: Array<{ id: string }> }).events.map((e) => e.id)).toEqual(['evt-3']);
    expect(((await get('/dashboard/api/events?limit=1')).json() as { events: unknown[] }).events).toHaveLength(1);
    expect((await get('/dashboard/api/events/evt-1')).json()).toMatchObject({ id: 'evt-1', source: 'teamwork', entityKey: 'task:1001', outcome: 'pending' });
    expect((await get('/dashboard/api/events/evt-404')).statusCode).toBe(404);
    expect((await get('/dashboard/api/events/evt-404')).json()).toMatchObject({ error: 'CONN_ERR_NOT_FOUND', message: expect.stringContaining('evt-404') });
  });
});

describe('console API: dead letters', () => {
  it('lists them newest first with filters and a total; shows one with its error and its payload redacted', async () => {
    const h = await harness();
    await deadLetter(h, [event(1), event(2)]);
    await deadLetter(h, [event(3, { source: 'missive', type: 'incoming_email', entityKey: 'conversation:xyz' })], { code: 'CONN_ERR_HTTP_AUTH', message: 'Missive answered 401', retryable: false, status: 401 });
    const get = async (url: string) => (await h.app.inject({ url, headers: bearer })).json() as { deadLetters: Array<{ id: string }>; total: number };
    const all = await get('/dashboard/api/dead-letters');
    expect(all.total).toBe(3);
    expect(all.deadLetters[0]).toMatchObject({ id: 'evt-3', source: 'missive', attempts: 1, error: { code: 'CONN_ERR_HTTP_AUTH', status: 401 } });
    expect(all.deadLetters[0]).not.toHaveProperty('payload');
    expect((await get('/dashboard/api/dead-letters?source=teamwork')).deadLetters.map((d) => d.id).sort()).toEqual(['evt-1', 'evt-2']);
    expect((await get('/dashboard/api/dead-letters?q=http_auth')).deadLetters.map((d) => d.id)).toEqual(['evt-3']);
    expect((await get('/dashboard/api/dead-letters?q=task:1002')).deadLetters.map((d) => d.id)).toEqual(['evt-2']);
    const limited = await get('/dashboard/api/dead-letters?limit=1');
    expect([limited.deadLetters.length, limited.total]).toEqual([1, 3]);

    const one = (await h.app.inject({ url: '/dashboard/api/dead-letters/evt-1', headers: bearer })).json() as Record<string, unknown>;
    expect(one).toMatchObject({ id: 'evt-1', entityKey: 'task:1001', error: PERMANENT, deadLetteredAt: expect.any(String) });
    expect(one.payload).toEqual({ task: { id: 1001, name: 'Task 1' }, apiKey: '[redacted]', nested: { access_token: '[redacted]', Authorization: '[redacted]', list: [{ password: '[redacted]', ok: true }] } });
    expect(JSON.stringify(one)).not.toMatch(/tw-secret-api-key|oauth-secret|hunter2|c2VjcmV0/);
    const missing = await h.app.inject({ url: '/dashboard/api/dead-letters/evt-404', headers: bearer });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'CONN_ERR_NOT_FOUND', message: expect.stringContaining('evt-404') });
  });

  it('replays by ids and by source: the events are back on the queue from attempt 1; the action is logged with who and from where', async () => {
    const h = await harness();
    await deadLetter(h, [event(1), event(2), event(3, { source: 'missive', type: 'incoming_email' })]);
    const { cookie, csrf } = await login(h.app, TOKEN, '192.0.2.44');
    const post = (payload: unknown) => h.app.inject({ method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: payload as object, headers: { cookie, 'x-csrf-token': csrf }, remoteAddress: '192.0.2.44' });

    expect((await post({ ids: ['evt-1', 'evt-9'] })).json()).toEqual({ replayed: 1, ids: ['evt-1'], missingIds: ['evt-9'], dryRun: false });
    const [back] = await h.queue.claim();
    expect(back).toMatchObject({ event: { id: 'evt-1' }, attempt: 1, lastError: null });
    expect((await post({ source: 'missive', dryRun: true })).json()).toEqual({ replayed: 1, ids: ['evt-3'], missingIds: [], dryRun: true });
    expect((await h.queue.listDeadLetters()).map((d) => d.event.id).sort()).toEqual(['evt-2', 'evt-3']);
    expect((await post({ source: 'missive' })).json()).toMatchObject({ replayed: 1, ids: ['evt-3'] });
    expect((await h.queue.listDeadLetters()).map((d) => d.event.id)).toEqual(['evt-2']);

    const logged = h.lines.filter((l) => l.action === 'dead-letters.replay');
    expect(logged).toHaveLength(3);
    expect(logged[0]).toMatchObject({ level: 'info', component: 'console', who: expect.stringMatching(/^session [A-Za-z0-9_-]{8}$/), client: '192.0.2.44', count: 1, missing: 1, filter: { ids: 2 }, msg: 'console: replayed 1 dead letter(s)' });
    expect(logged[2]).toMatchObject({ count: 1, filter: { source: 'missive' } });
  });

  it('discards only with confirm: true; a dry run lists; the discarded are gone for good and never claimed', async () => {
    const h = await harness();
    await deadLetter(h, [event(1), event(2), event(3, { source: 'missive', type: 'incoming_email' })]);
    const post = (payload: unknown) => h.app.inject({ method: 'POST', url: '/dashboard/api/dead-letters/discard', payload: payload as object, headers: bearer });

    for (const payload of [{ ids: ['evt-1'] }, { ids: ['evt-1'], confirm: false }]) {
      const refused = await post(payload);
      expect(refused.statusCode).toBe(400);
      expect(refused.json()).toMatchObject({ error: 'CONN_ERR_REQUEST_INVALID', message: expect.stringContaining('confirm: true') });
    }
    expect((await post({ confirm: 'yes', ids: ['evt-1'] })).json()).toMatchObject({ message: 'confirm must be true or false' });
    expect((await post({ source: 'teamwork', dryRun: true })).json()).toEqual({ discarded: 2, ids: ['evt-1', 'evt-2'], missingIds: [], dryRun: true });
    expect(await h.queue.listDeadLetters()).toHaveLength(3);

    expect((await post({ ids: ['evt-1', 'evt-404'], confirm: true })).json()).toEqual({ discarded: 1, ids: ['evt-1'], missingIds: ['evt-404'], dryRun: false });
    expect((await h.queue.listDeadLetters()).map((d) => d.event.id).sort()).toEqual(['evt-2', 'evt-3']);
    expect((await h.app.inject({ url: '/dashboard/api/dead-letters/evt-1', headers: bearer })).statusCode).toBe(404);
    expect((await post({ all: true, confirm: true })).json()).toMatchObject({ discarded: 2 });
    expect(await h.queue.stats()).toMatchObject({ pending: 0, inFlight: 0, deadLettered: 0 });
    expect(await h.queue.claim({ limit: 10 })).toEqual([]);
    expect(h.lines.filter((l) => l.action === 'dead-letters.discard').map((l) => [l.who, l.client, l.count, l.dryRun])).toEqual([
      ['bearer', '127.0.0.1', 2, true],
      ['bearer', '127.0.0.1', 1, false],
      ['bearer', '127.0.0.1', 2, false],
    ]);
  });
});

describe('console API: bad input is a 4xx naming the field, never a 500', () => {
  it('answers each bad request with 400 (or 404/415/413) and a message that says what is wrong', async () => {
    const h = await harness();
    await deadLetter(h, [event(1)]);
    const cases: Array<{ method?: 'GET' | 'POST'; url: string; payload?: string; type?: string; status: number; message: RegExp }> = [
      { url: '/dashboard/api/events?source=jira', status: 400, message: /^source must be one of teamwork, missive$/ },
      { url: '/dashboard/api/events?limit=0', status: 400, message: /^limit must be a whole number from 1 to 500$/ },
      { url: '/dashboard/api/events?limit=abc', status: 400, message: /^limit must be/ },
      { url: '/dashboard/api/events?q=a&q=b', status: 400, message: /^query parameter q must be given once$/ },
      { url: '/dashboard/api/events?color=red', status: 400, message: /^unknown query parameter color/ },
      { url: '/dashboard/api/dead-letters?limit=99999', status: 400, message: /^limit must be a whole number from 1 to 5000$/ },
      { url: '/dashboard/api/nothing-here', status: 404, message: /no console route GET \/dashboard\/api\/nothing-here/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"ids": [', status: 400, message: /could not be read/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '[1,2]', status: 400, message: /^the body must be a JSON object/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: 'null', status: 400, message: /^the body must be a JSON object/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{}', status: 400, message: /^say which dead letters to replay: source, ids, or all: true/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"all":true,"source":"teamwork"}', status: 400, message: /^all: true replays every dead letter: send it alone/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"ids":"evt-1"}', status: 400, message: /^ids must be an array/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"ids":[""]}', status: 400, message: /^ids must be an array/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"source":"jira"}', status: 400, message: /^source must be one of/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"all":"yes"}', status: 400, message: /^all must be true or false$/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '{"all":true,"confirm":true}', status: 400, message: /^unknown field confirm/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: 'ids=evt-1', type: 'text/plain', status: 400, message: /^the body must be a JSON object/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: '<all/>', type: 'application/xml', status: 415, message: /could not be read/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/discard', payload: '{"all":true,"ids":["evt-1"],"confirm":true}', status: 400, message: /^all: true discards every dead letter/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/discard', payload: JSON.stringify({ ids: Array.from({ length: 10_001 }, (_, i) => `e${i}`), confirm: true }), status: 400, message: /^ids may name at most 10000/ },
      { method: 'POST', url: '/dashboard/api/dead-letters/discard', payload: JSON.stringify({ ids: ['x'.repeat(1024 * 1024)], confirm: true }), status: 413, message: /could not be read/ },
      { method: 'POST', url: '/dashboard/api/backfill', payload: '{}', status: 400, message: /^source is required: one of teamwork, missive$/ },
      { method: 'POST', url: '/dashboard/api/backfill', payload: '{"source":"teamwork","since":"yesterday"}', status: 400, message: /^since must be an ISO 8601 time/ },
      { method: 'POST', url: '/dashboard/api/backfill', payload: '{"source":"teamwork","since":"2025-01-01","full":true}', status: 400, message: /^since and full contradict each other/ },
      { method: 'POST', url: '/dashboard/api/backfill', payload: '{"source":"teamwork","full":"yes"}', status: 400, message: /^full must be true or false$/ },
      { method: 'POST', url: '/dashboard/api/backfill', payload: '{"source":"teamwork","since":"2999-01-01"}', status: 400, message: /is in the future$/ },
      { method: 'POST', url: '/dashboard/api/backfill', payload: '{"source":"teamwork","until":"2025-01-01"}', status: 400, message: /^unknown field until/ },
    ];
    for (const c of cases) {
      const answer = await h.app.inject({ method: c.method ?? 'GET', url: c.url, headers: { ...bearer, ...(c.payload !== undefined ? { 'content-type': c.type ?? 'application/json' } : {}) }, ...(c.payload !== undefined ? { payload: c.payload } : {}) });
      expect(answer.statusCode, `${c.method ?? 'GET'} ${c.url} ${c.payload ?? ''}`.slice(0, 200)).toBe(c.status);
      const body = answer.json() as { error: string; message: string };
      expect(body.message, c.url).toMatch(c.message);
      expect(body.error).toMatch(/^CONN_ERR_(REQUEST_INVALID|NOT_FOUND)$/);
    }
    // Nothing was replayed or discarded by any of them.
    expect((await h.queue.listDeadLetters()).map((d) => d.event.id)).toEqual(['evt-1']);
    expect(h.lines.filter((l) => l.level === 'error')).toEqual([]);
  });
});

describe('console API: what is behind it away', () => {
  it('the queue closed, the health checks throwing, no database for a backfill: the overview still answers, the rest 503 naming it', async () => {
    const h = await harness({
      console: { health: { evaluate: async () => Promise.reject(new Error('probe exploded')) } },
      extend: async ({ sources, log }) => ({ backfill: new BackfillJobs({ sources, deps: () => null, log }) }),
      env: { TEAMWORK_BASE_URL: 'http://127.0.0.1:9', TEAMWORK_API_KEY: 'tw-key' },
    });
    await h.queue.close();
    const overview = (await h.app.inject({ url: '/dashboard/api/overview', headers: bearer })).json() as Record<string, unknown>;
    expect(overview.queue).toMatchObject({ stats: null, error: { code: 'CONN_ERR_QUEUE_CLOSED' } });
    expect(overview.health).toEqual({ error: { code: 'CONN_ERR_INTERNAL', message: 'probe exploded', retryable: true } });
    const letters = await h.app.inject({ url: '/dashboard/api/dead-letters', headers: bearer });
    expect(letters.statusCode).toBe(503);
    expect(letters.json()).toMatchObject({ error: 'CONN_ERR_QUEUE_CLOSED' });
    const backfill = await h.app.inject({ method: 'POST', url: '/dashboard/api/backfill', payload: { source: 'teamwork' }, headers: bearer });
    expect(backfill.statusCode).toBe(503);
    expect(backfill.json()).toMatchObject({ error: 'CONN_ERR_DB_UNAVAILABLE', message: expect.stringContaining('needs the database') });
    expect(h.lines.filter((l) => l.level === 'error')).toEqual([]);
  });
});

describe('console API: backfill', () => {
  let teamwork: TeamworkSimulator;
  beforeAll(async () => {
    teamwork = await startTeamworkSimulator({ seed: 'console-backfill' });
  });
  afterAll(async () => {
    await teamwork.stop();
  });

  async function backfillHarness(): Promise<ConsoleHarness> {
    return harness({
      env: { TEAMWORK_BASE_URL: teamwork.credentials.baseUrl, TEAMWORK_API_KEY: teamwork.credentials.apiKey, BACKFILL_INITIAL_HOURS: String(40 * 24) },
      extend: async ({ queue, sources, config, log, closing }) => {
        const db = await openDatabase(config, log);
        closing.push(() => db.close());
        const deps = { queue, checkpoints: new CheckpointStore(db, config.checkpointDir), lifecycle: new Lifecycle(), log, overlapSeconds: config.BACKFILL_OVERLAP_SECONDS, initialHours: config.BACKFILL_INITIAL_HOURS };
        return { backfill: new BackfillJobs({ sources, deps, log }) };
      },
    });
  }

  it('starts a backfill (202), refuses a second of the same source while it runs (409), and reports live progress to the end', async () => {
    const h = await backfillHarness();
    teamwork.faults.set({ latencyMs: 150 });
    const post = (payload: unknown) => h.app.inject({ method: 'POST', url: '/dashboard/api/backfill', payload: payload as object, headers: bearer });
    const started = await post({ source: 'teamwork', full: true });
    expect(started.statusCode).toBe(202);
    const { job } = started.json() as { job: BackfillJob };
    expect(job).toMatchObject({ source: 'teamwork', state: 'running', request: { since: null, full: true }, pages: 0, events: 0, error: null });

    const again = await post({ source: 'teamwork' });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ error: 'CONN_ERR_BACKFILL_RUNNING', job: { id: job.id, state: 'running' } });
    // Missive has no API here: the CLI's refusal, as a 400.
    expect((await post({ source: 'missive' })).json()).toMatchObject({ error: 'CONN_ERR_REQUEST_INVALID', message: 'missive: backfill needs its API; set MISSIVE_API_TOKEN' });

    const seen: BackfillJob[] = [];
    const deadline = Date.now() + 20_000;
    for (;;) {
      const [current] = ((await h.app.inject({ url: '/dashboard/api/backfill', headers: bearer })).json() as { jobs: BackfillJob[] }).jobs;
      seen.push(current!);
      if (current!.state !== 'running' || Date.now() > deadline) break;
      if (current!.pages >= 2) teamwork.faults.set({ latencyMs: 0 });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ id: job.id, state: 'done', fraction: 1, error: null, since: new Date(0).toISOString() });
    expect(last.events).toBeGreaterThan(0);
    expect(last.events).toBe((await h.queue.stats()).pending);
    // Progress was seen moving: pages counted up while it ran.
    const running = seen.filter((s) => s.state === 'running');
    expect(running.some((s) => s.pages > 0 && s.pages < last.pages)).toBe(true);
    expect(h.lines.some((l) => l.action === 'backfill.start' && l.who === 'bearer' && l.source === 'teamwork')).toBe(true);
    // Done: the source can be backfilled again.
    expect((await post({ source: 'teamwork', since: new Date(Date.now() - 3_600_000).toISOString() })).statusCode).toBe(202);
  });

  it('without a BackfillJobs the list is empty and a start is 404 naming the CLI', async () => {
    const h = await harness();
    expect((await h.app.inject({ url: '/dashboard/api/backfill', headers: bearer })).json()).toEqual({ jobs: [], available: false });
    const answer = await h.app.inject({ method: 'POST', url: '/dashboard/api/backfill', payload: { source: 'teamwork' }, headers: bearer });
    expect(answer.statusCode).toBe(404);
    expect(answer.json()).toMatchObject({ message: expect.stringContaining('connector backfill') });
  });
});
