/**
 * The one test suite every Queue backend must pass (file, and BullMQ on Redis and on PostgreSQL). It checks what the contract
 * in src/queue/queue.ts promises, through the contract alone: no backend type, no file or key is looked
 * at here. Backend-specific behaviour (torn lines, locks, compaction, group commit) has its own tests.
 *
 * Usage, in a backend's test file:
 *
 *   queueConformance('file', async () => {
 *     const dir = mkdtempSync(...);
 *     return { open: () => FileQueue.open({ dir, log }), destroy: () => rm(dir, ...) };
 *   });
 *
 * Timing: nothing here depends on tight timing. "Still backing off" uses a one-minute delay; "comes
 * back after its delay" uses a short one and polls for up to five seconds.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { ErrorRecord } from '../../src/errors.ts';
import type { QueueEvent, SourceName } from '../../src/model.ts';
import type { ClaimOptions, ClaimedEvent, Queue } from '../../src/queue/queue.ts';

/** One backing store for a test: `open` may be called again after the previous queue was closed. */
export interface QueueHarness {
  open(): Promise<Queue>;
  /** Removes the store (called after every test, after the queues are closed). */
  destroy(): Promise<void>;
}

const TRANSIENT: ErrorRecord = { code: 'CONN_ERR_HTTP_SERVER', message: 'vendor answered 503', retryable: true, status: 503 };
const PERMANENT: ErrorRecord = { code: 'CONN_ERR_EVENT_INVALID', message: 'payload has no task id', retryable: false, details: { field: 'id' } };
const MINUTE = 60_000;

