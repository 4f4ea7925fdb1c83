/**
 * The dispatcher: takes events off the queue, has their source handle them, writes the changes, and
 * only then acknowledges them.
 *
 * States: `idle` (constructed) -> `running` (lanes claiming) -> `stopping` (no new claims; batches in
 * flight finish) -> `stopped`. There are `concurrency` lanes. Each lane, in a loop:
 *   1. claims up to `batchSize` ready events whose entity keys no other lane holds (so two events of
 *      one task or conversation never run at once);
 *   2. has each event's source handle it, one after another; a failure settles that event alone
 *      (retry with backoff, or dead letter) and the others go on;
 *   3. writes the changes of all handled events in one `Database.apply` (one transaction on SQL);
 *   4. acks them. A crash anywhere before 4 hands the events out again: at least once, and the
 *      database's upserts make the repeat harmless.
 * With nothing ready, a lane waits on `queue.waitForWork` instead of spinning.
 *
 * Failure policy (decided on the error's code, see src/errors.ts and src/retry-policy.ts):
 * - permanent (retryable: false): dead-lettered at once;
 * - transient: retried after `calculateDelay(attempt, retryAfter)`, dead-lettered once `maxAttempts`
 *   attempts have failed;
 * - the database being unavailable is not the event's fault: such events back off (capped) without
 *   ever being dead-lettered for it, so an outage of any length loses nothing.
 */
