/**
 * The dispatcher: takes events off the queue, has their source handle them, writes the changes, and
 * only then acknowledges them.
 *
 * States: `idle` (constructed) -> `running` (lanes claiming) -> `stopping` (no new claims, no new
 * handler started; the event in hand finishes and what was handled is written and acked; an event
 * still in hand after `stopGraceMs` has its vendor requests aborted and is put back unsettled) ->
 * `stopped`.
 *
 * Lanes per source. Each source has `concurrency` lanes of its own, and a lane claims only its
 * source's events (`claim({ sources })`): however slow, paused or down one vendor is, the other
 * source's events are claimed, handled and written as if it were not there. (Events of a source this
 * process does not run get one lane of their own, which dead-letters them.) A long wait is never held
 * by a lane: a vendor request that would wait past HANDLER_MAX_WAIT_MS (src/sources/source.ts) ends
 * with CONN_ERR_VENDOR_PAUSED, and the event goes back to the queue until the vendor can be asked again;
 * while the vendor is paused or down (`source.vendor.status()`), its lanes claim nothing and sleep
 * until then. Each lane, in a loop:
 *   1. claims up to `batchSize` ready events of its source (with several lanes, a fair share of what
 *      is ready) whose entity keys no other lane holds, at most one per entity (so two events of one
 *      task or conversation never run at once);
 *   2. has each event's source handle it, one after another; a failure settles that event alone
 *      (retry with backoff, or dead letter) and the others go on. Once stopping, no further event of
 *      the batch is started: those stay unacked and are handed out again after the restart. Between
 *      events the lane yields to the event loop, so that deliveries to the same process are answered
 *      while a batch runs, and while deliveries flood a saturated loop it paces itself (`yieldTo`);
 *   3. writes the changes of the handled events in one `Database.apply` (one transaction on SQL):
 *      once the batch is done, or earlier once `flushAfterMs` has passed since the first of them was
 *      handled (slow handlers do not hold finished events back);
 *   4. acks them. A crash anywhere before 4 hands the events out again: at least once, and the
 *      database's upserts make the repeat harmless.
 * With nothing ready, a lane waits on `queue.waitForWork` (or until `stop`) instead of spinning.
 *
 * Failure policy (decided on the error's code, see src/errors.ts and src/retry-policy.ts):
 * - the vendor paused or down (CONN_ERR_VENDOR_PAUSED; also a bare 429, CONN_ERR_HTTP_RATE_LIMITED):
 *   not the event's fault. The event is retried when the vendor can be asked again (`retryAfterMs`)
 *   and spends no attempt (`spendAttempt: false`), so a pause or an outage of any length dead-letters
 *   nothing;
 * - a handler's permanent error (retryable: false): the event is dead-lettered at once;
 * - a handler's transient error: the event is retried after `retryDelay(attempt, retryAfter)` and
 *   dead-lettered once `maxAttempts` attempts have failed. The queue keeps a backing-off event aside,
 *   so the events behind it go on;
 * - the database unavailable (CONN_ERR_DB_UNAVAILABLE on the write): not the events' fault, and no
 *   other event could be written either. The lane keeps the batch it has handled and tries the same
 *   write again with a backoff capped at DB_OUTAGE_ATTEMPT_CAP, so an outage of any length costs no
 *   attempt, dead-letters nothing and repeats no vendor request. A stop during the outage leaves the
 *   batch unacked (handed out again after the restart). The outage is logged once when it starts
 *   (whichever lane sees it first) and once when a write succeeds again;
 * - any other failed write of several events (one record the database refuses): each event's
 *   changes are written alone, so that only the culprit is retried or dead-lettered;
 * - a queue operation that fails for a transient reason (ack, retry, dead letter: a full disk or any
 *   failed system call, a lock that cannot be had, a retryable queue error) is tried again with
 *   backoff while running; given up on stop, the event stays unacked and is handed out again after
 *   the restart;
 * - a queue operation that fails for any other reason (a RangeError, a TypeError, a thrown non-Error:
 *   a bug, or an event the operation cannot cope with) is given up on after NON_TRANSIENT_TRIES
 *   tries, so that one event can never hold its lane (issue 14: a payload JSON.stringify could not
 *   write made retry() and deadLetter() throw forever, and the worker processed nothing else). A retry
 *   given up on becomes a dead letter whose error says why. A dead letter given up on is the one case
 *   with no good answer: acking would lose the event, handing it out again would spin on it. The least
 *   bad is to leave it claimed and unacked: this process does not hand it out again (its entity's
 *   later events wait with it, nothing else does), the inbox keeps it whole, and after a restart it
 *   gets its bounded attempts again. It is logged at error level each time. An ack given up on leaves
 *   the event likewise (its changes are written; after a restart it is handled again, harmlessly).
 * A lane never dies of an error, whatever a handler throws (even a value String() cannot print).
 */
