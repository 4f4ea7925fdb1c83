/**
 * The dispatcher against the real file queue (a temp dir) and the real SQLite backend, with scripted
 * test sources. What is asserted is what an operator would see: rows in connector.db, lines in
 * dlq.jsonl, the queue's counts, and what the handlers were asked to do and when.
 *
 * Delays: most tests pass a short `retryDelay`; the one that checks the real retry policy uses
 * `random: () => 0`, so its delays are exactly the lower bounds of the policy (0.5 s, then 1 s).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { Lifecycle, type LifecycleEvents } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent, SourceName } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { Queue } from '../../src/queue/queue.ts';
import { replayDeadLetters } from '../../src/admin/replay-dead-letters.ts';
import { UsageError } from '../../src/admin/usage-error.ts';
import { Dispatcher, type DispatcherOptions } from '../../src/workers/dispatcher.ts';
import { RateLimiter } from '../../src/http/rate-limiter.ts';
import { ScriptedSource, type TestPayload } from './scripted-source.ts';

const log = createLogger({ level: 'silent', console: false });

interface World {
  dir: string;
  queue: FileQueue;
  db: SqliteDatabase;
  teamwork: ScriptedSource;
  missive: ScriptedSource;
  lifecycle: Lifecycle;
  /** Lifecycle events as emitted, with performance.now() at emission. */
  seen: Array<{ name: keyof LifecycleEvents; payload: Record<string, unknown>; at: number }>;
  dispatcher: (options?: Partial<DispatcherOptions>) => Dispatcher;
  reopenQueue: () => Promise<FileQueue>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function world(): Promise<World> {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-dispatcher-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const queueDir = path.join(dir, 'queue');
  const queue = await FileQueue.open({ dir: queueDir, log });
  const queues = [queue];
  const db = new SqliteDatabase({ file: path.join(dir, 'connector.db'), busyTimeoutMs: 20 });
  await db.migrate();
  const lifecycle = new Lifecycle();
  const seen: World['seen'] = [];
  for (const name of ['event:succeeded', 'event:retrying', 'event:dead-lettered', 'db:written'] as const) {
    lifecycle.on(name, (payload) => seen.push({ name, payload: payload as unknown as Record<string, unknown>, at: performance.now() }));
  }
  const teamwork = new ScriptedSource('teamwork');
  const missive = new ScriptedSource('missive');
  const dispatchers: Dispatcher[] = [];
  cleanups.push(async () => {
    for (const d of dispatchers) await d.stop();
    for (const q of queues) await q.close();
    await db.close();
  });
  const w: World = {
    dir,
    queue,
    db,
    teamwork,
    missive,
    lifecycle,
    seen,
    dispatcher: (options = {}) => {
      const d = new Dispatcher({ queue: w.queue, db, sources: [teamwork, missive], log, lifecycle, retryDelay: () => 10, idleWaitMs: 50, ...options });
      dispatchers.push(d);
      d.start();
      return d;
    },
    reopenQueue: async () => {
      const again = await FileQueue.open({ dir: queueDir, log });
      queues.push(again);
      w.queue = again;
      return again;
    },
  };
  return w;
}

let counter = 0;
/** An event for `recordId` (entity key = the record's), version `version`. */
function ev(recordId: string, options: { source?: SourceName; version?: number; key?: string | null } = {}): QueueEvent {
  const source = options.source ?? 'teamwork';
  const version = options.version ?? 1;
  const payload: TestPayload = { recordId, title: `${recordId} v${version}`, updatedAt: new Date(Date.UTC(2026, 10, 1, 0, 0, version)).toISOString() };
  return {
    id: `ev-${++counter}-${recordId}-v${version}`,
    source,
    type: source === 'teamwork' ? 'TASK.UPDATED' : 'new_comment',
    entityKey: options.key === undefined ? `${source === 'teamwork' ? 'task' : 'conversation'}:${recordId}` : options.key,
    origin: 'webhook',
    receivedAt: new Date(),
    payload,
  };
}

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function readDb(w: World, sql: string, ...params: unknown[]): Array<Record<string, unknown>> {
  const db = new BetterSqlite3(path.join(w.dir, 'connector.db'), { readonly: true });
  try {
    return db.prepare(sql).all(...params) as Array<Record<string, unknown>>;
  } finally {
    db.close();
  }
}

