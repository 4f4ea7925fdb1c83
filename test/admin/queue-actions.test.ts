/**
 * check-queue and replay-dlq as library functions, on a real file queue: a "worker" instance claims
 * and dead-letters, a second instance (what a CLI process opens) reads and replays, as two processes
 * on one DATA_DIR would.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkQueue } from '../../src/admin/check-queue.ts';
import { replayDeadLetters, replayFilter } from '../../src/admin/replay-dead-letters.ts';
import { renderQueueReport, renderReplay } from '../../src/admin/render.ts';
import { UsageError } from '../../src/admin/usage-error.ts';
import { fileQueueWorker } from '../../src/admin/worker-status.ts';
import type { QueueEvent, SourceName } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import { logSink } from './helpers.ts';

let dir: string;
let worker: FileQueue;
let outside: FileQueue;

function event(source: SourceName, key: string, payload: unknown = { secret: 'an email body' }): QueueEvent {
  return { id: randomUUID(), source, type: source === 'teamwork' ? 'TASK.UPDATED' : 'incoming_email', entityKey: key, origin: 'webhook', receivedAt: new Date(), payload };
}

/** Claims everything ready and dead-letters it, as the dispatcher does with a permanent failure. */
async function deadLetterAll(): Promise<void> {
  for (const claimed of await worker.claim({ limit: 100 })) {
    await worker.deadLetter(claimed.event.id, { code: 'CONN_ERR_HTTP_AUTH', message: 'refused (401)', retryable: false });
  }
}

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'conn-admin-queue-'));
  const { log } = logSink('warn');
  worker = await FileQueue.open({ dir, log });
  outside = await FileQueue.open({ dir, log });
});

afterEach(async () => {
  await outside.close();
  await worker.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('worker status', () => {
  it('is stopped before any claim, running (this pid) while a consumer holds the lock, stopped after', async () => {
    expect(await fileQueueWorker(dir)).toEqual({ state: 'stopped' });
    await worker.claim();
    expect(await fileQueueWorker(dir)).toMatchObject({ state: 'running', pid: process.pid });
    await worker.close();
    expect(await fileQueueWorker(dir)).toEqual({ state: 'stopped' });
  });
});

describe('checkQueue', () => {
  it('counts what waits and describes the newest events without their payloads', async () => {
    const events = [event('teamwork', 'task:1'), event('missive', 'conversation:a'), event('teamwork', 'task:2')];
    await worker.enqueue(events);
    const report = await checkQueue(outside, { last: 2, worker: await fileQueueWorker(dir) });
    expect(report.stats).toMatchObject({ pending: 3, inFlight: 0, delayed: 0, deadLettered: 0 });
    expect(report.stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(0);
    expect(report.recent.map((e) => e.entityKey)).toEqual(['task:2', 'conversation:a']);
    expect(JSON.stringify(report)).not.toContain('an email body');
    expect(report.inFlightCountedAsPending).toBe(false);

    await worker.claim({ limit: 1 });
    const seenOutside = await checkQueue(outside, { last: 0, worker: await fileQueueWorker(dir) });
    // Claims live in the worker's memory: the other process counts them as pending, and says so.
    expect(seenOutside.stats).toMatchObject({ pending: 3, inFlight: 0 });
    expect(seenOutside.inFlightCountedAsPending).toBe(true);
    expect(seenOutside.recent).toEqual([]);
    const text = renderQueueReport(seenOutside, dir).join('\n');
    expect(text).toMatch(/^pending\s+3$/m);
    expect(text).toMatch(/^in flight\s+counted as pending/m);
    expect(text).toContain(`worker: running (pid ${process.pid}`);

    const seenByWorker = await checkQueue(worker, { last: 0, worker: await fileQueueWorker(dir), outsideWorker: false });
    expect(seenByWorker.stats).toMatchObject({ pending: 2, inFlight: 1 });
    expect(seenByWorker.inFlightCountedAsPending).toBe(false);
  });
});

describe('replayDeadLetters', () => {
  it('refuses a request without a filter, and --all mixed with a narrower one', () => {
    expect(() => replayFilter({})).toThrow(UsageError);
    expect(() => replayFilter({ ids: [' '] })).toThrow(/say which dead letters to replay/);
    expect(() => replayFilter({ all: true, source: 'teamwork' })).toThrow(/use it alone/);
    expect(replayFilter({ all: true })).toEqual({ all: true });
    expect(replayFilter({ source: 'missive', ids: ['a'] })).toEqual({ source: 'missive', ids: ['a'] });
  });

  it('from another process: a dry run changes nothing; a replay by source moves only those, fresh, to the worker', async () => {
    const tw = event('teamwork', 'task:7');
    const mv = event('missive', 'conversation:b');
    await worker.enqueue([tw, mv]);
    await deadLetterAll();
    expect((await outside.stats()).deadLettered).toBe(2);

    const dry = await replayDeadLetters(outside, { all: true, dryRun: true });
    expect(dry.replayed.map((d) => d.event.id).sort()).toEqual([tw.id, mv.id].sort());
    expect(renderReplay(dry)[0]).toBe('2 dead letter(s) would be replayed (dry run; nothing changed):');
    expect((await outside.stats()).deadLettered).toBe(2);

    const result = await replayDeadLetters(outside, { source: 'teamwork', ids: [tw.id, 'gone'] });
    expect(result.replayed.map((d) => d.event.id)).toEqual([tw.id]);
    expect(result.missingIds).toEqual(['gone']);
    expect(renderReplay(result)).toContain('not among the dead letters: gone');
    expect((await outside.stats()).deadLettered).toBe(1);

    // The worker gets the replayed event back as a fresh first attempt.
    await worker.waitForWork(1_000);
    const [claimed] = await worker.claim();
    expect(claimed?.event.id).toBe(tw.id);
    expect(claimed?.attempt).toBe(1);
    expect((await worker.listDeadLetters()).map((d) => d.event.id)).toEqual([mv.id]);
  });
});
