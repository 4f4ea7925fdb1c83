/**
 * `migrate-queue`: moves what waits in a file queue (`${DATA_DIR}/queue`) into the shared engine the
 * settings name (QUEUE_BACKEND=redis or postgres), without losing an event, for an operator moving a
 * connector from one host to several (docs/scaling.md).
 *
 * How: it becomes the file queue's consumer (so the connector on that DATA_DIR must be stopped: the
 * command refuses while a worker holds the queue), then, batch by batch, claims events from the file
 * queue, enqueues them into the engine and only then acks them in the file queue. A crash or Ctrl-C
 * between the two leaves the batch in the file queue as well: the next run enqueues it again, and the
 * engine drops an event it already holds (the job id is the event id). Events still backing off in the
 * file queue are waited for (their delays are the retry policy's, at most minutes), with a line saying
 * how many and until when. The attempts an event had spent are not carried over: it starts again at
 * attempt 1 in the engine.
 *
 * Dead letters stay in the file queue's `dlq.jsonl`, untouched, and are reported: replay them there
 * first (`QUEUE_BACKEND=file connector replay-dlq ...`, then migrate again) to have them processed.
 */
import type { Queue } from '../queue/queue.ts';
import { UsageError } from './usage-error.ts';

export interface MigrateOptions {
  /** Events per batch. Default 500. */
  batchSize?: number;
  /** Change nothing; report what would move. */
  dryRun?: boolean;
  signal?: AbortSignal;
  /** Called after each batch, and while waiting for events that back off. */
  onProgress?: (progress: MigrateProgress) => void;
}

export interface MigrateProgress {
  moved: number;
  /** Events still in the file queue (pending and backing off). */
  left: number;
  /** Events backing off in the file queue, waited for. */
  waitingFor: number;
}

export interface MigrateResult {
  dryRun: boolean;
  moved: number;
  /** Dead letters left in the file queue. */
  deadLetters: number;
  /** The run was interrupted before the file queue was empty. */
  interrupted: boolean;
}

export async function migrateQueue(from: Queue, to: Queue, options: MigrateOptions = {}): Promise<MigrateResult> {
  if (from.backend !== 'file') throw new UsageError(`migrate-queue moves a file queue into a shared engine; the source here is ${from.backend}`);
  if (to.backend === 'file') throw new UsageError('migrate-queue needs a shared engine to move into: set QUEUE_BACKEND=redis (and REDIS_URL) or QUEUE_BACKEND=postgres (and QUEUE_DATABASE_URL or DATABASE_URL)');
  const before = await from.stats();
  const deadLetters = before.deadLettered;
  if (options.dryRun === true) return { dryRun: true, moved: before.pending + before.inFlight + before.delayed, deadLetters, interrupted: false };
  if (from.tryConsume !== undefined) {
    const answer = await from.tryConsume();
    if (!answer.consumer) throw new UsageError(`${answer.holder} is working on this file queue: stop the connector on this DATA_DIR first, then migrate`);
  }
  const batchSize = options.batchSize ?? 500;
  let moved = 0;
  for (;;) {
    if (options.signal?.aborted === true) return { dryRun: false, moved, deadLetters, interrupted: true };
    const batch = await from.claim({ limit: batchSize });
    if (batch.length > 0) {
      await to.enqueue(batch.map((c) => c.event));
      for (const c of batch) await from.ack(c.event.id);
      moved += batch.length;
    }
    const stats = await from.stats();
    const left = stats.pending + stats.inFlight + stats.delayed;
    options.onProgress?.({ moved, left, waitingFor: stats.delayed });
    if (left === 0) return { dryRun: false, moved, deadLetters, interrupted: false };
    if (batch.length === 0) await from.waitForWork(1_000);
  }
}