import { ConnectorError, toErrorRecord, type ErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { Changes, SourceName } from '../model.ts';
import { noChanges, rowRefs, SOURCE_NAMES } from '../model.ts';
import type { ClaimedEvent, Queue } from '../queue/queue.ts';
import { calculateDelay, SECOND } from '../retry-policy.ts';
import type { Database, WriteResult } from '../db/database.ts';
import type { Source } from '../sources/source.ts';

export interface DispatcherOptions {
  queue: Queue;
  db: Database;
  sources: readonly Source[];
  log: Logger;
  lifecycle: Lifecycle;
  /** Attempts before an event is dead-lettered (MAX_QUEUE_ATTEMPTS). Default 3. */
  maxAttempts?: number;
  /** Lanes per source (WORKER_CONCURRENCY). Default 1. */
  concurrency?: number;
  /** Most events one lane claims and writes together. Default 100. */
  batchSize?: number;
  /**
   * Write the events of a batch handled so far once the first of them was handled this long ago, even
   * if others of the batch still wait, ms: bounds how long slow handlers (vendor requests) hold acks.
   * Default 200.
   */
  flushAfterMs?: number;
  /**
   * True while something else in this process should go first (deliveries flooding a saturated event
   * loop: IngestPressure). Between events a lane then pauses `yieldPauseMs` instead of one turn of
   * the loop, so that it still makes progress (at least one event per pause) but takes little of the
   * loop. Default: never.
   */
  yieldTo?: () => boolean;
  /** The pause between events while `yieldTo` says so, ms. Default 10. */
  yieldPauseMs?: number;
  /** How long an idle lane waits for work before looking again, ms. Default 1 s. */
  idleWaitMs?: number;
  /**
   * How long `stop` lets the events in hand finish before it aborts their vendor requests, ms: a
   * handler waiting out a vendor's pause (minutes) must not hold a stop (systemd's TimeoutStopSec is
   * 30 s). An aborted event is put back unsettled: no attempt is spent, it is handed out again after
   * the restart. Default 5 s.
   */
  stopGraceMs?: number;
  /** The clock handlers see. Default the system clock. */
  now?: () => Date;
  /** Randomness in [0, 1) for the jitter of the default `retryDelay`. Default Math.random. */
  random?: () => number;
  /**
   * Milliseconds to wait after `attempt` (from 1) failed, given what the other side asked for
   * (Retry-After), if anything. Default `calculateDelay` (src/retry-policy.ts): 1 s doubling, jitter
   * over the upper half, capped at 5 min, never shorter than `retryAfterMs`. Tests shorten it.
   */
  retryDelay?: (attempt: number, retryAfterMs: number | undefined) => number;
}

type State = 'idle' | 'running' | 'stopping' | 'stopped';

interface Handled {
  claimed: ClaimedEvent;
  changes: Changes;
  startedAt: number;
}

/** A claim failing the same way again is logged once every this many tries. */
const CLAIM_FAILURE_LINE_EVERY = 20;

/** What makes two claim failures "the same" for the log: the error's code, else its message. */
function claimFailureKey(err: unknown): string {
  if (err instanceof ConnectorError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.message : String(err);
}

/** Failures after which the backoff for a database outage (and for a failing queue) stops growing: 16-32 s. */
const DB_OUTAGE_ATTEMPT_CAP = 6;
/** The longest pause between two writes during a database outage, for its log line: the ceiling of the policy's delay at the cap. */
const DB_OUTAGE_MAX_PAUSE_TEXT = `${2 ** (DB_OUTAGE_ATTEMPT_CAP - 1)} s`;

/** Tries of a queue operation that fails for a reason not transient by nature before it is given up on. */
const NON_TRANSIENT_TRIES = 3;

/** How a queue operation that settles an event ended (see settle). */
type Settled = { ok: true } | { ok: false; failure?: ErrorRecord };

/** Errors that say the vendor cannot be asked now, not that the event failed. */
const VENDOR_PAUSED_CODES: ReadonlySet<string> = new Set(['CONN_ERR_VENDOR_PAUSED', 'CONN_ERR_HTTP_RATE_LIMITED']);

/** The longest a lane of a paused source sleeps before it looks at the vendor's state again, ms. */
const PAUSED_LANE_LOOK_EVERY_MS = 5 * SECOND;

/** What a lane claims: one source's events, or those of sources this process does not run. */
interface LaneSpec {
  index: number;
  sources: readonly SourceName[];
  /** The source whose vendor state gates the lane; undefined for the unknown-sources lane. */
  source: Source | undefined;
}

export class Dispatcher {
  private state: State = 'idle';
  private readonly busyKeys = new Set<string>();
  private readonly sources: Map<SourceName, Source>;
  private lanes: Promise<void>[] = [];
  /** Lanes per source. */
  private laneCount = 1;
  /**
   * The database outage in progress, as the lanes' writes see it: since when (ISO-8601, and
   * performance.now() for its duration) and the last failed write's error. For its two log lines and
   * /health.
   */
  private dbOutage: { since: string; startedAt: number; error: string } | null = null;
  private readonly shutdown = new AbortController();
  /**
   * Aborted when `stop` is called: wakes lanes that wait for work or sit out a backoff. A signal, not a
   * promise raced at every wait: each race would leave a reaction on a promise that lives as long as
   * the process (a leak at every idle look, and out of memory for a lane that looks often).
   */
  private readonly stopRequested = new AbortController();
  private readonly maxAttempts: number;
  private readonly batchSize: number;
  private readonly flushAfterMs: number;
  private readonly idleWaitMs: number;
  private readonly stopGraceMs: number;
  private readonly now: () => Date;
  private readonly random: () => number;
  private readonly retryDelay: (attempt: number, retryAfterMs: number | undefined) => number;

  constructor(private readonly options: DispatcherOptions) {
    this.sources = new Map(options.sources.map((s) => [s.name, s]));
    this.maxAttempts = options.maxAttempts ?? 3;
    this.batchSize = Math.max(1, options.batchSize ?? 100);
    this.flushAfterMs = options.flushAfterMs ?? 200;
    this.idleWaitMs = options.idleWaitMs ?? 1 * SECOND;
    this.stopGraceMs = options.stopGraceMs ?? 5 * SECOND;
    this.now = options.now ?? (() => new Date());
    const random = options.random ?? Math.random;
    this.random = random;
    this.retryDelay = options.retryDelay ?? ((attempt, retryAfterMs) => calculateDelay(attempt, retryAfterMs, random));
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.laneCount = Math.max(1, Math.floor(this.options.concurrency ?? 1));
    const specs: LaneSpec[] = [];
    for (const source of this.sources.values()) {
      for (let i = 0; i < this.laneCount; i++) specs.push({ index: specs.length, sources: [source.name], source });
    }
    const others = SOURCE_NAMES.filter((name) => !this.sources.has(name));
    if (others.length > 0) specs.push({ index: specs.length, sources: others, source: undefined });
    this.lanes = specs.map((spec) => this.lane(spec));
  }

  /**
   * Stops claiming; the event each lane has in hand finishes, what was handled is written and acked.
   * Resolves when every lane has returned. Events claimed but not started stay in the queue.
   */
  async stop(): Promise<void> {
    if (this.state === 'idle') this.state = 'stopped';
    if (this.state === 'stopped') return;
    this.state = 'stopping';
    this.stopRequested.abort();
    const grace = setTimeout(() => {
      if (this.state !== 'stopping') return;
      this.options.log.info({ component: 'dispatcher', graceMs: this.stopGraceMs }, 'stopping: the events in hand did not finish in time; their vendor requests are aborted and they are handed out again after the restart');
      this.abort();
    }, this.stopGraceMs);
    try {
      await Promise.all(this.lanes);
    } finally {
      clearTimeout(grace);
    }
    this.state = 'stopped';
  }

  /** Aborts slow vendor requests of events in flight (a second shutdown signal). */
  abort(): void {
    this.shutdown.abort();
    this.stopRequested.abort();
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /**
   * The database outage the lanes are in, if any: since when their writes fail and the last error.
   * Whatever the backend's own health check sees, a write that fails is the truth (/health).
   */
  get writeOutage(): { since: string; error: string } | null {
    return this.dbOutage === null ? null : { since: this.dbOutage.since, error: this.dbOutage.error };
  }

  /**
   * A claim that failed, logged without flooding: the first failure of a kind with its error (at error
   * level, but a consumer lock another process holds now, at warn and without a stack: that is another
   * worker, not a fault), the same failure again only every CLAIM_FAILURE_LINE_EVERY tries, one line.
   */
  private logClaimFailure(log: Logger, err: unknown, previous: string, failures: number, delayMs: number): void {
    const key = claimFailureKey(err);
    const message = err instanceof Error ? err.message : String(err);
    if (key !== previous) {
      if (key === 'CONN_ERR_QUEUE_LOCKED') log.warn({ code: key, delayMs }, `could not claim events: ${message}; trying again`);
      else log.error({ err, delayMs }, 'could not claim events; trying again');
    } else if (failures % CLAIM_FAILURE_LINE_EVERY === 0) {
      log.warn({ code: key, failures, delayMs }, `still cannot claim events after ${failures} tries: ${message}; trying again`);
    }
  }

  private async lane(spec: LaneSpec): Promise<void> {
    // A lane of one source names it in every line (its events' lines add only their own facts).
    const log = this.options.log.child({ component: 'dispatcher', lane: spec.index, ...(spec.source !== undefined ? { source: spec.source.name } : {}) });
    let claimFailures = 0;
    let claimFailure = '';
    while (this.state === 'running') {
      const pausedForMs = this.vendorPausedForMs(spec.source);
      if (pausedForMs > 0) {
        // Its vendor cannot be asked before then: claim nothing (the events wait in the queue, where
        // they are durable), and look again then (or sooner, for a vendor that recovers early).
        await this.pause(Math.min(pausedForMs, PAUSED_LANE_LOOK_EVERY_MS));
        continue;
      }
      let claimed: ClaimedEvent[];
      try {
        claimed = await this.options.queue.claim({ limit: await this.claimLimit(), busyKeys: this.busyKeys, sources: spec.sources });
        if (claimFailures > 0) log.info({ failures: claimFailures }, 'claiming events again');
        claimFailures = 0;
        claimFailure = '';
      } catch (err) {
        claimFailures++;
        const delayMs = this.retryDelay(Math.min(claimFailures, DB_OUTAGE_ATTEMPT_CAP), undefined);
        this.logClaimFailure(log, err, claimFailure, claimFailures, delayMs);
        claimFailure = claimFailureKey(err);
        await this.pause(delayMs);
        continue;
      }
      if (claimed.length === 0) {
        await this.orStop(this.options.queue.waitForWork(this.idleWaitMs, { sources: spec.sources }));
        continue;
      }
      this.options.lifecycle.emit('events:claimed', { count: claimed.length, sources: spec.sources });
      const keys = claimed.map((c) => c.event.entityKey).filter((k): k is string => k !== null);
      for (const key of keys) this.busyKeys.add(key);
      try {
        await this.runBatch(claimed, log);
      } catch (err) {
        // Not expected (every step settles its own failures); the events stay unacked.
        log.error({ err, events: claimed.length }, 'a batch failed unexpectedly; its unacked events are handed out again after a restart');
      } finally {
        for (const key of keys) this.busyKeys.delete(key);
      }
    }
  }

  /** How long the source's vendor cannot be asked from now, ms; 0 when it can (or it has no API). */
  private vendorPausedForMs(source: Source | undefined): number {
    const state = source?.vendor?.status();
    if (state === undefined || state.state === 'ok') return 0;
    return Math.max(0, state.until - Date.now());
  }

  /**
   * How many events a lane claims: `batchSize` with one lane per source; with several, a fair share
   * of what is ready, so that one lane does not take every entity while the others idle (events of
   * one batch run one after another).
   */
  private async claimLimit(): Promise<number> {
    if (this.laneCount <= 1) return this.batchSize;
    const { pending } = await this.options.queue.stats();
    return Math.min(this.batchSize, Math.max(1, Math.ceil(pending / this.laneCount)));
  }

  private async runBatch(batch: readonly ClaimedEvent[], log: Logger): Promise<void> {
    let handled: Handled[] = [];
    let firstHandledAt = 0;
    let started = 0;
    for (const claimed of batch) {
      if (handled.length > 0 && performance.now() - firstHandledAt >= this.flushAfterMs) {
        // Slow handlers (vendor requests): write and ack what is done instead of holding it.
        await this.write(handled, log);
        handled = [];
      }
      // Let the event loop answer deliveries between events (handlers may be CPU-bound); while they
      // flood the loop, step back further (yieldTo).
      if (this.options.yieldTo?.() === true) await new Promise<void>((resolve) => setTimeout(resolve, this.options.yieldPauseMs ?? 10));
      else await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.state !== 'running') break; // stopping: the rest of the batch stays in the queue
      if (handled.length === 0) firstHandledAt = performance.now();
      started++;
      const startedAt = Date.now();
      const eventLog = this.eventLog(log, claimed);
      try {
        const source = this.sources.get(claimed.event.source);
        if (source === undefined) throw unknownSource(claimed.event.source);
        const changes = await source.handle(claimed.event, { log: eventLog, now: this.now, signal: this.shutdown.signal, lastAttempt: claimed.attempt >= this.maxAttempts });
        handled.push({ claimed, changes, startedAt });
      } catch (err) {
        if (this.shutdown.signal.aborted) {
          // Aborted by the stop, not failed: put back as it is (no attempt spent, nothing retried or
          // dead-lettered); the queue hands it out again after the restart.
          eventLog.info({ type: claimed.event.type }, 'stopping: the event in hand was aborted; it is handed out again after the restart');
          continue;
        }
        await this.settleFailure(claimed, toErrorRecord(err), eventLog);
      }
    }
    if (started < batch.length) log.info({ left: batch.length - started }, 'stopping: events not started are handed out again after the restart');
    if (handled.length > 0) await this.write(handled, log);
  }

  /** Writes the changes of `handled` and acks them; see "Failure policy" above. */
  private async write(handled: readonly Handled[], log: Logger): Promise<void> {
    let outageFailures = 0;
    for (;;) {
      let result: WriteResult;
      try {
        result = await this.options.db.apply(merge(handled.map((h) => h.changes)));
      } catch (err) {
        const error = toErrorRecord(err);
        if (error.code === 'CONN_ERR_DB_UNAVAILABLE') {
          if (this.state !== 'running') {
            log.warn({ err, events: handled.length }, 'stopping while the database is unavailable; these events are handed out again after the restart');
            return;
          }
          outageFailures++;
          const delayMs = this.retryDelay(Math.min(outageFailures, DB_OUTAGE_ATTEMPT_CAP), error.retryAfterMs);
          if (this.dbOutage === null) {
            this.dbOutage = { since: new Date().toISOString(), startedAt: performance.now(), error: error.message };
            log.warn({ err, events: handled.length, delayMs }, `the database cannot take writes (${error.message}); holding the handled events and writing them again after pauses of up to ${DB_OUTAGE_MAX_PAUSE_TEXT}`);
          } else {
            this.dbOutage.error = error.message;
            log.debug({ err, events: handled.length, failures: outageFailures, delayMs }, 'the database still cannot take writes');
          }
          await this.pause(delayMs);
          continue;
        }
        if (handled.length > 1) {
          log.warn({ err, events: handled.length }, 'database write failed; writing each event alone to find the one it refuses');
          for (const h of handled) await this.write([h], log);
          return;
        }
        const only = handled[0] as Handled;
        await this.settleFailure(only.claimed, error, this.eventLog(log, only.claimed));
        return;
      }
      if (this.dbOutage !== null) {
        const seconds = Math.round((performance.now() - this.dbOutage.startedAt) / 100) / 10;
        this.dbOutage = null;
        log.info({ outageSeconds: seconds }, `the database takes writes again after ${seconds} s`);
      }
      await this.succeeded(handled, result, log);
      return;
    }
  }

  /**
   * Acks the written events. Logs one info line per batch (with one event, it names it) and one debug
   * line per event: under load a line per event would cost more than the event itself.
   */
  private async succeeded(handled: readonly Handled[], result: WriteResult, log: Logger): Promise<void> {
    this.options.lifecycle.emit('db:written', { backend: this.options.db.backend, events: handled.length, written: result.written, stale: result.stale });
    // Acks issued together share one write.
    const acked = await Promise.all(
      handled.map(async (h) => {
        const { event, attempt } = h.claimed;
        if (!(await this.settle(() => this.options.queue.ack(event.id), 'ack', log)).ok) return null;
        const durationMs = Date.now() - h.startedAt;
        const rows = rowRefs(h.changes);
        this.options.lifecycle.emit('event:succeeded', { source: event.source, eventId: event.id, attempt, records: rows.length, durationMs, event, rows });
        if (handled.length > 1) log.debug({ eventId: event.id, attempt, type: event.type, durationMs }, 'event processed');
        return event.id;
      }),
    );
    const eventIds = acked.filter((id): id is string => id !== null);
    const events = eventIds.length;
    const facts = { events, written: result.written, stale: result.stale };
    if (handled.length === 1) {
      const { event, attempt } = (handled[0] as Handled).claimed;
      log.info({ ...facts, eventId: event.id, attempt, type: event.type, durationMs: Date.now() - (handled[0] as Handled).startedAt }, 'event processed');
    } else {
      // The ids (at most batchSize) let an operator find any event's line in the log.
      log.info({ ...facts, eventIds }, `${events} events processed`);
    }
  }

  private async settleFailure(claimed: ClaimedEvent, error: ErrorRecord, log: Logger): Promise<void> {
    const { event, attempt } = claimed;
    if (VENDOR_PAUSED_CODES.has(error.code)) {
      await this.holdForVendor(claimed, error, log);
      return;
    }
    const dbOutage = error.code === 'CONN_ERR_DB_UNAVAILABLE';
    if (!error.retryable || (attempt >= this.maxAttempts && !dbOutage)) {
      await this.deadLetter(claimed, error, error.retryable ? `event failed ${attempt} times; dead-lettered` : 'event failed permanently; dead-lettered', log);
      return;
    }
    const delayMs = this.retryDelay(dbOutage ? Math.min(attempt, DB_OUTAGE_ATTEMPT_CAP) : attempt, error.retryAfterMs);
    const retried = await this.settle(() => this.options.queue.retry(event.id, error, { delayMs }), 'retry', log);
    if (!retried.ok) {
      if (retried.failure === undefined) return;
      // The retry itself keeps failing for a reason that is not transient: the event cannot go round
      // again, so it goes to the dead letters, saying both what the attempt and the retry failed with.
      const why: ErrorRecord = {
        code: 'CONN_ERR_INTERNAL',
        message: `could not retry the event (${retried.failure.message}), so it was dead-lettered; attempt ${attempt} had failed with ${error.code}: ${error.message}`,
        retryable: false,
        details: { operation: 'retry', retryError: retried.failure, attemptError: error },
      };
      await this.deadLetter(claimed, why, 'could not retry the event; dead-lettered instead', log);
      return;
    }
    this.options.lifecycle.emit('event:retrying', { source: event.source, eventId: event.id, attempt, delayMs, error, event, spent: true });
    log.warn({ code: error.code, err: error.message, delayMs, type: event.type }, 'event failed; will retry');
  }

  /**
   * The vendor is paused or down: the event goes back to the queue until it can be asked again,
   * spending no attempt. Debug only: the vendor's state change has its own line (src/main.ts).
   */
  private async holdForVendor(claimed: ClaimedEvent, error: ErrorRecord, log: Logger): Promise<void> {
    const { event, attempt } = claimed;
    // A little spread, so that the events held by one pause do not all come back in the same instant.
    const delayMs = Math.max(0, error.retryAfterMs ?? this.retryDelay(1, undefined)) + Math.round(this.random() * 250);
    const retried = await this.settle(() => this.options.queue.retry(event.id, error, { delayMs, spendAttempt: false }), 'retry', log);
    if (!retried.ok) return; // left claimed and unacked: handed out again after a restart
    this.options.lifecycle.emit('event:retrying', { source: event.source, eventId: event.id, attempt, delayMs, error, event, spent: false });
    log.debug({ code: error.code, err: error.message, delayMs, type: event.type }, 'the vendor cannot be asked now; the event waits in the queue, spending no attempt');
  }

  /** Moves the event to the dead letters; see "Failure policy" for a dead letter that cannot be written. */
  private async deadLetter(claimed: ClaimedEvent, error: ErrorRecord, message: string, log: Logger): Promise<void> {
    const { event, attempt } = claimed;
    const moved = await this.settle(() => this.options.queue.deadLetter(event.id, error), 'dead-letter', log);
    if (!moved.ok) {
      if (moved.failure !== undefined) {
        log.error(
          { code: error.code, err: error.message, deadLetterError: moved.failure.message, type: event.type },
          'could not dead-letter the event: it stays claimed and unacked (not handed out again by this process; its later events wait with it), and gets its attempts again after a restart',
        );
      }
      return;
    }
    this.options.lifecycle.emit('event:dead-lettered', { source: event.source, eventId: event.id, attempt, error, event });
    log.error({ code: error.code, err: error.message, type: event.type }, message);
  }

  /**
   * Runs a queue operation that settles an event. A transient failure (isTransientQueueFailure) is
   * tried again with backoff while running; any other failure at most NON_TRANSIENT_TRIES times, then
   * given up on with `failure` set (the caller decides what becomes of the event). Also gives up,
   * without `failure`, on stop, when the queue is closed, or on the queue's own internal error (the
   * event is not, or no longer, claimed here): the event then stays unacked in the queue.
   */
  private async settle(op: () => Promise<void>, what: string, log: Logger): Promise<Settled> {
    let nonTransient = 0;
    for (let failures = 1; ; failures++) {
      try {
        await op();
        return { ok: true };
      } catch (err) {
        const code = err instanceof ConnectorError ? err.code : null;
        const final = this.state !== 'running' || code === 'CONN_ERR_QUEUE_CLOSED' || code === 'CONN_ERR_INTERNAL';
        if (final) {
          log.error({ err, what }, `could not ${what} the event; it stays in the queue and is handed out again after a restart`);
          return { ok: false };
        }
        if (!isTransientQueueFailure(err) && ++nonTransient >= NON_TRANSIENT_TRIES) {
          log.error({ err, what, tries: nonTransient }, `could not ${what} the event, for a reason that is not transient; giving up on it`);
          return { ok: false, failure: toErrorRecord(err) };
        }
        const delayMs = this.retryDelay(Math.min(failures, DB_OUTAGE_ATTEMPT_CAP), undefined);
        log.error({ err, what, delayMs }, `could not ${what} the event; trying again`);
        await this.pause(delayMs);
      }
    }
  }

  /** Waits `ms`, or less if `stop` is called meanwhile. */
  private async pause(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await this.orStop(new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))));
    clearTimeout(timer);
  }

  /** Resolves when `work` settles (rejecting as it does) or `stop` is called, whichever comes first. */
  private orStop(work: Promise<void>): Promise<void> {
    const stop = this.stopRequested.signal;
    if (stop.aborted) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onStop = (): void => resolve();
      stop.addEventListener('abort', onStop, { once: true });
      work.then(resolve, reject).finally(() => stop.removeEventListener('abort', onStop));
    });
  }

  /** The lines of one event: its id and attempt (and its source, in the lane of sources not run here). */
  private eventLog(log: Logger, claimed: ClaimedEvent): Logger {
    const { source, id } = claimed.event;
    return log.child({ ...(this.sources.has(source) ? {} : { source }), eventId: id, attempt: claimed.attempt });
  }
}