const taskTitles = (w: World) => Object.fromEntries(readDb(w, 'SELECT id, title FROM tasks ORDER BY id').map((r) => [r.id, r.title]));

function dlqLines(w: World): Array<Record<string, unknown>> {
  const file = path.join(w.dir, 'queue', 'dlq.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** How many lifecycle events of this name were emitted (wait on these, not on the queue: they come last). */
const count = (w: World, name: keyof LifecycleEvents) => w.seen.filter((s) => s.name === name).length;

const drained = async (q: Queue) => {
  const s = await q.stats();
  return s.pending + s.inFlight + s.delayed === 0;
};

describe('Dispatcher', () => {
  it('writes each event to the database and acks it', async () => {
    const w = await world();
    await w.queue.enqueue([ev('1'), ev('2'), ev('m1', { source: 'missive' })]);
    w.dispatcher();
    await until('three events acked', () => count(w, 'event:succeeded') === 3);
    expect(taskTitles(w)).toEqual({ '1': '1 v1', '2': '2 v1' });
    expect(readDb(w, 'SELECT id, subject FROM emails')).toEqual([{ id: 'm1', subject: 'm1 v1' }]);
    expect(await w.queue.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
    expect(w.seen.filter((s) => s.name === 'event:succeeded')).toHaveLength(3);
  });

  it('a batch\'s "N events processed" line names its events (issue 15 item 11)', async () => {
    const w = await world();
    const lines: Array<Record<string, unknown>> = [];
    const sink = createLogger({ level: 'info', console: false, destination: new Writable({ write: (chunk, _e, done) => void (lines.push(JSON.parse(String(chunk))), done()) }) });
    const events = [ev('60'), ev('61'), ev('62')];
    await w.queue.enqueue(events);
    w.dispatcher({ log: sink });
    await until('all processed', () => count(w, 'event:succeeded') === 3);
    const batch = lines.find((l) => l.msg === '3 events processed');
    expect(batch?.eventIds).toEqual(events.map((e) => e.id));
  });

  it('acks only after the write: while the database is locked nothing is acked, dead-lettered or handled again, and a restart hands the events out again', async () => {
    const w = await world();
    // Another connection holds the write lock: every write fails with SQLITE_BUSY -> CONN_ERR_DB_UNAVAILABLE.
    const locker = new BetterSqlite3(path.join(w.dir, 'connector.db'));
    cleanups.push(() => {
      if (locker.open) locker.close();
    });
    locker.exec('BEGIN EXCLUSIVE');
    const events = [ev('10'), ev('11')];
    await w.queue.enqueue(events);
    const first = w.dispatcher({ maxAttempts: 1 });
    await until('several failed writes', () => w.seen.length === 0 && w.teamwork.calls.length === 2, 2_000);
    await new Promise((r) => setTimeout(r, 150)); // a dozen write attempts at 10 ms apart
    expect(w.teamwork.calls).toHaveLength(2); // handled once; only the write is tried again
    expect(await w.queue.stats()).toMatchObject({ pending: 0, inFlight: 2, deadLettered: 0 });
    expect(w.seen).toEqual([]);

    // Stopping during the outage leaves the events unacked; the next process gets them again.
    await first.stop();
    await w.queue.close();
    const queue = await w.reopenQueue();
    expect(await queue.stats()).toMatchObject({ pending: 2, inFlight: 0, deadLettered: 0 });
    expect(dlqLines(w)).toEqual([]);

    locker.exec('ROLLBACK');
    w.dispatcher();
    await until('both acked', () => count(w, 'event:succeeded') === 2);
    expect(taskTitles(w)).toEqual({ '10': '10 v1', '11': '11 v1' });
    expect(w.seen.filter((s) => s.name === 'event:succeeded').map((s) => s.payload.attempt)).toEqual([1, 1]);
  });

  it('retries transient failures with the policy delays (0.5 s, then 1 s with no jitter), honours Retry-After, then succeeds', async () => {
    const w = await world();
    const flaky = ev('20');
    const limited = ev('21');
    w.teamwork.script(flaky.id, { fail: 'CONN_ERR_HTTP_SERVER' }, { fail: 'CONN_ERR_HTTP_TIMEOUT' });
    w.teamwork.script(limited.id, { fail: 'CONN_ERR_HTTP_RATE_LIMITED', retryAfterMs: 1_200 });
    await w.queue.enqueue([flaky, limited]);
    w.dispatcher({ retryDelay: undefined, random: () => 0, maxAttempts: 3 });
    await until('both acked', () => w.seen.filter((s) => s.name === 'event:succeeded').length === 2, 8_000);
    expect(Object.keys(taskTitles(w))).toEqual(['20', '21']);

    const retrying = w.seen.filter((s) => s.name === 'event:retrying');
    expect(retrying.filter((s) => s.payload.eventId === flaky.id).map((s) => [s.payload.attempt, s.payload.delayMs])).toEqual([
      [1, 500],
      [2, 1000],
    ]);
    expect(retrying.filter((s) => s.payload.eventId === limited.id).map((s) => [s.payload.attempt, s.payload.delayMs, (s.payload.error as { code: string }).code])).toEqual([
      [1, 1200, 'CONN_ERR_HTTP_RATE_LIMITED'],
    ]);
    // Each attempt came no sooner than its delay (timers never fire early; 5 ms for clock rounding).
    const flakyAt = w.teamwork.callsOf(flaky.id).map((c) => c.at);
    expect(flakyAt).toHaveLength(3);
    expect(flakyAt[1]! - flakyAt[0]!).toBeGreaterThanOrEqual(495);
    expect(flakyAt[2]! - flakyAt[1]!).toBeGreaterThanOrEqual(995);
    const limitedAt = w.teamwork.callsOf(limited.id).map((c) => c.at);
    expect(limitedAt[1]! - limitedAt[0]!).toBeGreaterThanOrEqual(1_195);
    expect(w.seen.filter((s) => s.name === 'event:succeeded').map((s) => [s.payload.eventId, s.payload.attempt])).toEqual(
      expect.arrayContaining([
        [flaky.id, 3],
        // A 429 is not the event's fault: its retry spent no attempt.
        [limited.id, 1],
      ]),
    );
    expect(dlqLines(w)).toEqual([]);
  });

  it('dead-letters a permanent failure at once, with the error, attempts and times in dlq.jsonl', async () => {
    const w = await world();
    const bad = ev('30');
    w.teamwork.script(bad.id, { fail: 'CONN_ERR_EVENT_INVALID' });
    await w.queue.enqueue([bad, ev('31')]);
    const before = Date.now();
    w.dispatcher({ maxAttempts: 3 });
    await until('one dead-lettered, one acked', () => count(w, 'event:dead-lettered') === 1 && count(w, 'event:succeeded') === 1);
    expect(w.teamwork.callsOf(bad.id)).toHaveLength(1);
    const [line, ...rest] = dlqLines(w);
    expect(rest).toEqual([]);
    expect(line).toMatchObject({ id: bad.id, src: 'teamwork', attempts: 1, error: { code: 'CONN_ERR_EVENT_INVALID', retryable: false, message: `scripted CONN_ERR_EVENT_INVALID for ${bad.id}` } });
    expect((line!.event as { payload: TestPayload }).payload.recordId).toBe('30');
    const first = Date.parse(String(line!.firstAttemptAt));
    const dead = Date.parse(String(line!.deadLetteredAt));
    expect(first).toBeGreaterThanOrEqual(before - 1);
    expect(dead).toBeGreaterThanOrEqual(first);
    expect(taskTitles(w)).toEqual({ '31': '31 v1' });
    expect(await w.queue.stats()).toMatchObject({ deadLettered: 1 });
    expect(w.seen.filter((s) => s.name === 'event:dead-lettered').map((s) => s.payload.attempt)).toEqual([1]);
  });

  it('dead-letters an event after MAX_QUEUE_ATTEMPTS transient failures', async () => {
    const w = await world();
    const doomed = ev('40');
    w.teamwork.script(doomed.id, { fail: 'CONN_ERR_HTTP_SERVER' }, { fail: 'CONN_ERR_HTTP_NETWORK' }, { fail: 'CONN_ERR_HTTP_SERVER' }, { fail: 'CONN_ERR_HTTP_SERVER' });
    await w.queue.enqueue([doomed]);
    w.dispatcher({ maxAttempts: 3 });
    await until('dead-lettered', () => dlqLines(w).length === 1);
    await until('queue drained', () => drained(w.queue));
    expect(w.teamwork.callsOf(doomed.id)).toHaveLength(3);
    // The handler is told which attempt is the last (an optional part may then be given up on).
    expect(w.teamwork.callsOf(doomed.id).map((c) => c.lastAttempt)).toEqual([false, false, true]);
    expect(dlqLines(w)[0]).toMatchObject({ id: doomed.id, attempts: 3, error: { code: 'CONN_ERR_HTTP_SERVER', retryable: true } });
    expect(taskTitles(w)).toEqual({});
    const [listed] = await w.queue.listDeadLetters();
    expect(listed).toMatchObject({ attempts: 3, event: { id: doomed.id } });
  });

  it('never dead-letters for CONN_ERR_DB_UNAVAILABLE, even from a handler, however many attempts', async () => {
    const w = await world();
    const e = ev('45');
    w.teamwork.script(e.id, ...Array.from({ length: 5 }, () => ({ fail: 'CONN_ERR_DB_UNAVAILABLE' as const })));
    await w.queue.enqueue([e]);
    w.dispatcher({ maxAttempts: 2 });
    await until('written', () => taskTitles(w)['45'] === '45 v1');
    expect(w.teamwork.callsOf(e.id)).toHaveLength(6);
    expect(dlqLines(w)).toEqual([]);
  });

  it('does not let a backing-off event stall the events behind it', async () => {
    const w = await world();
    const slow = ev('50');
    w.teamwork.script(slow.id, { fail: 'CONN_ERR_HTTP_RATE_LIMITED', retryAfterMs: 60_000 });
    const behind = [ev('51'), ev('52'), ev('m53', { source: 'missive' })];
    await w.queue.enqueue([slow, ...behind]);
    w.dispatcher({ retryDelay: (_attempt, retryAfterMs) => retryAfterMs ?? 10 });
    await until('the events behind acked', () => w.seen.filter((s) => s.name === 'event:succeeded').length === 3);
    expect(Object.keys(taskTitles(w))).toEqual(['51', '52']);
    expect(readDb(w, 'SELECT id FROM emails')).toEqual([{ id: 'm53' }]);
    expect(await w.queue.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 1 });
    expect(taskTitles(w)['50']).toBeUndefined();
  });

  it('hands out fresh events first in, first out within each source (across batches)', async () => {
    const w = await world();
    const events: QueueEvent[] = [];
    for (let i = 0; i < 24; i++) events.push(ev(`f${i}`, { source: i % 3 === 0 ? 'missive' : 'teamwork' }));
    for (const e of events) await w.queue.enqueue([e]);
    w.dispatcher({ batchSize: 5 });
    await until('queue drained', () => drained(w.queue));
    for (const source of [w.teamwork, w.missive]) {
      const expected = events.filter((e) => e.source === source.name).map((e) => e.id);
      expect(source.calls.map((c) => c.eventId)).toEqual(expected);
    }
  });

  it('writes and acks what slow handlers finished without waiting for the rest of the batch (flushAfterMs)', async () => {
    const w = await world();
    const events = [ev('s1'), ev('s2'), ev('s3'), ev('s4'), ev('s5')];
    for (const e of events) w.teamwork.script(e.id, { delayMs: 60 });
    await w.queue.enqueue(events);
    w.dispatcher({ batchSize: 10, flushAfterMs: 100 });
    await until('queue drained', () => drained(w.queue));
    const writes = w.seen.filter((s) => s.name === 'db:written').map((s) => s.payload.events as number);
    expect(writes.length).toBeGreaterThanOrEqual(2);
    expect(writes.reduce((a, b) => a + b, 0)).toBe(5);
    // The first write came before the last handler started.
    const firstWrite = w.seen.find((s) => s.name === 'db:written')!.at;
    expect(firstWrite).toBeLessThan(w.teamwork.calls.at(-1)!.at);
    expect(taskTitles(w)).toEqual({ s1: 's1 v1', s2: 's2 v1', s3: 's3 v1', s4: 's4 v1', s5: 's5 v1' });
  });

  it('paces itself while yieldTo says deliveries go first, still finishing every event, and runs at full speed again once it stops saying so', async () => {
    const w = await world();
    let yielding = true;
    await w.queue.enqueue(Array.from({ length: 10 }, (_, i) => ev(`y${i}`)));
    w.dispatcher({ batchSize: 100, yieldTo: () => yielding, yieldPauseMs: 30 });
    await until('ten events handled while yielding', () => w.teamwork.calls.length === 10);
    const starts = w.teamwork.calls.map((c) => c.at);
    // At least one pause between consecutive events (timers may fire a little early, never much).
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(25);
    await until('acked', () => drained(w.queue));
    yielding = false;
    const t0 = performance.now();
    await w.queue.enqueue(Array.from({ length: 50 }, (_, i) => ev(`z${i}`)));
    await until('fifty more handled', () => w.teamwork.calls.length === 60);
    expect(performance.now() - t0).toBeLessThan(50 * 30);
    expect(Object.keys(taskTitles(w))).toHaveLength(60);
  });

  it('with WORKER_CONCURRENCY 3 runs different entities in parallel, never two events of one entity at once, in order per entity', async () => {
    const w = await world();
    const events = [ev('A', { version: 1 }), ev('A', { version: 2 }), ev('A', { version: 3 }), ev('B', { version: 1 }), ev('B', { version: 2 }), ev('C', { version: 1 }), ev('C', { version: 2 }), ev('D')];
    // The first events of A and B each wait (up to 3 s) for a second handler to be running: with
    // one lane at a time they would time out and maxActive would stay 1.
    const rendezvous = w.teamwork.concurrent(2, 3_000);
    for (const [i, e] of events.entries()) w.teamwork.script(e.id, i === 0 || i === 3 ? { hold: rendezvous, delayMs: 15 } : { delayMs: 15 });
    await w.queue.enqueue(events);
    w.dispatcher({ concurrency: 3 });
    await until('queue drained', () => drained(w.queue), 10_000);
    expect(w.teamwork.maxActive).toBeGreaterThanOrEqual(2);
    for (const [key, max] of w.teamwork.maxActiveByKey) expect(max, key).toBe(1);
    const order = w.teamwork.calls.map((c) => c.eventId);
    for (const key of ['A', 'B', 'C']) {
      const mine = events.filter((e) => e.entityKey === `task:${key}`).map((e) => e.id);
      expect(order.filter((id) => mine.includes(id))).toEqual(mine);
    }
    expect(taskTitles(w)).toEqual({ A: 'A v3', B: 'B v2', C: 'C v2', D: 'D v1' });
  });

  it('writes a batch that holds a record the database refuses event by event: only that event is dead-lettered', async () => {
    const w = await world();
    const admin = new BetterSqlite3(path.join(w.dir, 'connector.db'));
    admin.exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks WHEN NEW.id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison task refused'); END`);
    admin.close();
    const poison = ev('poison');
    await w.queue.enqueue([ev('60'), ev('61'), poison, ev('62')]);
    w.dispatcher({ batchSize: 10 });
    await until('queue drained', () => drained(w.queue));
    expect(taskTitles(w)).toEqual({ '60': '60 v1', '61': '61 v1', '62': '62 v1' });
    expect(dlqLines(w).map((d) => [d.id, (d.error as { code: string }).code])).toEqual([[poison.id, 'CONN_ERR_DB_REJECTED']]);
  });

  it('dead-letters an event of a source this process does not run', async () => {
    const w = await world();
    const orphan = ev('m70', { source: 'missive' });
    await w.queue.enqueue([orphan, ev('71')]);
    const d = new Dispatcher({ queue: w.queue, db: w.db, sources: [w.teamwork], log, lifecycle: w.lifecycle, idleWaitMs: 50 });
    cleanups.push(() => d.stop());
    d.start();
    await until('queue drained', () => drained(w.queue));
    expect(dlqLines(w).map((l) => [l.id, (l.error as { code: string }).code])).toEqual([[orphan.id, 'CONN_ERR_SOURCE_UNKNOWN']]);
    expect(taskTitles(w)).toEqual({ '71': '71 v1' });
  });

  it('keeps working when an ack fails once (a full disk): the ack is tried again and the next events go on', async () => {
    const w = await world();
    let failures = 0;
    const q = w.queue;
    // The real queue, except that its first ack fails the way a full disk makes a write fail.
    const flakyQueue: Queue = {
      backend: q.backend,
      enqueue: (events) => q.enqueue(events),
      claim: (options) => q.claim(options),
      ack: async (id) => {
        if (failures++ === 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return q.ack(id);
      },
      retry: (id, error, options) => q.retry(id, error, options),
      deadLetter: (id, error) => q.deadLetter(id, error),
      stats: () => q.stats(),
      peek: (limit) => q.peek(limit),
      listDeadLetters: (filter) => q.listDeadLetters(filter),
      replayDeadLetters: (filter, options) => q.replayDeadLetters(filter, options),
      discardDeadLetters: (filter, options) => q.discardDeadLetters(filter, options),
      waitForWork: (ms, options) => q.waitForWork(ms, options),
      close: () => q.close(),
    };
    await w.queue.enqueue([ev('80')]);
    const d = new Dispatcher({ queue: flakyQueue, db: w.db, sources: [w.teamwork], log, lifecycle: w.lifecycle, retryDelay: () => 10, idleWaitMs: 50 });
    cleanups.push(() => d.stop());
    d.start();
    await until('first event acked', () => drained(w.queue));
    await w.queue.enqueue([ev('81')]);
    await until('second event written and acked', async () => taskTitles(w)['81'] === '81 v1' && (await drained(w.queue)));
    expect(failures).toBe(3);
    expect(w.teamwork.calls.map((c) => c.eventId)).toHaveLength(2);
  });

  it('stops gracefully: the event in hand finishes and is written; events not started stay queued for the next run', async () => {
    const w = await world();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const events = [ev('90'), ev('91'), ev('92'), ev('93')];
    w.teamwork.script(events[0]!.id, { hold: held });
    await w.queue.enqueue(events);
    const d = w.dispatcher({ batchSize: 10 });
    await until('first handler running', () => w.teamwork.calls.length === 1);
    let stopped = false;
    const stopping = d.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(stopped).toBe(false); // waits for the event in hand
    release();
    await stopping;
    expect(w.teamwork.calls.map((c) => c.eventId)).toEqual([events[0]!.id]);
    expect(taskTitles(w)).toEqual({ '90': '90 v1' });
    await w.queue.close();

    const queue = await w.reopenQueue();
    expect(await queue.stats()).toMatchObject({ pending: 3, inFlight: 0 });
    w.dispatcher();
    await until('queue drained', () => drained(queue));
    expect(taskTitles(w)).toEqual({ '90': '90 v1', '91': '91 v1', '92': '92 v1', '93': '93 v1' });
  });

  it('a stop does not wait longer than stopGraceMs for an event in hand: its vendor requests are aborted and it is put back, no attempt spent (issue 15 item 2)', async () => {
    const w = await world();
    const events = [ev('94'), ev('95')];
    w.teamwork.script(events[0]!.id, { untilAborted: true }); // a vendor that never answers (or a pause of minutes)
    await w.queue.enqueue(events);
    const d = w.dispatcher({ batchSize: 10, maxAttempts: 1, stopGraceMs: 200 });
    await until('first handler running', () => w.teamwork.calls.length === 1);
    const t0 = performance.now();
    await d.stop();
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(dlqLines(w)).toEqual([]); // not dead-lettered, though it was its only attempt
    expect(count(w, 'event:retrying')).toBe(0);
    await w.queue.close();

    const queue = await w.reopenQueue();
    expect(await queue.stats()).toMatchObject({ pending: 2, inFlight: 0, deadLettered: 0 });
    const [first] = await queue.claim();
    expect(first).toMatchObject({ event: { id: events[0]!.id }, attempt: 1 });
  });

  it('returns from stop at once when idle', async () => {
    const w = await world();
    const d = w.dispatcher({ idleWaitMs: 60_000 });
    await new Promise((r) => setTimeout(r, 30));
    const t0 = performance.now();
    await d.stop();
    expect(performance.now() - t0).toBeLessThan(500);
    expect(d.running).toBe(false);
  });

  it('replays dead letters: a dry run moves nothing; the chosen ones go back to the queue and are processed from attempt 1', async () => {
    const w = await world();
    const bad = ev('100');
    const other = ev('m101', { source: 'missive' });
    w.teamwork.script(bad.id, { fail: 'CONN_ERR_EVENT_INVALID' });
    w.missive.script(other.id, { fail: 'CONN_ERR_HTTP_AUTH' });
    await w.queue.enqueue([bad, other]);
    w.dispatcher();
    await until('both dead-lettered', () => w.seen.filter((s) => s.name === 'event:dead-lettered').length === 2);

    await expect(replayDeadLetters(w.queue, {})).rejects.toBeInstanceOf(UsageError);
    const dry = await replayDeadLetters(w.queue, { source: 'teamwork', dryRun: true });
    expect(dry.replayed.map((d) => d.event.id)).toEqual([bad.id]);
    expect(dlqLines(w)).toHaveLength(2);

    const report = await replayDeadLetters(w.queue, { ids: [bad.id] });
    expect(report).toMatchObject({ dryRun: false, missingIds: [] });
    expect(report.replayed.map((d) => d.event.id)).toEqual([bad.id]);
    await until('replayed event acked', () => count(w, 'event:succeeded') === 1);
    expect(taskTitles(w)['100']).toBe('100 v1');
    expect(w.teamwork.callsOf(bad.id)).toHaveLength(2);
    expect(w.seen.filter((s) => s.name === 'event:succeeded' && s.payload.eventId === bad.id).map((s) => s.payload.attempt)).toEqual([1]);
    expect((await w.queue.listDeadLetters()).map((d) => d.event.id)).toEqual([other.id]);
    expect(await w.queue.stats()).toMatchObject({ deadLettered: 1 });
  });
});

describe("Dispatcher: one source's vendor never holds another's events (issue 15)", () => {
  it('a Missive handler stuck in its vendor request does not delay Teamwork events', async () => {
    const w = await world();
    const stuck = ev('m1', { source: 'missive' });
    w.missive.script(stuck.id, { untilAborted: true });
    await w.queue.enqueue([stuck]);
    w.dispatcher({ concurrency: 1, stopGraceMs: 100 });
    await until('the Missive handler is running', () => w.missive.calls.length === 1);
    const started = performance.now();
    await w.queue.enqueue([ev('t1'), ev('t2'), ev('t3')]);
    await until('the Teamwork events are written', () => Object.keys(taskTitles(w)).length === 3, 2_000);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(w.missive.calls).toHaveLength(1); // still in its request
  });

  it("a paused vendor's events wait in the queue, spend no attempt and are never dead-lettered, however many pauses", async () => {
    const w = await world();
    const held = ev('m2', { source: 'missive' });
    // Five pauses in a row: more than maxAttempts (3).
    for (let i = 0; i < 5; i++) w.missive.script(held.id, { fail: 'CONN_ERR_VENDOR_PAUSED', retryAfterMs: 20 });
    await w.queue.enqueue([held]);
    w.dispatcher({ maxAttempts: 3 });
    await until('the event is written', () => count(w, 'event:succeeded') === 1);
    expect(w.missive.callsOf(held.id)).toHaveLength(6);
    expect(w.missive.callsOf(held.id).every((c) => !c.lastAttempt)).toBe(true);
    expect(w.seen.find((s) => s.name === 'event:succeeded')?.payload.attempt).toBe(1);
    expect(dlqLines(w)).toEqual([]);
  });

  it("claims none of a source's events while its vendor is paused, and the other source's at once", async () => {
    const w = await world();
    const limiter = new RateLimiter({});
    w.missive.vendor = limiter;
    limiter.pauseUntil(Date.now() + 800, 'answered 429, asking to wait 0.8 s');
    const waiting = ev('m3', { source: 'missive' });
    await w.queue.enqueue([waiting, ev('t4')]);
    const started = performance.now();
    w.dispatcher();
    await until('the Teamwork event is written', () => count(w, 'event:succeeded') === 1);
    expect(performance.now() - started).toBeLessThan(500);
    expect(w.missive.calls).toHaveLength(0);
    await until('the Missive event is written after the pause', () => count(w, 'event:succeeded') === 2);
    expect((w.missive.calls[0]?.at ?? 0) - started).toBeGreaterThanOrEqual(700);
  });

  it('logs a database outage once when it starts and once when writes succeed again', async () => {
    const w = await world();
    const lines: Array<Record<string, unknown>> = [];
    const sink = createLogger({ level: 'debug', console: false, destination: new Writable({ write: (chunk, _e, done) => void (lines.push(JSON.parse(String(chunk))), done()) }) });
    const locker = new BetterSqlite3(path.join(w.dir, 'connector.db'));
    locker.exec('BEGIN IMMEDIATE');
    await w.queue.enqueue([ev('t5'), ev('m5', { source: 'missive' })]);
    const d = w.dispatcher({ log: sink, retryDelay: () => 30 });
    await until('several failed writes', () => lines.filter((l) => l.msg === 'the database still cannot take writes').length >= 4);
    // What /health shows meanwhile (src/main.ts): the writes' own failure, whatever a probe would say.
    expect(d.writeOutage).toMatchObject({ since: expect.any(String), error: expect.stringMatching(/locked|busy/i) });
    locker.exec('ROLLBACK');
    locker.close();
    await until('both written', () => count(w, 'event:succeeded') === 2);
    expect(d.writeOutage).toBeNull();
    const outageLines = lines.filter((l) => l.level !== 'debug' && /database/.test(String(l.msg)));
    expect(outageLines.map((l) => String(l.msg).replace(/\(.*\)/, '(…)').replace(/[\d.]+ s$/, 'N s'))).toEqual([
      'the database cannot take writes (…); holding the handled events and writing them again after pauses of up to N s',
      'the database takes writes again after N s',
    ]);
  });
});
