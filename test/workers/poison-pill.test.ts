/**
 * Poison pills (issue 14): an event whose handling, writing, retrying or dead-lettering fails for a
 * reason that is not transient ends in the dead letters after bounded tries, and a normal event
 * enqueued after it is processed. Real FileQueue (a temp dir) and real SQLite; the only stand-in is
 * `FaultyQueue`, the real queue with faults injected into `retry`/`deadLetter` for chosen events (the
 * way the simulators inject HTTP faults), because the file queue itself no longer fails on content.
 *
 * Kinds of poison, each its own event:
 * - the handler throws a RangeError, a TypeError, a string, undefined, a null-prototype object (which
 *   not even String() can print);
 * - the database write throws: the record's `raw` holds a BigInt (TypeError in JSON.stringify), a
 *   getter that throws;
 * - the payload nests 5,000 levels: it was enqueued as its own JSON text (as the Teamwork source did),
 *   so it is in the queue, but JSON.stringify of it throws RangeError in the database write, and used
 *   to throw in the queue's retry() and deadLetter() too, which stalled the worker for good;
 * - the queue's retry() throws a TypeError every time; its deadLetter() throws a RangeError once.
 * Run with WORKER_CONCURRENCY 1 and 4.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { ConnectorError, type ErrorRecord } from '../../src/errors.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import { noChanges, withPayloadJson, type Changes, type QueueEvent, type SourceName } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { ClaimOptions, DeadLetterFilter, Queue, RetryOptions } from '../../src/queue/queue.ts';
import type { Delivery, ParsedDelivery, Source } from '../../src/sources/source.ts';
import { Dispatcher } from '../../src/workers/dispatcher.ts';
import { makeTask } from '../fixtures/records.ts';

const log = createLogger({ level: 'silent', console: false });

type Kind = 'ok' | 'range' | 'type' | 'string' | 'undefined' | 'null-proto' | 'raw-bigint' | 'raw-getter' | 'deep' | 'retry-throws' | 'dead-letter-throws-once';

interface Payload {
  kind: Kind;
  recordId: string;
  nest?: unknown;
}

/** A real Source whose handler misbehaves as the event's payload says. */
class PoisonSource implements Source {
  readonly name = 'teamwork' as const;
  readonly apiConfigured = false;
  readonly calls = new Map<string, number>();
  verify(_delivery: Delivery): void {}
  parseWebhook(_delivery: Delivery): ParsedDelivery {
    return { events: [] };
  }
  async handle(event: QueueEvent): Promise<Changes> {
    this.calls.set(event.id, (this.calls.get(event.id) ?? 0) + 1);
    const p = event.payload as Payload;
    const task = (raw: unknown) => ({ ...noChanges(), tasks: [makeTask({ id: p.recordId, title: p.kind, raw })] });
    switch (p.kind) {
      case 'range':
        throw new RangeError('Maximum call stack size exceeded');
      case 'type':
        throw new TypeError("Cannot read properties of undefined (reading 'id')");
      case 'string':
        throw 'a bare string';
      case 'undefined':
        throw undefined;
      case 'null-proto':
        throw Object.create(null) as object;
      case 'raw-bigint':
        return task({ n: 10n });
      case 'raw-getter':
        return task({
          get boom(): never {
            throw new TypeError('getter exploded');
          },
        });
      case 'deep':
        return task(p);
      case 'retry-throws':
        throw new Error('a transient-looking failure, so that the dispatcher calls retry()');
      case 'dead-letter-throws-once':
        throw new ConnectorError('CONN_ERR_EVENT_INVALID', 'a permanent failure, so that the dispatcher calls deadLetter()');
      default:
        return task({ kind: p.kind });
    }
  }
}