/**
 * Whether a failed queue operation may succeed if tried again for reasons outside the event: a failed
 * system call (ENOSPC, EIO, EMFILE, EACCES: the disk or the machine, which dead-lettering could not
 * get past either), a lock held by another process, a queue error marked retryable. Anything else —
 * RangeError, TypeError, a thrown non-Error, a permanent queue error — says the operation cannot cope
 * with this event (or has a bug), and trying forever would hold the lane.
 */
export function isTransientQueueFailure(err: unknown): boolean {
  if (err instanceof ConnectorError) return err.retryable || err.code === 'CONN_ERR_QUEUE_LOCKED';
  if (!(err instanceof Error)) return false;
  const { code, syscall, errno } = err as NodeJS.ErrnoException;
  return typeof code === 'string' && (typeof syscall === 'string' || typeof errno === 'number');
}

function merge(all: readonly Changes[]): Changes {
  if (all.length === 1) return all[0] as Changes;
  const merged = noChanges();
  for (const c of all) {
    merged.tasks.push(...c.tasks);
    merged.emails.push(...c.emails);
    merged.deletedTasks.push(...c.deletedTasks);
    merged.deletedEmails.push(...c.deletedEmails);
  }
  return merged;
}

function unknownSource(name: string): ConnectorError {
  return new ConnectorError('CONN_ERR_SOURCE_UNKNOWN', `no source named "${name}" is configured in this process`);
}
