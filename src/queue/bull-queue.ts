/**
 * BullQueue: the Queue contract on BullMQ 6, on Redis (QUEUE_BACKEND=redis) or PostgreSQL
 * (QUEUE_BACKEND=postgres, BullMQ's PostgreSQL backend). Any number of processes on any number of
 * hosts enqueue and claim; the engine keeps the events. Nothing here is a queue of our own: every
 * state change is a BullMQ operation. The design, and what differs from the file queue, is in
 * docs/scaling.md; in short:
 *
 * - One BullMQ queue per source (`<prefix>-teamwork`, `<prefix>-missive`), so a lane that claims one
 *   source's events never touches the other's (issue 15), and order is kept within a source. Across
 *   sources no order is promised: `claim` without `sources` takes from each in turn.
 * - An event is a job whose id is derived from the event id (a second enqueue of the same event is
 *   dropped by the engine), whose data is the event plus our own bookkeeping: attempts spent, the last
 *   error, when the first attempt started (written with the first retry or dead letter; a claim writes
 *   nothing), and for a dead letter its error and time. Enqueues of one turn of the event loop are
 *   sent together (group commit, see `commit`).
 * - A claim that fails midway (a connection cut) hands the caller the events it already took, if any,
 *   and gives back the job it was taking: an event taken but never handed over would stay in this
 *   process's hands, its lock renewed and its entity held, until the process ends.
 * - `claim` is BullMQ's manual pull (`Worker.getNextJob` without blocking), one token per job; the
 *   job's lock (`lockMs`, QUEUE_LOCK_SECONDS, default DEFAULT_LOCK_MS) is renewed every third of it
 *   while the job is in hand, and BullMQ's stalled-job check, run every `lockMs`, hands out again an
 *   event whose process died: within about two `lockMs` of the death (the check marks the jobs in
 *   hand, and moves those whose lock has expired at its next run). After MAX_STALLS such deaths the
 *   event is dead-lettered by BullMQ, so that an event that kills its worker cannot kill them all.
 * - Per entity: an entity lock in the engine (entity-locks.ts) is taken when an event is handed out and
 *   given back when it is settled. An event whose entity is held (by this process's `busyKeys`, by an
 *   event claimed in the same call, or by another process) is set aside for BUSY_ENTITY_DELAY_MS
 *   (`moveToDelayed`, which spends no attempt): unlike the file queue, it loses its place. The events
 *   of one entity that this process sets aside share one time to come back, so that they come back
 *   in their order (the engine hands out jobs due at the same time by their place); each set aside at
 *   its own time, one passed over earlier could come back after a later one (an older version handled
 *   after a newer one). Across processes an entity's events may still swap places; the database's
 *   stale-write guard keeps the newest version.
 * - `retry` writes the new bookkeeping (`updateData`) and then moves the job to delayed (or back to
 *   waiting when there is no delay). A crash between the two leaves the job in hand with its attempt
 *   counted, handed out again by the stalled check: at least once, as the contract allows.
 * - A dead letter is a failed job (`moveToFailed`, kept; completed jobs are removed). A replay resets
 *   the bookkeeping and retries the failed job.
 * - An event no longer in this process's hands when it is settled (the engine says its job is gone,
 *   not active, or locked by another token) is settled: forgotten here and its entity given back, and
 *   the ack, retry or dead letter resolves. That happens when an earlier try of the same settlement
 *   did not answer in time but went through (Redis queues a worker's commands while it is away and
 *   runs them once it is back; PostgreSQL may commit and lose the connection before answering), or
 *   when the lock expired meanwhile and the stalled check handed the event out again: at least once,
 *   as the contract allows. Failing instead would have the dispatcher try forever a settlement that
 *   can never succeed, its lane stuck and the entity held by this process for good.
 * - `waitForWork` asks the engine every IDLE_POLL_MS whether one of the sources asked for has a job
 *   ready (waiting, or delayed and due), so an idle worker costs a few small requests a second and
 *   picks up an arrival within that time.
 * - Durability: `enqueue` resolves when the engine has answered `addBulk`; whether that answer means
 *   "on disk" is the engine's setting (Redis `appendfsync always`, PostgreSQL `synchronous_commit`),
 *   checked at start-up by engine.ts. An engine that does not answer within ENQUEUE_TIMEOUT_MS fails
 *   the enqueue with CONN_ERR_QUEUE_UNAVAILABLE, so a delivery is answered 503, never 200, well within
 *   the vendors' timeouts (Teamwork waits 5 s).
 * - No call waits for the engine longer than ENQUEUE_TIMEOUT_MS: each step of a claim, each
 *   settlement, the stats, and `close` as a whole give up then (CONN_ERR_QUEUE_UNAVAILABLE), so that a
 *   worker whose engine is away (the worker's Redis connection queues its commands until Redis is
 *   back) or cut off (nothing answers) backs off and stops when asked. A claim's steps given up on
 *   may still complete later; a job they took is then given back (see takeNextJob).
 */