export function queueConformance(name: string, makeQueue: () => Promise<QueueHarness>): void {
  describe(`Queue conformance: ${name}`, () => {
    const open: Queue[] = [];
    const harnesses: QueueHarness[] = [];
    let prefix = '';

    afterEach(async () => {
      for (const q of open.splice(0)) await q.close().catch(() => {});
      for (const h of harnesses.splice(0)) await h.destroy();
    });

    async function fresh(): Promise<{ q: Queue; reopen: () => Promise<Queue> }> {
      const harness = await makeQueue();
      harnesses.push(harness);
      prefix = randomUUID().slice(0, 8);
      const q = await harness.open();
      open.push(q);
      return {
        q,
        reopen: async () => {
          const again = await harness.open();
          open.push(again);
          return again;
        },
      };
    }

    function event(n: number, overrides: Partial<QueueEvent> = {}): QueueEvent {
      return {
        id: `${prefix}-e${n}`,
        source: 'teamwork',
        type: 'TASK.UPDATED',
        entityKey: `task:${prefix}-${n}`,
        origin: 'webhook',
        receivedAt: new Date(Date.now() - 1000 + n),
        payload: { n, task: { id: n, name: `Task ${n}` } },
        ...overrides,
      };
    }

    const ids = (claimed: readonly ClaimedEvent[]) => claimed.map((c) => c.event.id);

    async function claimWithin(q: Queue, ms: number): Promise<ClaimedEvent[]> {
      const deadline = Date.now() + ms;
      for (;;) {
        const got = await q.claim({ limit: 10 });
        if (got.length > 0 || Date.now() > deadline) return got;
        await q.waitForWork(50);
      }
    }

    /** Claims until `n` events are in hand or five seconds have passed. */
    async function claimUntil(q: Queue, n: number, options: Omit<ClaimOptions, 'limit'> = {}): Promise<ClaimedEvent[]> {
      const got: ClaimedEvent[] = [];
      const deadline = Date.now() + 5000;
      while (got.length < n && Date.now() < deadline) {
        got.push(...(await q.claim({ ...options, limit: n - got.length })));
        if (got.length < n) await q.waitForWork(50);
      }
      return got;
    }

    it('hands out enqueued events in order, each once, exactly as they were, and forgets them when acked', async () => {
      const { q } = await fresh();
      const events = [1, 2, 3, 4, 5].map((n) => event(n));
      await q.enqueue(events);
      const claimed = await q.claim({ limit: 10 });
      expect(ids(claimed)).toEqual(events.map((e) => e.id));
      for (const [i, c] of claimed.entries()) {
        expect(c.attempt).toBe(1);
        expect(c.lastError).toBeNull();
        expect(c.event).toEqual(events[i]);
        expect(c.event.receivedAt).toBeInstanceOf(Date);
      }
      expect(await q.claim({ limit: 10 })).toEqual([]);
      for (const e of events) await q.ack(e.id);
      expect(await q.stats()).toEqual({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0, oldestPendingAgeMs: null });
    });

    it('claims one event by default and never more than the limit', async () => {
      const { q } = await fresh();
      await q.enqueue([1, 2, 3, 4, 5].map((n) => event(n)));
      expect(ids(await q.claim())).toEqual([`${prefix}-e1`]);
      expect(ids(await q.claim({ limit: 2 }))).toEqual([`${prefix}-e2`, `${prefix}-e3`]);
      expect(await q.claim({ limit: 0 })).toEqual([]);
      expect(ids(await q.claim({ limit: 10 }))).toEqual([`${prefix}-e4`, `${prefix}-e5`]);
    });

    it('keeps enqueue order within each source', async () => {
      const { q } = await fresh();
      const sources: SourceName[] = ['teamwork', 'missive', 'missive', 'teamwork', 'missive', 'teamwork', 'teamwork', 'missive'];
      for (const [n, source] of sources.entries()) await q.enqueue([event(n, { source })]);
      const seen: QueueEvent[] = [];
      for (;;) {
        const [c] = await q.claim();
        if (c === undefined) break;
        seen.push(c.event);
        await q.ack(c.event.id);
      }
      expect(seen).toHaveLength(sources.length);
      for (const source of ['teamwork', 'missive'] as const) {
        const order = seen.filter((e) => e.source === source).map((e) => (e.payload as { n: number }).n);
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }
    });

    it('claims only the sources asked for, in enqueue order within each, and leaves the others', async () => {
      const { q } = await fresh();
      const sources: SourceName[] = ['teamwork', 'missive', 'missive', 'teamwork', 'missive', 'teamwork', 'teamwork', 'missive'];
      const events = sources.map((source, n) => event(n, { source }));
      await q.enqueue(events);
      const of = (source: SourceName) => events.filter((e) => e.source === source).map((e) => e.id);

      const missive = await q.claim({ limit: 10, sources: ['missive'] });
      expect(ids(missive)).toEqual(of('missive'));
      expect(missive.every((c) => c.event.source === 'missive')).toBe(true);
      // The teamwork events were passed over, not lost: still pending, and handed out when asked for.
      expect(await q.stats()).toMatchObject({ pending: 4, inFlight: 4 });
      expect(await q.claim({ limit: 10, sources: ['missive'] })).toEqual([]);
      expect(await q.claim({ limit: 10, sources: [] })).toEqual([]);

      expect(ids(await q.claim({ sources: ['teamwork'] }))).toEqual(of('teamwork').slice(0, 1));
      expect(ids(await q.claim({ limit: 10, sources: ['teamwork'] }))).toEqual(of('teamwork').slice(1));
      expect(await q.stats()).toMatchObject({ pending: 0, inFlight: 8 });
      for (const e of events) await q.ack(e.id);

      // Without the option, both; with both named, both; each source in enqueue order (no order is
      // promised across sources).
      const later = [10, 11, 12, 13].map((n) => event(n, { source: n % 2 === 0 ? 'teamwork' : 'missive' }));
      await q.enqueue(later);
      const both = [...(await q.claim({ limit: 2, sources: ['missive', 'teamwork'] })), ...(await q.claim({ limit: 10 }))];
      expect(ids(both).sort()).toEqual(later.map((e) => e.id).sort());
      for (const source of ['teamwork', 'missive'] as const) {
        expect(both.filter((c) => c.event.source === source).map((c) => c.event.id)).toEqual(later.filter((e) => e.source === source).map((e) => e.id));
      }
      for (const e of later) await q.ack(e.id);

      // A source's backlog waits for its own claims while the other source's events keep coming.
      const backlog = [20, 21, 22].map((n) => event(n, { source: 'teamwork' }));
      await q.enqueue(backlog);
      for (const n of [30, 31]) {
        const arrival = event(n, { source: 'missive' });
        await q.enqueue([arrival]);
        expect(ids(await q.claim({ limit: 10, sources: ['missive'] }))).toEqual([arrival.id]);
        await q.ack(arrival.id);
      }
      expect(await q.stats()).toMatchObject({ pending: 3, inFlight: 0 });
      expect(ids(await q.claim({ limit: 10, sources: ['teamwork'] }))).toEqual(backlog.map((e) => e.id));
    });

    it('skips events whose entity is busy, never hands out two of one entity at once, and never one already claimed', async () => {
      const { q } = await fresh();
      await q.enqueue([
        event(1, { entityKey: 'task:A' }),
        event(2, { entityKey: 'task:A' }),
        event(3, { entityKey: 'task:B' }),
        event(4, { entityKey: null }),
        event(5, { entityKey: null }),
        event(6, { entityKey: 'task:C' }),
        event(7, { entityKey: 'task:C' }),
      ]);
      const first = await q.claim({ limit: 10, busyKeys: new Set(['task:A']) });
      expect(ids(first)).toEqual([3, 4, 5, 6].map((n) => `${prefix}-e${n}`));
      // An event passed over may be set aside for a moment, and lose its place (BullMQ): claims poll
      // for it, and either of task:A's events may come first, never both.
      const second = await claimUntil(q, 1, { busyKeys: new Set(['task:B', 'task:C']) });
      expect(ids(second)).toHaveLength(1);
      const [firstOfA] = ids(second);
      expect([`${prefix}-e1`, `${prefix}-e2`]).toContain(firstOfA);
      expect(await q.claim({ limit: 10, busyKeys: new Set(['task:A', 'task:C']) })).toEqual([]);
      await q.ack(firstOfA!);
      await q.ack(`${prefix}-e6`);
      const otherOfA = firstOfA === `${prefix}-e1` ? `${prefix}-e2` : `${prefix}-e1`;
      expect(ids(await claimUntil(q, 2)).sort()).toEqual([otherOfA, `${prefix}-e7`].sort());
    });

    it("hands out an entity's events in their order, however long the entity stays busy and whenever they arrive", async () => {
      const { q } = await fresh();
      const busy = { busyKeys: new Set(['task:A']) };
      const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      await q.enqueue([event(1, { entityKey: 'task:A' })]);
      expect(await q.claim({ ...busy, limit: 10 })).toEqual([]);
      await pause(150);
      await q.enqueue([event(2, { entityKey: 'task:A' })]);
      expect(await q.claim({ ...busy, limit: 10 })).toEqual([]);
      // Long enough for an event passed over at the first claim to be ready again, not the second.
      await pause(150);
      expect(await q.claim({ ...busy, limit: 10 })).toEqual([]);
      expect(ids(await claimUntil(q, 1))).toEqual([`${prefix}-e1`]);
      await q.ack(`${prefix}-e1`);
      expect(ids(await claimUntil(q, 1))).toEqual([`${prefix}-e2`]);
    });

    it('lets events behind a backing-off event go first', async () => {
      const { q } = await fresh();
      await q.enqueue([event(1), event(2), event(3)]);
      const [a] = await q.claim();
      await q.retry(a!.event.id, TRANSIENT, { delayMs: MINUTE });
      expect(ids(await q.claim({ limit: 10 }))).toEqual([`${prefix}-e2`, `${prefix}-e3`]);
      expect(await q.claim({ limit: 10 })).toEqual([]);
      const stats = await q.stats();
      expect(stats).toMatchObject({ pending: 0, inFlight: 2, delayed: 1 });
    });

    it('hands a retried event out again after its delay, counting attempts and carrying the last error', async () => {
      const { q } = await fresh();
      const original = event(1);
      await q.enqueue([original, event(2)]);
      const [first] = await q.claim();
      expect(first!.attempt).toBe(1);
      await q.retry(original.id, TRANSIENT, { delayMs: 50 });
      await q.ack((await q.claim())[0]!.event.id); // event 2
      const [second] = await claimWithin(q, 5000);
      expect(second).toBeDefined();
      expect(second!.event).toEqual(original);
      expect(second!.attempt).toBe(2);
      expect(second!.lastError).toEqual(TRANSIENT);
      const other: ErrorRecord = { code: 'CONN_ERR_HTTP_TIMEOUT', message: 'timed out', retryable: true };
      await q.retry(original.id, other, { delayMs: 0 });
      const [third] = await claimWithin(q, 5000);
      expect(third!.attempt).toBe(3);
      expect(third!.lastError).toEqual(other);
      await q.ack(original.id);
      expect(await q.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0 });
    });

    it('a retry that spends no attempt hands the event out again with the same attempt number and the new error', async () => {
      const { q, reopen } = await fresh();
      const original = event(1);
      await q.enqueue([original]);
      const [first] = await q.claim();
      expect(first!.attempt).toBe(1);
      const paused: ErrorRecord = { code: 'CONN_ERR_HTTP_RATE_LIMITED', message: 'vendor paused', retryable: true, retryAfterMs: 50 };
      await q.retry(original.id, paused, { delayMs: 50, spendAttempt: false });
      expect(await q.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 1 });
      const [second] = await claimWithin(q, 5000);
      expect(second).toBeDefined();
      expect(second!.event).toEqual(original);
      expect(second!.attempt).toBe(1);
      expect(second!.lastError).toEqual(paused);

      // A normal retry counts again.
      await q.retry(original.id, TRANSIENT, { delayMs: 0 });
      const [third] = await claimWithin(q, 5000);
      expect(third!.attempt).toBe(2);
      expect(third!.lastError).toEqual(TRANSIENT);

      // Across a reopen, the attempt number the copy was kept with.
      await q.retry(original.id, paused, { delayMs: 0, spendAttempt: false });
      await q.close();
      const again = await reopen();
      const [fourth] = await claimWithin(again, 5000);
      expect(fourth!.event).toEqual(original);
      expect(fourth!.attempt).toBe(2);
      expect(fourth!.lastError).toEqual(paused);
      await again.retry(original.id, TRANSIENT, { delayMs: 0, spendAttempt: true });
      const [fifth] = await claimWithin(again, 5000);
      expect(fifth!.attempt).toBe(3);
      await again.ack(original.id);
      expect(await again.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0 });
    });

    it('keeps dead letters with their event, error, attempts and times, and hands them out no more', async () => {
      const { q } = await fresh();
      const doomed = event(1);
      await q.enqueue([doomed]);
      const before = Date.now();
      await q.claim();
      await q.retry(doomed.id, TRANSIENT, { delayMs: 0 });
      await claimWithin(q, 5000);
      await q.deadLetter(doomed.id, PERMANENT);
      expect(await q.claim({ limit: 10 })).toEqual([]);
      const letters = await q.listDeadLetters();
      expect(letters).toHaveLength(1);
      const [letter] = letters;
      expect(letter!.event).toEqual(doomed);
      expect(letter!.attempts).toBe(2);
      expect(letter!.error).toEqual(PERMANENT);
      expect(letter!.firstAttemptAt).not.toBeNull();
      const first = Date.parse(letter!.firstAttemptAt!);
      const dead = Date.parse(letter!.deadLetteredAt);
      expect(new Date(first).toISOString()).toBe(letter!.firstAttemptAt);
      expect(first).toBeGreaterThanOrEqual(before - 1000);
      expect(dead).toBeGreaterThanOrEqual(first);
      expect(dead).toBeLessThanOrEqual(Date.now() + 1000);
      expect(await q.stats()).toEqual({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 1, oldestPendingAgeMs: null });
    });

    it('replays dead letters: a dry run moves nothing; by source, by ids, or all; replayed events start over', async () => {
      const { q } = await fresh();
      const tw1 = event(1);
      const mi2 = event(2, { source: 'missive', type: 'incoming_email' });
      const tw3 = event(3);
      const mi4 = event(4, { source: 'missive', type: 'incoming_email' });
      await q.enqueue([tw1, mi2, tw3, mi4]);
      for (const c of await q.claim({ limit: 10 })) await q.deadLetter(c.event.id, PERMANENT);
      expect(await q.listDeadLetters()).toHaveLength(4);

      const dry = await q.replayDeadLetters({ all: true }, { dryRun: true });
      expect(dry.map((d) => d.event.id).sort()).toEqual([tw1, mi2, tw3, mi4].map((e) => e.id).sort());
      expect(await q.listDeadLetters()).toHaveLength(4);
      expect(await q.claim({ limit: 10 })).toEqual([]);

      expect(await q.replayDeadLetters({})).toEqual([]);
      expect(await q.listDeadLetters()).toHaveLength(4);

      const bySource = await q.replayDeadLetters({ source: 'missive' });
      expect(bySource.map((d) => d.event.id).sort()).toEqual([mi2.id, mi4.id].sort());
      expect((await q.listDeadLetters()).map((d) => d.event.id).sort()).toEqual([tw1.id, tw3.id].sort());
      expect((await q.listDeadLetters({ source: 'teamwork' })).map((d) => d.event.id).sort()).toEqual([tw1.id, tw3.id].sort());
      const replayed = await q.claim({ limit: 10 });
      expect(ids(replayed).sort()).toEqual([mi2.id, mi4.id].sort());
      for (const c of replayed) {
        expect(c.attempt).toBe(1);
        expect(c.lastError).toBeNull();
        expect(c.event).toEqual(c.event.id === mi2.id ? mi2 : mi4);
        await q.ack(c.event.id);
      }

      expect((await q.replayDeadLetters({ ids: [tw3.id] })).map((d) => d.event.id)).toEqual([tw3.id]);
      expect((await q.replayDeadLetters({ all: true })).map((d) => d.event.id)).toEqual([tw1.id]);
      expect(await q.listDeadLetters()).toEqual([]);
      expect(await q.replayDeadLetters({ all: true })).toEqual([]);
      expect(ids(await q.claim({ limit: 10 })).sort()).toEqual([tw1.id, tw3.id].sort());
      expect((await q.stats()).deadLettered).toBe(0);
    });

    it('discards dead letters: a dry run removes nothing; by source, by ids, or all; discarded events never come back', async () => {
      const { q, reopen } = await fresh();
      const tw1 = event(1);
      const mi2 = event(2, { source: 'missive', type: 'incoming_email' });
      const tw3 = event(3);
      const mi4 = event(4, { source: 'missive', type: 'incoming_email' });
      const tw5 = event(5);
      await q.enqueue([tw1, mi2, tw3, mi4, tw5]);
      for (const c of await q.claim({ limit: 10 })) await q.deadLetter(c.event.id, PERMANENT);
      const letterIds = async (queue: Queue) => (await queue.listDeadLetters()).map((d) => d.event.id).sort();

      const dry = await q.discardDeadLetters({ source: 'missive' }, { dryRun: true });
      expect(dry.map((d) => d.event.id).sort()).toEqual([mi2.id, mi4.id].sort());
      expect(dry[0]!.error).toEqual(PERMANENT);
      expect(await letterIds(q)).toHaveLength(5);
      expect(await q.discardDeadLetters({})).toEqual([]);
      expect(await letterIds(q)).toHaveLength(5);

      const bySource = await q.discardDeadLetters({ source: 'missive' });
      expect(bySource.map((d) => d.event.id).sort()).toEqual([mi2.id, mi4.id].sort());
      expect(bySource.every((d) => d.error.code === PERMANENT.code)).toBe(true);
      expect(await letterIds(q)).toEqual([tw1.id, tw3.id, tw5.id].sort());
      expect((await q.stats()).deadLettered).toBe(3);

      // Ids narrow within a source; an id that is not a dead letter is simply not among the result.
      expect((await q.discardDeadLetters({ source: 'teamwork', ids: [tw3.id, mi2.id, `${prefix}-nope`] })).map((d) => d.event.id)).toEqual([tw3.id]);
      expect(await letterIds(q)).toEqual([tw1.id, tw5.id].sort());
      // Nothing discarded comes back to be claimed, nor after a reopen; what is left is intact.
      expect(await q.claim({ limit: 10 })).toEqual([]);
      await q.close();
      const again = await reopen();
      expect(await letterIds(again)).toEqual([tw1.id, tw5.id].sort());
      expect(await again.claim({ limit: 10 })).toEqual([]);
      expect(await again.replayDeadLetters({ ids: [mi2.id] })).toEqual([]);

      // A replayed event is no longer a dead letter: discard does not take it from the queue.
      await again.replayDeadLetters({ ids: [tw5.id] });
      expect((await again.discardDeadLetters({ all: true })).map((d) => d.event.id)).toEqual([tw1.id]);
      expect(await again.listDeadLetters()).toEqual([]);
      expect(await again.discardDeadLetters({ all: true })).toEqual([]);
      expect(ids(await claimUntil(again, 1))).toEqual([tw5.id]);
      expect(await again.stats()).toMatchObject({ pending: 0, inFlight: 1, delayed: 0, deadLettered: 0 });
    });

    it('reports pending, in flight, delayed and dead-lettered counts and the age of the oldest event', async () => {
      const { q } = await fresh();
      expect(await q.stats()).toEqual({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0, oldestPendingAgeMs: null });
      const old = event(1, { receivedAt: new Date(Date.now() - 5 * 60_000) });
      await q.enqueue([old, event(2), event(3), event(4), event(5)]);
      expect(await q.stats()).toMatchObject({ pending: 5, inFlight: 0, delayed: 0, deadLettered: 0 });
      const claimed = await q.claim({ limit: 4 });
      await q.retry(claimed[1]!.event.id, TRANSIENT, { delayMs: MINUTE });
      await q.deadLetter(claimed[2]!.event.id, PERMANENT);
      await q.ack(claimed[3]!.event.id);
      const stats = await q.stats();
      expect(stats).toMatchObject({ pending: 1, inFlight: 1, delayed: 1, deadLettered: 1 });
      // The oldest (in flight) counts: it is not done.
      expect(stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(5 * 60_000 - 1000);
      expect(stats.oldestPendingAgeMs).toBeLessThan(10 * 60_000);
      await q.ack(old.id);
      expect((await q.stats()).oldestPendingAgeMs).toBeLessThan(60_000);
    });

    it('peeks at the newest events not yet done, newest first', async () => {
      const { q } = await fresh();
      await q.enqueue([1, 2, 3, 4, 5].map((n) => event(n)));
      await q.ack((await q.claim())[0]!.event.id); // e1 done
      await q.claim(); // e2 in flight
      expect((await q.peek(3)).map((e) => e.id)).toEqual([5, 4, 3].map((n) => `${prefix}-e${n}`));
      expect((await q.peek(10)).map((e) => e.id)).toEqual([5, 4, 3, 2].map((n) => `${prefix}-e${n}`));
      expect(await q.peek(0)).toEqual([]);
    });

    it('peeks newest first by receipt time: an event retried stays in its place', async () => {
      const { q } = await fresh();
      await q.enqueue([1, 2, 3].map((n) => event(n)));
      const [first] = await q.claim();
      await q.retry(first!.event.id, TRANSIENT, { delayMs: 0 });
      expect((await q.peek(3)).map((e) => e.id)).toEqual([3, 2, 1].map((n) => `${prefix}-e${n}`));
      expect((await q.peek(1)).map((e) => e.id)).toEqual([`${prefix}-e3`]);
    });

    it('hands out again, after a reopen, whatever was claimed but not acked', async () => {
      const { q, reopen } = await fresh();
      await q.enqueue([1, 2, 3].map((n) => event(n)));
      const claimed = await q.claim({ limit: 3 });
      expect(claimed).toHaveLength(3);
      await q.ack(claimed[1]!.event.id);
      await q.close();
      const again = await reopen();
      const redelivered = await again.claim({ limit: 10 });
      expect(ids(redelivered)).toEqual([`${prefix}-e1`, `${prefix}-e3`]);
      expect(redelivered.map((c) => c.attempt)).toEqual([1, 1]);
    });

    it('keeps backoffs, attempts, last errors and dead letters across a reopen', async () => {
      const { q, reopen } = await fresh();
      await q.enqueue([event(1), event(2), event(3)]);
      const [a, b, c] = await q.claim({ limit: 3 });
      await q.retry(a!.event.id, TRANSIENT, { delayMs: MINUTE });
      await q.retry(b!.event.id, TRANSIENT, { delayMs: 0 });
      await q.deadLetter(c!.event.id, PERMANENT);
      await q.close();
      const again = await reopen();
      expect(await again.stats()).toMatchObject({ delayed: 1, deadLettered: 1 });
      const [back] = await claimWithin(again, 5000);
      expect(back!.event.id).toBe(b!.event.id);
      expect(back!.attempt).toBe(2);
      expect(back!.lastError).toEqual(TRANSIENT);
      expect(await again.claim({ limit: 10 })).toEqual([]);
      expect((await again.listDeadLetters()).map((d) => d.event.id)).toEqual([c!.event.id]);
    });

    it('keeps every enqueued event across a reopen, in order', async () => {
      const { q, reopen } = await fresh();
      const events = Array.from({ length: 1000 }, (_, n) => event(n, { payload: { n, text: `event ${n} ✓ "quoted"\nnext line` } }));
      for (let i = 0; i < events.length; i += 100) await q.enqueue(events.slice(i, i + 100));
      await q.close();
      const again = await reopen();
      expect((await again.stats()).pending).toBe(1000);
      // A claim hands out up to its limit: a shared engine caps one claim's time (3 s), which a loaded
      // machine reaches before a thousand, so claim until all are out.
      const claimed: ClaimedEvent[] = [];
      for (let round = 0; claimed.length < events.length && round < 50; round++) claimed.push(...(await again.claim({ limit: events.length - claimed.length })));
      expect(claimed.map((c) => c.event)).toEqual(events);
    });

    it('wakes a waiting worker when an event is enqueued, times out otherwise, and returns at once when closing', async () => {
      const { q } = await fresh();
      expect(await q.claim()).toEqual([]);
      const started = Date.now();
      await q.waitForWork(100);
      expect(Date.now() - started).toBeGreaterThanOrEqual(80);

      expect(await q.claim()).toEqual([]);
      const woken = q.waitForWork(20_000);
      await q.enqueue([event(1)]);
      const wokeAt = Date.now();
      await woken;
      expect(Date.now() - wokeAt).toBeLessThan(5000);
      expect(ids(await q.claim())).toEqual([`${prefix}-e1`]);

      expect(await q.claim()).toEqual([]);
      const closing = q.waitForWork(20_000);
      const closeStarted = Date.now();
      await q.close();
      await closing;
      await q.waitForWork(20_000);
      expect(Date.now() - closeStarted).toBeLessThan(5000);
    });

    it("does not let one source's empty claim put another source's waiting worker to sleep past an arrival", async () => {
      const { q } = await fresh();
      expect(await q.claim({ sources: ['teamwork'] })).toEqual([]);
      // A Teamwork event arrives; then the Missive lane claims (nothing for it) before the Teamwork
      // lane waits: the Teamwork lane must not sleep as if nothing had come.
      await q.enqueue([event(1, { source: 'teamwork' })]);
      expect(await q.claim({ sources: ['missive'] })).toEqual([]);
      const started = Date.now();
      await q.waitForWork(20_000, { sources: ['teamwork'] });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(ids(await q.claim({ sources: ['teamwork'] }))).toEqual([`${prefix}-e1`]);
    });

    it("wakes a worker waiting for one source when that source's event arrives, not for another's", async () => {
      const { q } = await fresh();
      expect(await q.claim({ sources: ['missive'] })).toEqual([]);
      const started = Date.now();
      const waiting = q.waitForWork(3_000, { sources: ['missive'] }).then(() => Date.now() - started);
      await q.enqueue([event(1, { source: 'teamwork' })]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await q.enqueue([event(2, { source: 'missive' })]);
      const waited = await waiting;
      expect(waited).toBeGreaterThanOrEqual(250); // not woken by the Teamwork event
      expect(waited).toBeLessThan(2_500); // woken by the Missive one, not by the timeout
      expect(ids(await q.claim({ sources: ['missive'] }))).toEqual([`${prefix}-e2`]);
    });

    it('refuses to settle an event it did not hand out', async () => {
      const { q } = await fresh();
      await q.enqueue([event(1)]);
      await expect(q.ack(`${prefix}-nope`)).rejects.toThrow();
      await expect(q.retry(`${prefix}-e1`, TRANSIENT, { delayMs: 0 })).rejects.toThrow();
      await expect(q.deadLetter(`${prefix}-e1`, PERMANENT)).rejects.toThrow();
      expect(ids(await q.claim())).toEqual([`${prefix}-e1`]);
    });

    it('rejects an invalid event without storing any of the batch, and every call after close', async () => {
      const { q } = await fresh();
      const bad = { ...event(2), source: 'jira' } as unknown as QueueEvent;
      await expect(q.enqueue([event(1), bad])).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_INVALID' });
      expect((await q.stats()).pending).toBe(0);
      await q.close();
      await expect(q.enqueue([event(3)])).rejects.toMatchObject({ code: 'CONN_ERR_QUEUE_CLOSED' });
      await expect(q.claim()).rejects.toMatchObject({ code: 'CONN_ERR_QUEUE_CLOSED' });
    });
  });
}
