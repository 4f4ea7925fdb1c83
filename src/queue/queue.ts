/**
 * The Queue contract: where events wait between the webhook endpoints (or a backfill) and the worker.
 *
 * What callers may rely on, whatever the backend:
 * - `enqueue(events)` resolves only once every event is durable (on disk and fsynced for the file
 *   queue). If it rejects, none of them may be assumed stored; a caller that answered 200 after it
 *   resolved has kept the "acknowledged = durable" promise.
 * - Delivery is at least once. An event is handed out by `claim` until it is `ack`ed, dead-lettered, or
 *   replaced by `retry`; a crash before `ack` hands it out again after restart.
 * - Fresh events are handed out in enqueue order within a source; across sources no order is promised.
 *   An event that is backing off (after `retry`) waits for its time without holding up the events
 *   behind it.
 * - `claim` never hands out an event whose `entityKey` is in `busyKeys`, nor two of one entity, nor one
 *   that is already claimed, nor, when `sources` is given, an event of another source: a worker gives
 *   each source lanes of their own, so one source's backlog or paused vendor never holds another
 *   source's events. On a queue shared by several processes, an entity in another process's hands
 *   counts as busy too.
 * - `retry` with `spendAttempt: false` hands the event out again with the same attempt number: the
 *   attempt failed for a reason outside the event (its vendor paused) and does not count toward
 *   dead-lettering.
 * - `retry` and `deadLetter` are atomic with respect to a crash: afterwards the event is either in its
 *   old place or its new one, never lost, and never in both for longer than at-least-once allows.
 * - Stats are cheap enough to call on every `/health` request.
 *
 * What differs by backend, and why (each is held to the same conformance suite, test/queue/conformance.ts):
 * - file (one host): one process claims (`tryConsume`); an event passed over for a busy entity keeps
 *   its place; `waitForWork` wakes at once on an arrival in this process or another on the same disk.
 * - BullMQ on Redis or PostgreSQL (any number of processes and hosts; src/queue/bull-queue.ts): every
 *   worker claims; an event passed over for a busy entity is set aside for a moment and loses its place
 *   (BullMQ cannot skip a job and keep it at the head); `waitForWork` asks the engine a few times a
 *   second; an event claimed by a process that died comes back when its lock expires (QUEUE_LOCK_SECONDS), not at
 *   the next start; `enqueue` fails within 3 s with CONN_ERR_QUEUE_UNAVAILABLE while the engine is away.
 *
 * No backend type crosses this contract.
 */
import type { ErrorRecord } from '../errors.ts';
import type { QueueEvent, SourceName } from '../model.ts';

/** An event handed to a worker, with what the queue knows of its history. */
export interface ClaimedEvent {
  event: QueueEvent;
  /** This attempt's number, from 1. */
  attempt: number;
  /** The error of the previous attempt, if there was one. */
  lastError: ErrorRecord | null;
}

export interface ClaimOptions {
  /** Hand out at most this many events. Default 1. */
  limit?: number;
  /** Entity keys already being worked on; events for them stay where they are. */
  busyKeys?: ReadonlySet<string>;
  /** Only events of these sources; default every source. */
  sources?: readonly SourceName[];
}

export interface RetryOptions {
  /** Milliseconds before the event may be claimed again. */
  delayMs: number;
  /**
   * Whether the failed attempt counts toward the event's attempts. Default true. False when it failed
   * for a reason outside the event (its vendor paused or down): the next claim reports the same
   * `attempt` again, with this error as `lastError`.
   */
  spendAttempt?: boolean;
}

/** A dead-lettered event, as kept in the dead-letter store. */
export interface DeadLetter {
  event: QueueEvent;
  /** Attempts made before it was dead-lettered. */
  attempts: number;
  error: ErrorRecord;
  /** When the first attempt started (ISO-8601). */
  firstAttemptAt: string | null;
  /** When it was dead-lettered (ISO-8601). */
  deadLetteredAt: string;
}

export interface DeadLetterFilter {
  source?: SourceName;
  /** Event ids. */
  ids?: readonly string[];
  /** Every dead letter (the filter must say so explicitly). */
  all?: boolean;
}

export interface QueueStats {
  /** Waiting to be claimed, ready now. */
  pending: number;
  /** Claimed and not yet acked, retried or dead-lettered. */
  inFlight: number;
  /** Waiting for a backoff to end. */
  delayed: number;
  deadLettered: number;
  /** Age of the oldest event not yet done (pending, delayed or in flight), in ms; null when none. */
  oldestPendingAgeMs: number | null;
}

export interface Queue {
  readonly backend: 'file' | 'redis' | 'postgres';
  /** Durably appends events. Resolves once all are durable. */
  enqueue(events: readonly QueueEvent[]): Promise<void>;
  /** Hands out up to `limit` ready events; an empty array when none is ready. */
  claim(options?: ClaimOptions): Promise<ClaimedEvent[]>;
  /** The event was handled and its changes written: it is done. */
  ack(eventId: string): Promise<void>;
  /** The attempt failed transiently: hand the event out again after `delayMs`. */
  retry(eventId: string, error: ErrorRecord, options: RetryOptions): Promise<void>;
  /** The event failed permanently or too often: move it to the dead-letter store. */
  deadLetter(eventId: string, error: ErrorRecord): Promise<void>;
  stats(): Promise<QueueStats>;
  /** The newest `limit` events not yet done by receipt time, newest first (for operators); a retried event keeps its place. */
  peek(limit: number): Promise<QueueEvent[]>;
  listDeadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]>;
  /**
   * Moves the dead letters matching `filter` back to the queue as fresh events (attempts reset).
   * With `dryRun`, changes nothing and returns what would move.
   */
  replayDeadLetters(filter: DeadLetterFilter, options?: { dryRun?: boolean }): Promise<DeadLetter[]>;
  /**
   * Deletes the dead letters matching `filter` for good (an operator decided they are not worth
   * processing), and returns them. An empty filter matches nothing, as for a replay. With `dryRun`,
   * changes nothing and returns what would go.
   */
  discardDeadLetters(filter: DeadLetterFilter, options?: { dryRun?: boolean }): Promise<DeadLetter[]>;
  /**
   * Resolves when an event may be ready to claim (something was enqueued, a backoff ended, or
   * `timeoutMs` passed), so a worker need not spin. Resolves at once if the queue is closing, or if
   * something arrived since the last empty claim with the same `sources` (so that a lane of one
   * source never sleeps through an event that came while another source's lane claimed).
   */
  waitForWork(timeoutMs: number, options?: { sources?: readonly SourceName[] }): Promise<void>;
  /**
   * One try at becoming the queue's one consumer (the process that claims), without waiting: where a
   * backend has a single consumer, a worker calls it before it starts and stands by while another live
   * process is the consumer (`holder` names it). Left out by backends where any worker may claim.
   */
  tryConsume?(): Promise<{ consumer: true } | { consumer: false; holder: string }>;
  /** Flushes, releases locks and stops timers. Claimed, unacked events are handed out again next time. */
  close(): Promise<void>;
}