import { randomUUID } from 'node:crypto';
import { Queue as BullMQQueue, ErrorCode, Worker, createPostgresBackend, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ConnectorError, type ErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { SOURCE_NAMES, checkQueueEvent, eventJson, type QueueEvent, type SourceName } from '../model.ts';
import { sleep } from '../retry-policy.ts';
import { PostgresEntityLocks, RedisEntityLocks, type EntityLocks } from './entity-locks.ts';
import type { ClaimOptions, ClaimedEvent, DeadLetter, DeadLetterFilter, Queue, QueueStats, RetryOptions } from './queue.ts';

/** How long a claimed job's lock lasts without renewal by default (QUEUE_LOCK_SECONDS), ms. */
export const DEFAULT_LOCK_MS = 30_000;
/** How many times an event may be in hand of a process that died before BullMQ dead-letters it. */
const MAX_STALLS = 5;
const BUSY_ENTITY_DELAY_MS = 250;
const IDLE_POLL_MS = 250;
export const ENQUEUE_TIMEOUT_MS = 3_000;
/** The most jobs one group commit sends to the engine; more wait for the next. */
const MAX_JOBS_PER_COMMIT = 1_000;
/** The longest pause between two tries to reconnect to Redis, ms. */
const RECONNECT_MAX_MS = 500;
/** At most this many events are set aside for a busy entity in one claim, so a claim always ends. */
const MAX_SET_ASIDE_PER_CLAIM = 64;
/** Delayed and active jobs looked at for the oldest pending age and for peek. */
const SCAN_LIMIT = 1_000;

export interface EngineSettings {
  engine: 'redis' | 'postgres';
  url: string;
  /** Names the queues (`<prefix>-<source>`) and the entity locks (QUEUE_PREFIX). */
  prefix: string;
  /** How long a claimed event stays locked to its process without renewal, ms (QUEUE_LOCK_SECONDS). Default DEFAULT_LOCK_MS. */
  lockMs?: number;
}

export interface BullQueueOptions {
  settings: EngineSettings;
  log: Logger;
  lifecycle?: Lifecycle;
}

/** What a job carries: the event, and our bookkeeping of its attempts. */
interface JobData {
  event: Omit<QueueEvent, 'receivedAt'> & { receivedAt: string };
  /** Attempts spent (a retry with spendAttempt: false spends none). */
  spent: number;
  lastError: ErrorRecord | null;
  firstAttemptAt: string | null;
  dead?: { error: ErrorRecord; at: string; attempts: number };
}

interface JobSpec {
  name: string;
  data: JobData;
  opts: JobsOptions;
}

/** The enqueues of one turn of the event loop for one source (see commit). */
interface Batch {
  jobs: JobSpec[];
  done: Promise<void>;
}

interface InHand {
  job: Job<JobData>;
  token: string;
  source: SourceName;
  entity: string | null;
}

/** How the engine's BullMQ objects are made (Redis connections, or the PostgreSQL backend). */
interface EngineObjects {
  queue(name: string): BullMQQueue<JobData>;
  worker(name: string): Worker<JobData>;
}

interface Lane {
  queue: BullMQQueue<JobData>;
  worker: Worker<JobData> | null;
}

/** BullMQ's answers to a settlement of a job that is no longer in this process's hands. */
const NOT_IN_HAND: ReadonlySet<number> = new Set([ErrorCode.JobNotExist, ErrorCode.JobLockNotExist, ErrorCode.JobNotInState, ErrorCode.JobLockMismatch]);

function notInHand(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' && NOT_IN_HAND.has(code);
}

/** Job ids may not contain ':' nor be integers; event ids may. */
function jobIdOf(eventId: string): string {
  return `ev-${eventId.replace(/[%:]/g, (c) => (c === '%' ? '%25' : '%3A'))}`;
}

function toEvent(data: JobData): QueueEvent {
  return { ...data.event, receivedAt: new Date(data.event.receivedAt) };
}

function unavailable(message: string, cause?: unknown): ConnectorError {
  return new ConnectorError('CONN_ERR_QUEUE_UNAVAILABLE', message, { cause });
}

export class BullQueue implements Queue {
  readonly backend: 'redis' | 'postgres';
  private readonly lanes = new Map<SourceName, Lane>();
  private readonly inHand = new Map<string, InHand>();
  private readonly batches = new Map<SourceName, Batch>();
  /** Entities this process holds a lock on (one event each). */
  private readonly held = new Set<string>();
  private readonly closing = new AbortController();
  private closed = false;
  private renewTimer: NodeJS.Timeout | null = null;
  private lastEngineError = 0;
  /** Redis connections this queue made (BullMQ does not close connections it was given). */
  private readonly redisClients: Redis[] = [];
  private readonly lockMs: number;
  /** Per entity, when the events this process set aside for it come back (epoch ms). */
  private readonly asideUntil = new Map<string, number>();

  private constructor(
    private readonly options: BullQueueOptions,
    private readonly locks: EntityLocks,
    private readonly make: EngineObjects,
  ) {
    this.backend = options.settings.engine;
    for (const source of SOURCE_NAMES) {
      const queue = make.queue(this.queueName(source));
      queue.on('error', (err) => this.engineError(err));
      this.lanes.set(source, { queue, worker: null });
    }
    this.lockMs = options.settings.lockMs ?? DEFAULT_LOCK_MS;
    this.renewTimer = setInterval(() => void this.renewLocks(), Math.floor(this.lockMs / 3));
    this.renewTimer.unref();
  }

  static async open(options: BullQueueOptions): Promise<BullQueue> {
    const { settings } = options;
    const lockMs = settings.lockMs ?? DEFAULT_LOCK_MS;
    const workerOptions = {
      prefix: settings.prefix,
      autorun: false,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      maxStalledCount: MAX_STALLS,
    } as const;
    let queue: BullQueue;
    if (settings.engine === 'redis') {
      const clients: Redis[] = [];
      const client = (workerSide: boolean): Redis => {
        // The enqueue side fails fast while Redis is away (no offline queue): a delivery is answered
        // 503 at once. The claim side waits for the reconnection, as BullMQ's workers require. Both try
        // to reconnect at least every RECONNECT_MAX_MS (ioredis waits up to 2 s by default), so that
        // deliveries are answered 200 again soon after Redis is back.
        const retryStrategy = (times: number) => Math.min(times * 50, RECONNECT_MAX_MS);
        const redis = new Redis(
          settings.url,
          workerSide ? { maxRetriesPerRequest: null, lazyConnect: true, retryStrategy } : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: ENQUEUE_TIMEOUT_MS, lazyConnect: true, retryStrategy },
        );
        redis.on('error', () => {}); // reported through the BullMQ objects' 'error' events (engineError)
        clients.push(redis);
        return redis;
      };
      const producer = client(false);
      const consumer = client(true);
      const locks = new RedisEntityLocks(client(true), settings.prefix, lockMs);
      await producer.connect().catch(() => {}); // an unreachable Redis fails waitUntilReady below
      queue = new BullQueue(options, locks, {
        queue: (name) => new BullMQQueue<JobData>(name, { connection: producer, prefix: settings.prefix }),
        worker: (name) => new Worker<JobData>(name, null, { ...workerOptions, connection: consumer }),
      });
      queue.redisClients.push(...clients);
    } else {
      const locks = new PostgresEntityLocks(
        async () => {
          const client = new pg.Client({ connectionString: settings.url, application_name: 'connector-entity-locks' });
          await client.connect();
          return client;
        },
        settings.prefix,
        options.log,
      );
      const connection = { connectionString: settings.url, migrate: true, max: 4, connectionTimeoutMillis: ENQUEUE_TIMEOUT_MS };
      queue = new BullQueue(options, locks, {
        queue: (name) => new BullMQQueue(name, { connection, prefix: settings.prefix }, createPostgresBackend) as unknown as BullMQQueue<JobData>,
        worker: (name) => new Worker(name, null, { ...workerOptions, connection }, createPostgresBackend) as unknown as Worker<JobData>,
      });
    }
    try {
      await queue.withTimeout(Promise.all([...queue.lanes.values()].map((lane) => lane.queue.waitUntilReady())), 'connecting');
    } catch (err) {
      await queue.close().catch(() => {});
      throw err;
    }
    return queue;
  }

  private queueName(source: SourceName): string {
    return `${this.options.settings.prefix}-${source}`;
  }

  private lane(source: SourceName): Lane {
    const lane = this.lanes.get(source);
    if (lane === undefined) throw new ConnectorError('CONN_ERR_SOURCE_UNKNOWN', `no queue for source ${source}`);
    return lane;
  }

  /**
   * The claiming side of a source's queue, made on first use (a serve-only process never makes one).
   * A BullMQ Worker that could not connect when it was made keeps failing every call with that first
   * error (its readiness is settled once), so one whose readiness failed is dropped, and the next
   * claim makes another: a `work` process whose first claim comes while the engine is away claims
   * once it is back. (It handed nothing out, so nothing in hand refers to it.)
   */
  private worker(source: SourceName): Worker<JobData> {
    const lane = this.lane(source);
    if (lane.worker === null) {
      const worker = this.make.worker(this.queueName(source));
      worker.on('error', (err) => this.engineError(err));
      lane.worker = worker;
      worker.waitUntilReady().then(
        () => void worker.startStalledCheckTimer().catch((err: unknown) => this.engineError(err as Error)),
        (err: unknown) => {
          if (lane.worker === worker) lane.worker = null;
          this.engineError(err as Error);
          void worker.close(true).catch(() => {});
        },
      );
    }
    return lane.worker;
  }

  private engineError(err: Error): void {
    if (this.closed) return;
    const now = Date.now();
    if (now - this.lastEngineError < 30_000) return;
    this.lastEngineError = now;
    this.options.log.warn({ err }, `the ${this.backend} queue engine reported an error (repeats within 30 s are not logged)`);
  }

  private assertOpen(): void {
    if (this.closed) throw new ConnectorError('CONN_ERR_QUEUE_CLOSED', 'the queue is closed');
  }

  private async withTimeout<T>(work: Promise<T>, what: string, ms = ENQUEUE_TIMEOUT_MS): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable(`the ${this.backend} queue engine did not answer within ${ms} ms (${what})`)), ms);
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof ConnectorError) throw err;
      throw unavailable(`the ${this.backend} queue engine failed (${what}): ${(err as Error).message}`, err);
    } finally {
      clearTimeout(timer);
    }
  }

  // ───────────────────────────── the Queue contract ─────────────────────────────

  async enqueue(events: readonly QueueEvent[]): Promise<void> {
    this.assertOpen();
    if (events.length === 0) return;
    const bySource = new Map<SourceName, JobSpec[]>();
    for (const input of events) {
      const parsed = checkQueueEvent(input);
      const id = typeof (input as { id?: unknown } | null)?.id === 'string' ? (input as { id: string }).id : '?';
      if (!parsed.success) {
        throw new ConnectorError('CONN_ERR_EVENT_INVALID', `cannot enqueue event ${id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`, { details: { eventId: id } });
      }
      const ev = parsed.data;
      try {
        eventJson(ev); // BullMQ writes the data as JSON: an event that cannot be written must fail here, alone
      } catch (err) {
        throw new ConnectorError('CONN_ERR_EVENT_INVALID', `cannot enqueue event ${ev.id}: its payload cannot be written as JSON (${(err as Error).message})`, { cause: err, details: { eventId: ev.id } });
      }
      const data: JobData = { event: { ...ev, receivedAt: ev.receivedAt.toISOString() }, spent: 0, lastError: null, firstAttemptAt: null };
      const list = bySource.get(ev.source) ?? [];
      list.push({ name: ev.type, data, opts: { jobId: jobIdOf(ev.id), removeOnComplete: true } });
      bySource.set(ev.source, list);
    }
    await Promise.all([...bySource].map(([source, jobs]) => this.commit(source, jobs)));
    this.options.lifecycle?.emit('queue:appended', { count: events.length });
  }

  /**
   * Group commit: the jobs of every enqueue made in the same turn of the event loop go to the engine
   * in one request per source (one `addBulk`: one Redis round trip, one PostgreSQL transaction), and
   * every caller hears the same answer. Under a flood of deliveries this is what keeps the engine's
   * cost per delivery low (bench/scale); a lone delivery waits one turn of the loop.
   */
  private commit(source: SourceName, jobs: JobSpec[]): Promise<void> {
    let batch = this.batches.get(source);
    if (batch === undefined || batch.jobs.length + jobs.length > MAX_JOBS_PER_COMMIT) {
      const fresh: Batch = { jobs: [], done: null as unknown as Promise<void> };
      fresh.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        if (this.batches.get(source) === fresh) this.batches.delete(source);
        const { queue } = this.lane(source);
        const write: Promise<unknown> = fresh.jobs.length === 1 ? queue.add(fresh.jobs[0]!.name, fresh.jobs[0]!.data, fresh.jobs[0]!.opts) : queue.addBulk(fresh.jobs);
        return this.withTimeout(write, 'enqueue').then(() => undefined);
      });
      this.batches.set(source, fresh);
      batch = fresh;
    }
    batch.jobs.push(...jobs);
    return batch.done;
  }

  async claim(options: ClaimOptions = {}): Promise<ClaimedEvent[]> {
    this.assertOpen();
    const limit = options.limit ?? 1;
    const sources = (options.sources ?? SOURCE_NAMES).filter((s) => this.lanes.has(s));
    const out: ClaimedEvent[] = [];
    if (limit <= 0 || sources.length === 0) return out;
    const drained = new Set<SourceName>();
    let setAside = 0;
    while (out.length < limit && drained.size < sources.length && setAside < MAX_SET_ASIDE_PER_CLAIM && !this.closed) {
      for (const source of sources) {
        if (drained.has(source) || out.length >= limit) continue;
        let taken: ClaimedEvent | 'drained' | 'set aside';
        try {
          taken = await this.takeNext(source, options.busyKeys);
        } catch (err) {
          // The events already in hand are handed to the caller, not kept here unreported: an event
          // claimed and never returned would have its lock renewed, and its entity held, for as long
          // as this process lives.
          if (out.length === 0) throw err;
          this.engineError(err as Error);
          return out;
        }
        if (taken === 'drained') drained.add(source);
        else if (taken === 'set aside') setAside += 1;
        else out.push(taken);
      }
    }
    return out;
  }

  /**
   * Takes the next job of a source into this process's hands, its entity locked. A job whose entity is busy is set aside. When a step fails after the engine handed the job
   * out, the job and its entity are given back (or, if the engine cannot be told, the job comes back
   * when its lock expires) and the error is thrown.
   */
  private async takeNext(source: SourceName, busyKeys: ReadonlySet<string> | undefined): Promise<ClaimedEvent | 'drained' | 'set aside'> {
    const abandoned = { value: false };
    try {
      return await this.withTimeout(this.takeNextJob(source, busyKeys, abandoned), 'claim');
    } catch (err) {
      abandoned.value = true;
      throw err;
    }
  }

  /**
   * takeNext's steps. When the engine does not answer in time, the claim gives up on them but they
   * may still complete later (Redis runs a worker's commands once it is back): `abandoned` then says
   * so, and a job handed out to steps given up on is given back instead of being kept in hand unseen.
   * Giving back is not awaited: while the engine is away it would wait as long (an event not given
   * back comes back when its lock expires).
   */
  private async takeNextJob(source: SourceName, busyKeys: ReadonlySet<string> | undefined, abandoned: { value: boolean }): Promise<ClaimedEvent | 'drained' | 'set aside'> {
    const token = randomUUID();
    const job = (await this.worker(source).getNextJob(token, { block: false })) as Job<JobData> | undefined;
    if (job === undefined || job === null) return 'drained';
    const entity = job.data.event.entityKey;
    let locked = false;
    const giveBack = (): void => {
      void job.moveToWait(token).catch(() => {});
      if (locked && entity !== null) void this.locks.release(entity).catch(() => {});
    };
    try {
      if (entity !== null) {
        // Held by this process (another lane, or an event taken earlier in this claim) or by another one.
        locked = !abandoned.value && busyKeys?.has(entity) !== true && !this.held.has(entity) && (await this.locks.tryLock(entity));
        if (!locked) {
          await job.moveToDelayed(this.setAsideUntil(entity), token);
          return 'set aside';
        }
      }
      const data = job.data;
      if (abandoned.value) {
        giveBack();
        return 'drained';
      }
      if (entity !== null) this.held.add(entity);
      this.inHand.set(data.event.id, { job, token, source, entity });
      return { event: toEvent(data), attempt: data.spent + 1, lastError: data.lastError };
    } catch (err) {
      giveBack();
      throw err;
    }
  }

  /** When an event of `entity` set aside now comes back: with the others set aside for it, if they wait still. */
  private setAsideUntil(entity: string): number {
    const now = Date.now();
    const until = this.asideUntil.get(entity);
    if (until !== undefined && until > now) return until;
    if (this.asideUntil.size >= 10_000) for (const [key, at] of this.asideUntil) if (at <= now) this.asideUntil.delete(key);
    this.asideUntil.set(entity, now + BUSY_ENTITY_DELAY_MS);
    return now + BUSY_ENTITY_DELAY_MS;
  }

  private take(eventId: string, what: string): InHand {
    this.assertOpen();
    const hand = this.inHand.get(eventId);
    if (hand === undefined) throw new ConnectorError('CONN_ERR_INTERNAL', `cannot ${what} event ${eventId}: this queue did not hand it out`, { retryable: false });
    return hand;
  }

  /**
   * Forgets a settled event here and gives its entity back, waiting for the engine no longer than the
   * other calls (a release given up on still runs once the engine answers; a lock never released
   * expires on Redis and ends with the session on PostgreSQL).
   */
  private async settled(eventId: string, hand: InHand): Promise<void> {
    this.inHand.delete(eventId);
    if (hand.entity === null) return;
    this.held.delete(hand.entity);
    await this.withTimeout(this.locks.release(hand.entity), 'entity release').catch((err: unknown) => this.engineError(err as Error));
  }

  /**
   * Runs a settlement of an event in hand in the engine, then forgets the event here. A job no longer
   * in this process's hands counts as settled (see the header).
   */
  private async settle(eventId: string, hand: InHand, what: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await this.withTimeout(work(), what);
    } catch (err) {
      const cause = err instanceof ConnectorError ? err.cause : err;
      if (!notInHand(cause)) throw err;
      this.options.log.warn(
        { eventId, source: hand.source, err: cause },
        `event ${eventId} was no longer in this process's hands at its ${what}: an earlier try went through, or its lock expired and it is handed out again (at least once)`,
      );
    }
    await this.settled(eventId, hand);
  }

  async ack(eventId: string): Promise<void> {
    const hand = this.take(eventId, 'ack');
    await this.settle(eventId, hand, 'ack', () => hand.job.moveToCompleted(null, hand.token, false));
  }

  async retry(eventId: string, error: ErrorRecord, options: RetryOptions): Promise<void> {
    const hand = this.take(eventId, 'retry');
    const data: JobData = { ...hand.job.data, spent: hand.job.data.spent + (options.spendAttempt === false ? 0 : 1), lastError: error, firstAttemptAt: firstAttemptAt(hand.job) };
    await this.settle(eventId, hand, 'retry', async () => {
      await hand.job.updateData(data);
      if (options.delayMs > 0) await hand.job.moveToDelayed(Date.now() + options.delayMs, hand.token);
      else await hand.job.moveToWait(hand.token);
    });
  }

  async deadLetter(eventId: string, error: ErrorRecord): Promise<void> {
    const hand = this.take(eventId, 'dead-letter');
    const data: JobData = { ...hand.job.data, lastError: error, firstAttemptAt: firstAttemptAt(hand.job), dead: { error, at: new Date().toISOString(), attempts: hand.job.data.spent + 1 } };
    await this.settle(eventId, hand, 'dead-letter', async () => {
      await hand.job.updateData(data);
      await hand.job.moveToFailed(new Error(`${error.code}: ${error.message}`), hand.token, false);
    });
  }

  async stats(): Promise<QueueStats> {
    this.assertOpen();
    return this.withTimeout(
      (async () => {
        const stats: QueueStats = { pending: 0, inFlight: 0, delayed: 0, deadLettered: 0, oldestPendingAgeMs: null };
        let oldest = Infinity;
        for (const { queue } of this.lanes.values()) {
          const counts = await queue.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'failed');
          stats.pending += (counts.wait ?? 0) + (counts.prioritized ?? 0);
          stats.inFlight += counts.active ?? 0;
          stats.delayed += counts.delayed ?? 0;
          stats.deadLettered += counts.failed ?? 0;
          const candidates = [
            ...(await queue.getJobs(['wait', 'prioritized'], 0, 0, true)),
            ...(counts.active ? await queue.getJobs(['active'], 0, SCAN_LIMIT - 1) : []),
            ...(counts.delayed ? await queue.getJobs(['delayed'], 0, SCAN_LIMIT - 1) : []),
          ];
          for (const job of candidates) {
            const at = Date.parse((job.data as JobData | undefined)?.event?.receivedAt ?? '');
            if (Number.isFinite(at) && at < oldest) oldest = at;
          }
        }
        if (oldest !== Infinity) stats.oldestPendingAgeMs = Math.max(0, Date.now() - oldest);
        return stats;
      })(),
      'stats',
    );
  }

  async peek(limit: number): Promise<QueueEvent[]> {
    this.assertOpen();
    if (limit <= 0) return [];
    const found: QueueEvent[] = [];
    for (const { queue } of this.lanes.values()) {
      const jobs = [
        // Newest by position, with room for events put back at the newest end (PostgreSQL's
        // moveToWait): peek is exact unless more than SCAN_LIMIT were put back since.
        ...(await queue.getJobs(['wait', 'prioritized'], 0, limit + SCAN_LIMIT - 1, false)),
        ...(await queue.getJobs(['active', 'delayed'], 0, SCAN_LIMIT - 1)),
      ];
      for (const job of jobs) if (job?.data !== undefined) found.push(toEvent(job.data as JobData));
    }
    return found.sort((a, b) => b.receivedAt.getTime() - a.receivedAt.getTime()).slice(0, limit);
  }

  private async failedJobs(filter: DeadLetterFilter | undefined): Promise<Job<JobData>[]> {
    const sources = filter?.source !== undefined ? [filter.source] : SOURCE_NAMES;
    const ids = filter?.ids === undefined ? null : new Set(filter.ids);
    const out: Job<JobData>[] = [];
    for (const source of sources) {
      const { queue } = this.lane(source);
      const count = await queue.getFailedCount();
      for (let start = 0; start < count; start += 500) {
        for (const job of await queue.getFailed(start, start + 499)) {
          if (job?.data === undefined) continue;
          if (ids !== null && !ids.has((job.data as JobData).event.id)) continue;
          out.push(job as Job<JobData>);
        }
      }
    }
    return out.sort((a, b) => (a.finishedOn ?? 0) - (b.finishedOn ?? 0));
  }

  async listDeadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]> {
    this.assertOpen();
    return (await this.failedJobs(filter)).map(toDeadLetter);
  }

  async replayDeadLetters(filter: DeadLetterFilter, options: { dryRun?: boolean } = {}): Promise<DeadLetter[]> {
    const jobs = await this.chosenDeadLetters(filter);
    const letters = jobs.map(toDeadLetter);
    if (options.dryRun === true) return letters;
    for (const job of jobs) {
      const { dead: _dead, ...rest } = job.data;
      await job.updateData({ ...rest, spent: 0, lastError: null, firstAttemptAt: null });
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    }
    return letters;
  }

  /** A dead letter is a failed job: discarding removes the job (and its logs) from the engine. */
  async discardDeadLetters(filter: DeadLetterFilter, options: { dryRun?: boolean } = {}): Promise<DeadLetter[]> {
    const jobs = await this.chosenDeadLetters(filter);
    const letters = jobs.map(toDeadLetter);
    if (options.dryRun === true) return letters;
    for (const job of jobs) await job.remove();
    return letters;
  }

  /** The failed jobs a replay or discard acts on: none unless the filter narrows or says `all`. */
  private async chosenDeadLetters(filter: DeadLetterFilter) {
    this.assertOpen();
    const narrowed = filter.source !== undefined || filter.ids !== undefined;
    if (!narrowed && filter.all !== true) return [];
    return this.failedJobs(filter);
  }

  async waitForWork(timeoutMs: number, options: { sources?: readonly SourceName[] } = {}): Promise<void> {
    const sources = (options.sources ?? SOURCE_NAMES).filter((s) => this.lanes.has(s));
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      try {
        if (await this.anyReady(sources)) return;
      } catch (err) {
        this.engineError(err as Error);
      }
      await sleep(Math.min(IDLE_POLL_MS, deadline - Date.now()), this.closing.signal);
    }
  }

  private async anyReady(sources: readonly SourceName[]): Promise<boolean> {
    for (const source of sources) {
      const { queue } = this.lane(source);
      const counts = await queue.getJobCounts('wait', 'prioritized', 'delayed');
      if ((counts.wait ?? 0) + (counts.prioritized ?? 0) > 0) return true;
      if ((counts.delayed ?? 0) > 0) {
        const [next] = await queue.getJobs(['delayed'], 0, 0, true);
        if (next !== undefined && next.timestamp + (next.delay ?? 0) <= Date.now()) return true;
      }
    }
    return false;
  }

  private async renewLocks(): Promise<void> {
    const hands = [...this.inHand.values()];
    if (hands.length === 0) return;
    await Promise.all(hands.map((h) => h.job.extendLock(h.token, this.lockMs).catch((err: unknown) => this.engineError(err as Error))));
    await this.locks.renew(hands.flatMap((h) => (h.entity === null ? [] : [h.entity]))).catch((err: unknown) => this.engineError(err as Error));
  }

  /** Removes every job of this queue's prefix from the engine (tests, and an operator starting over). */
  async obliterate(): Promise<void> {
    this.assertOpen();
    for (const { queue } of this.lanes.values()) await queue.obliterate({ force: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    if (this.renewTimer !== null) clearInterval(this.renewTimer);
    // Events in hand go back to waiting now rather than after their lock expires, in the order they
    // were handed out: moveToWait puts a job at the front of the line on Redis, at the back on
    // PostgreSQL. All of it waits for the engine at most ENQUEUE_TIMEOUT_MS, so that a stop while the
    // engine is away ends (what could not be given back comes back when its lock expires).
    const deadline = Date.now() + ENQUEUE_TIMEOUT_MS;
    const left = () => Math.max(0, deadline - Date.now());
    const hands = [...this.inHand.entries()];
    if (this.backend === 'redis') hands.reverse();
    this.inHand.clear();
    const giveBack = async (): Promise<void> => {
      for (const [, hand] of hands) {
        await hand.job.moveToWait(hand.token).catch(() => {});
        if (hand.entity !== null) await this.locks.release(hand.entity).catch(() => {});
      }
    };
    await this.withTimeout(giveBack(), 'close', left()).catch(() => {});
    this.held.clear();
    const closes = [...this.lanes.values()].flatMap((lane) => [lane.worker?.close(true), lane.queue.close()]);
    await this.withTimeout(Promise.all(closes.map((c) => c?.catch(() => {}))), 'close', left()).catch(() => {});
    await this.withTimeout(this.locks.close(), 'close', left()).catch(() => {});
    for (const redis of this.redisClients) redis.disconnect();
  }
}

/**
 * When the event's first attempt started: kept in the job's data from its first retry or dead letter
 * on; until then it is this attempt, which BullMQ stamped when it handed the job out (so a claim
 * writes nothing but the claim).
 */
function firstAttemptAt(job: Job<JobData>): string {
  return job.data.firstAttemptAt ?? new Date(job.processedOn ?? Date.now()).toISOString();
}

function toDeadLetter(job: Job<JobData>): DeadLetter {
  const data = job.data;
  const dead = data.dead ?? {
    // Dead-lettered by BullMQ itself: its process died with it in hand more than MAX_STALLS times.
    error: { code: 'CONN_ERR_INTERNAL', message: job.failedReason || 'failed in the engine', retryable: true } satisfies ErrorRecord,
    at: new Date(job.finishedOn ?? Date.now()).toISOString(),
    attempts: data.spent + 1,
  };
  return { event: toEvent(data), attempts: dead.attempts, error: dead.error, firstAttemptAt: data.firstAttemptAt, deadLetteredAt: dead.at };
}