import { ConnectorError, toErrorRecord, type ErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { Changes, SourceName } from '../model.ts';
import { noChanges } from '../model.ts';
import type { ClaimedEvent, Queue } from '../queue/queue.ts';
import { calculateDelay, SECOND } from '../retry-policy.ts';
import type { Database } from '../db/database.ts';
import type { Source } from '../sources/source.ts';

export interface DispatcherOptions {
  queue: Queue;
  db: Database;
  sources: readonly Source[];
  log: Logger;
  lifecycle: Lifecycle;
  /** Attempts before an event is dead-lettered (MAX_QUEUE_ATTEMPTS). Default 3. */
  maxAttempts?: number;
  /** Lanes working at once (WORKER_CONCURRENCY). Default 1. */
  concurrency?: number;
  /** Most events one lane claims and writes together. Default 25. */
  batchSize?: number;
  /** How long an idle lane waits for work before looking again, ms. Default 1 s. */
  idleWaitMs?: number;
  now?: () => Date;
  random?: () => number;
}

type State = 'idle' | 'running' | 'stopping' | 'stopped';

interface Handled {
  claimed: ClaimedEvent;
  changes: Changes;
  startedAt: number;
}

/** Attempts after which a database-outage backoff stops growing. */
const DB_OUTAGE_ATTEMPT_CAP = 6;

export class Dispatcher {
  private state: State = 'idle';
  private readonly busyKeys = new Set<string>();
  private readonly sources: Map<SourceName, Source>;
  private lanes: Promise<void>[] = [];
  private readonly shutdown = new AbortController();
  private readonly maxAttempts: number;
  private readonly batchSize: number;
  private readonly idleWaitMs: number;
  private readonly now: () => Date;

  constructor(private readonly options: DispatcherOptions) {
    this.sources = new Map(options.sources.map((s) => [s.name, s]));
    this.maxAttempts = options.maxAttempts ?? 3;
    this.batchSize = options.batchSize ?? 25;
    this.idleWaitMs = options.idleWaitMs ?? 1 * SECOND;
    this.now = options.now ?? (() => new Date());
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    const lanes = Math.max(1, this.options.concurrency ?? 1);
    this.lanes = Array.from({ length: lanes }, (_, i) => this.lane(i));
  }

  /** Stops claiming, lets batches in flight finish, and resolves when every lane has returned. */
  async stop(): Promise<void> {
    if (this.state === 'idle') this.state = 'stopped';
    if (this.state === 'stopped') return;
    this.state = 'stopping';
    await Promise.all(this.lanes);
    this.state = 'stopped';
  }

  /** Aborts slow vendor requests of events in flight (a second shutdown signal). */
  abort(): void {
    this.shutdown.abort();
  }

  get running(): boolean {
    return this.state === 'running';
  }

  private async lane(index: number): Promise<void> {
    const log = this.options.log.child({ component: 'dispatcher', lane: index });
    while (this.state === 'running') {
      let claimed: ClaimedEvent[];
      try {
        claimed = await this.options.queue.claim({ limit: this.batchSize, busyKeys: this.busyKeys });
      } catch (err) {
        log.error({ err }, 'could not claim events; trying again shortly');
        await this.options.queue.waitForWork(this.idleWaitMs).catch(() => {});
        continue;
      }
      if (claimed.length === 0) {
        await this.options.queue.waitForWork(this.idleWaitMs);
        continue;
      }
      const keys = claimed.map((c) => c.event.entityKey).filter((k): k is string => k !== null);
      for (const key of keys) this.busyKeys.add(key);
      try {
        await this.runBatch(claimed, log);
      } finally {
        for (const key of keys) this.busyKeys.delete(key);
      }
    }
  }

  private async runBatch(batch: readonly ClaimedEvent[], log: Logger): Promise<void> {
    const handled: Handled[] = [];
    for (const claimed of batch) {
      const startedAt = Date.now();
      const eventLog = log.child({ source: claimed.event.source, eventId: claimed.event.id, attempt: claimed.attempt });
      try {
        const source = this.sources.get(claimed.event.source);
        if (source === undefined) throw unknownSource(claimed.event.source);
        const changes = await source.handle(claimed.event, { log: eventLog, now: this.now, signal: this.shutdown.signal });
        handled.push({ claimed, changes, startedAt });
      } catch (err) {
        await this.settleFailure(claimed, toErrorRecord(err), eventLog);
      }
    }
    if (handled.length === 0) return;

    let result;
    try {
      result = await this.options.db.apply(merge(handled.map((h) => h.changes)));
    } catch (err) {
      const error = toErrorRecord(err);
      log.warn({ err, events: handled.length }, 'database write failed');
      for (const h of handled) await this.settleFailure(h.claimed, error, log.child({ source: h.claimed.event.source, eventId: h.claimed.event.id, attempt: h.claimed.attempt }));
      return;
    }

    this.options.lifecycle.emit('db:written', { backend: this.options.db.backend, events: handled.length, written: result.written, stale: result.stale });
    if (result.stale > 0) log.info({ stale: result.stale }, 'skipped stale writes (older than what is stored)');
    // Acks issued together share one write.
    await Promise.all(handled.map((h) => this.options.queue.ack(h.claimed.event.id)));
    for (const h of handled) {
      const { event, attempt } = h.claimed;
      const durationMs = Date.now() - h.startedAt;
      this.options.lifecycle.emit('event:succeeded', { source: event.source, eventId: event.id, attempt, records: countRecords(h.changes), durationMs });
      log.info({ source: event.source, eventId: event.id, attempt, type: event.type, durationMs }, 'event processed');
    }
  }

  private async settleFailure(claimed: ClaimedEvent, error: ErrorRecord, log: Logger): Promise<void> {
    const { event, attempt } = claimed;
    const dbOutage = error.code === 'CONN_ERR_DB_UNAVAILABLE';
    if (!error.retryable || (attempt >= this.maxAttempts && !dbOutage)) {
      await this.options.queue.deadLetter(event.id, error);
      this.options.lifecycle.emit('event:dead-lettered', { source: event.source, eventId: event.id, attempt, error });
      log.error({ code: error.code, err: error.message, type: event.type }, error.retryable ? `event failed ${attempt} times; dead-lettered` : 'event failed permanently; dead-lettered');
      return;
    }
    const delayMs = calculateDelay(dbOutage ? Math.min(attempt, DB_OUTAGE_ATTEMPT_CAP) : attempt, error.retryAfterMs, this.options.random);
    await this.options.queue.retry(event.id, error, { delayMs });
    this.options.lifecycle.emit('event:retrying', { source: event.source, eventId: event.id, attempt, delayMs, error });
    log.warn({ code: error.code, err: error.message, delayMs, type: event.type }, 'event failed; will retry');
  }
}

function merge(all: readonly Changes[]): Changes {
  const merged = noChanges();
  for (const c of all) {
    merged.tasks.push(...c.tasks);
    merged.emails.push(...c.emails);
    merged.deletedTasks.push(...c.deletedTasks);
    merged.deletedEmails.push(...c.deletedEmails);
  }
  return merged;
}

function countRecords(changes: Changes): number {
  return changes.tasks.length + changes.emails.length + changes.deletedTasks.length + changes.deletedEmails.length;
}

function unknownSource(name: string): ConnectorError {
  return new ConnectorError('CONN_ERR_SOURCE_UNKNOWN', `no source named "${name}" is configured in this process`);
}