/** The real file queue, with faults injected into retry/deadLetter for chosen events. */
class FaultyQueue implements Queue {
  readonly backend = 'file' as const;
  readonly deadLetterFailures = new Map<string, number>();
  constructor(
    readonly inner: FileQueue,
    private readonly retryAlwaysThrows: Set<string>,
    private readonly deadLetterThrowsOnce: Set<string>,
  ) {}
  enqueue(events: readonly QueueEvent[]) {
    return this.inner.enqueue(events);
  }
  claim(options?: ClaimOptions) {
    return this.inner.claim(options);
  }
  ack(eventId: string) {
    return this.inner.ack(eventId);
  }
  async retry(eventId: string, error: ErrorRecord, options: RetryOptions) {
    if (this.retryAlwaysThrows.has(eventId)) throw new TypeError('injected: retry() has a bug');
    return this.inner.retry(eventId, error, options);
  }
  async deadLetter(eventId: string, error: ErrorRecord) {
    if (this.deadLetterThrowsOnce.delete(eventId)) {
      this.deadLetterFailures.set(eventId, (this.deadLetterFailures.get(eventId) ?? 0) + 1);
      throw new RangeError('injected: deadLetter() failed once');
    }
    return this.inner.deadLetter(eventId, error);
  }
  stats() {
    return this.inner.stats();
  }
  peek(limit: number) {
    return this.inner.peek(limit);
  }
  listDeadLetters(filter?: DeadLetterFilter) {
    return this.inner.listDeadLetters(filter);
  }
  replayDeadLetters(filter: DeadLetterFilter, options?: { dryRun?: boolean }) {
    return this.inner.replayDeadLetters(filter, options);
  }
  discardDeadLetters(filter: DeadLetterFilter, options?: { dryRun?: boolean }) {
    return this.inner.discardDeadLetters(filter, options);
  }
  waitForWork(timeoutMs: number, options?: { sources?: readonly SourceName[] }) {
    return this.inner.waitForWork(timeoutMs, options);
  }
  close() {
    return this.inner.close();
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let counter = 0;
function event(kind: Kind): QueueEvent {
  const recordId = `${kind}-${++counter}`;
  const payload: Payload = { kind, recordId };
  const ev: QueueEvent = { id: `ev-${recordId}`, source: 'teamwork', type: 'TASK.UPDATED', entityKey: `task:${recordId}`, origin: 'webhook', receivedAt: new Date(), payload };
  if (kind === 'deep') {
    // As the Teamwork source hands over a compact JSON body: its own text, never re-serialised.
    const levels = 5_000;
    const text = `{"kind":"deep","recordId":"${recordId}","nest":${'['.repeat(levels)}${']'.repeat(levels)}}`;
    ev.payload = withPayloadJson(JSON.parse(text) as object, text);
  }
  return ev;
}

function dlqIds(dir: string): string[] {
  const file = path.join(dir, 'queue', 'dlq.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { id: string }).id);
}

function taskIds(dir: string): string[] {
  const db = new BetterSqlite3(path.join(dir, 'connector.db'), { readonly: true });
  try {
    return (db.prepare('SELECT id FROM tasks ORDER BY id').all() as Array<{ id: string }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const POISON: readonly Kind[] = ['range', 'type', 'string', 'undefined', 'null-proto', 'raw-bigint', 'raw-getter', 'deep', 'retry-throws', 'dead-letter-throws-once'];

describe.each([1, 4])('poison pills with WORKER_CONCURRENCY %i', (concurrency) => {
  it('every poison event ends in the dead letters, and a normal event after them is processed', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-poison-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const inner = await FileQueue.open({ dir: path.join(dir, 'queue'), log });
    const db = new SqliteDatabase({ file: path.join(dir, 'connector.db'), busyTimeoutMs: 20 });
    await db.migrate();
    const poison = POISON.map(event);
    const byKind = (kind: Kind) => poison.filter((e) => (e.payload as Payload).kind === kind).map((e) => e.id);
    const queue = new FaultyQueue(inner, new Set(byKind('retry-throws')), new Set(byKind('dead-letter-throws-once')));
    const source = new PoisonSource();
    const dispatcher = new Dispatcher({ queue, db, sources: [source], log, lifecycle: new Lifecycle(), concurrency, maxAttempts: 3, retryDelay: () => 10, idleWaitMs: 50 });
    cleanups.push(async () => {
      await dispatcher.stop();
      await inner.close();
      await db.close();
    });

    await queue.enqueue(poison);
    const normal = event('ok');
    await queue.enqueue([normal]);
    dispatcher.start();

    const normalId = (normal.payload as Payload).recordId;
    await until('the normal event is written', () => taskIds(dir).includes(normalId));
    await until('every poison event is dead-lettered', () => poison.every((e) => dlqIds(dir).includes(e.id)));
    await until('the queue is drained', async () => {
      const s = await queue.stats();
      return s.pending + s.inFlight + s.delayed === 0;
    });

    const dead = await queue.listDeadLetters();
    expect(dead.map((d) => d.event.id).sort()).toEqual(poison.map((e) => e.id).sort());
    for (const letter of dead) {
      expect(letter.error.message, letter.event.id).not.toBe('');
      expect(letter.attempts, letter.event.id).toBeLessThanOrEqual(3);
    }
    // The deep payload is kept as it was stored, not dropped: its nesting survives in the dead letter.
    const deep = dead.find((d) => (d.event.payload as Payload).kind === 'deep');
    expect(deep?.event.payload).toMatchObject({ kind: 'deep', recordId: expect.any(String) });
    expect(Array.isArray((deep?.event.payload as Payload).nest)).toBe(true);
    // The retry that always throws was given up on with a clear error, and dead-lettered.
    const retryThrows = dead.find((d) => (d.event.payload as Payload).kind === 'retry-throws');
    expect(retryThrows?.error.message).toMatch(/could not retry/);
    expect(retryThrows?.error.message).toMatch(/retry\(\) has a bug/);
    // A bounded number of handler calls for each poison event.
    for (const e of poison) expect(source.calls.get(e.id) ?? 0, e.id).toBeLessThanOrEqual(3);
    expect(queue.deadLetterFailures.size).toBe(1);
    expect(taskIds(dir)).toContain(normalId);
  }, 60_000);
});

describe('transient queue failures still retry', () => {
  it('a retry() failing with ENOSPC a few times is tried again until it works, not dead-lettered', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-poison-enospc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const inner = await FileQueue.open({ dir: path.join(dir, 'queue'), log });
    const db = new SqliteDatabase({ file: path.join(dir, 'connector.db'), busyTimeoutMs: 20 });
    await db.migrate();
    const flaky = event('range');
    let enospc = 6;
    const queue = new (class extends FaultyQueue {
      override async retry(eventId: string, error: ErrorRecord, options: RetryOptions) {
        if (eventId === flaky.id && enospc > 0) {
          enospc--;
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write', errno: -28 });
        }
        return super.retry(eventId, error, options);
      }
    })(inner, new Set(), new Set());
    const source = new PoisonSource();
    const dispatcher = new Dispatcher({ queue, db, sources: [source], log, lifecycle: new Lifecycle(), maxAttempts: 3, retryDelay: () => 5, idleWaitMs: 50 });
    cleanups.push(async () => {
      await dispatcher.stop();
      await inner.close();
      await db.close();
    });
    await queue.enqueue([flaky]);
    dispatcher.start();
    await until('dead-lettered after its own attempts', () => dlqIds(dir).includes(flaky.id));
    expect(enospc).toBe(0);
    const [letter] = await queue.listDeadLetters();
    // Dead-lettered for the handler's error after its 3 attempts, not for the queue's ENOSPC.
    expect(letter?.attempts).toBe(3);
    expect(letter?.error.message).toMatch(/Maximum call stack/);
    expect(source.calls.get(flaky.id)).toBe(3);
  }, 30_000);
});

describe('a dead letter that can never be written', () => {
  it('leaves that event claimed and unacked (never acked, never spun on) while the others are processed; a restart hands it out again', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-poison-dlq-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const inner = await FileQueue.open({ dir: path.join(dir, 'queue'), log });
    const db = new SqliteDatabase({ file: path.join(dir, 'connector.db'), busyTimeoutMs: 20 });
    await db.migrate();
    const stuck = event('dead-letter-throws-once');
    let deadLetterCalls = 0;
    const queue = new (class extends FaultyQueue {
      override async deadLetter(eventId: string, error: ErrorRecord) {
        if (eventId === stuck.id) {
          deadLetterCalls++;
          throw new TypeError('injected: deadLetter() always fails for this event');
        }
        return super.deadLetter(eventId, error);
      }
    })(inner, new Set(), new Set());
    const source = new PoisonSource();
    const dispatcher = new Dispatcher({ queue, db, sources: [source], log, lifecycle: new Lifecycle(), maxAttempts: 3, retryDelay: () => 5, idleWaitMs: 50 });
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) await dispatcher.stop();
      await inner.close();
      await db.close();
    });
    const others = [event('ok'), event('range'), event('ok')];
    await queue.enqueue([stuck, ...others]);
    dispatcher.start();
    await until('the other events are done', async () => {
      const s = await queue.stats();
      return s.pending + s.delayed === 0 && s.inFlight === 1 && s.deadLettered === 1;
    });
    const ids = taskIds(dir);
    for (const e of [others[0], others[2]]) expect(ids).toContain((e?.payload as Payload).recordId);
    // Bounded: three tries of the dead letter, then left alone (no spinning).
    await new Promise((r) => setTimeout(r, 200));
    expect(deadLetterCalls).toBe(3);
    expect(source.calls.get(stuck.id)).toBe(1);
    expect(dlqIds(dir)).not.toContain(stuck.id);
    await dispatcher.stop();
    stopped = true;
    await inner.close();
    // Nothing was lost: after a restart the event is handed out again.
    const reopened = await FileQueue.open({ dir: path.join(dir, 'queue'), log });
    cleanups.push(() => reopened.close());
    const [again] = await reopened.claim();
    expect(again?.event.id).toBe(stuck.id);
  }, 30_000);
});
