/**
 * What this process saw happen, for the operator console (src/server/console/): per source the
 * deliveries, events and failures of each minute of the last hour, the newest delivery, the last
 * reconciliation and what it found; the queue sampled over the last hour; and the newest events it
 * worked on, each with its attempts, outcome, errors and the rows it wrote.
 *
 * Everything is gathered from the lifecycle (src/lifecycle.ts) and kept in memory, bounded: a fixed
 * number of events (`capacity`, newest kept) and sixty minutes of counts. Nothing here is on the data
 * path: listeners only count and remember references. Events still in the queue (not yet tried here)
 * are read from it on request (`peek`), and the rows an event wrote from the database, as they are now.
 *
 * What one process cannot see: with `serve` and `work` in separate processes, events are worked on in
 * the worker, so a `serve` process's console shows deliveries and the queue but no event outcomes; see
 * docs/console.md.
 */
import type { Database } from '../db/database.ts';
import { eventSummary } from './check-queue.ts';
import type { ActivityBoard, ActivityReport, ReportedEvent, SourceReport } from './activity-board.ts';
import type { ErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { QueueEvent, RowRef, SourceName } from '../model.ts';
import type { Queue } from '../queue/queue.ts';
import { MINUTE } from '../retry-policy.ts';
import type { ActivityProvider, EventAttempt, EventDetail, EventSummary, MinuteSeries, ProcessSummary, QueueSample, ReconciliationSummary, SourceOverview } from '../server/console/data.ts';
import type { Source } from '../sources/source.ts';

/** Events remembered by default. */
const DEFAULT_CAPACITY = 2000;
/** Attempts remembered per event (the newest). */
const MAX_HISTORY = 20;
/** Events still in the queue looked at by a search. */
const QUEUE_LOOK = 500;
/** Queue samples: one every 30 s, an hour of them. */
const DEFAULT_SAMPLE_EVERY_MS = 30_000;
/** Events a process posts to the board (the newest). */
const REPORTED_EVENTS = 200;
/** How long a read of the board is reused, ms. */
const BOARD_READ_REUSE_MS = 1_000;
const HOUR_MS = 60 * MINUTE;

export interface ActivityOptions {
  lifecycle: Lifecycle;
  queue: Queue;
  sources: readonly Source[];
  /** The database rows are read from, once there is one (null: rows and checkpoints are not shown). */
  database: () => Database | null;
  /** Redacts secrets from a payload before it is shown. */
  redact: (payload: unknown) => unknown;
  /**
   * Where this process posts its report and reads the others' (src/admin/activity-board.ts), with this
   * process's id and role; none: the console shows this process alone.
   */
  board?: { board: ActivityBoard; id: string; role: ActivityReport['role'] };
  capacity?: number;
  sampleEveryMs?: number;
  /** How often the report is posted, ms. Default 2 s. */
  postEveryMs?: number;
  now?: () => number;
}

/** Counts per minute over the last hour, in a ring of sixty slots. */
class MinuteCounts {
  private readonly counts = new Array<number>(60).fill(0);
  private readonly minutes = new Array<number>(60).fill(-1);

  constructor(private readonly now: () => number) {}

  add(n = 1): void {
    const minute = Math.floor(this.now() / MINUTE);
    const slot = minute % 60;
    if (this.minutes[slot] !== minute) {
      this.minutes[slot] = minute;
      this.counts[slot] = 0;
    }
    this.counts[slot] = (this.counts[slot] as number) + n;
  }

  /** Oldest first, the current minute last. */
  series(): MinuteSeries {
    const current = currentMinute(this.now);
    const out: number[] = [];
    for (let minute = current - 59; minute <= current; minute++) {
      const slot = ((minute % 60) + 60) % 60;
      out.push(this.minutes[slot] === minute ? (this.counts[slot] as number) : 0);
    }
    return out;
  }

  lastHour(): number {
    return this.series().reduce((a, b) => a + b, 0);
  }
}

interface SourceActivity {
  lastDeliveryAt: number | null;
  deliveries: MinuteCounts;
  events: MinuteCounts;
  failed: MinuteCounts;
  missed: MinuteCounts;
  missedTotal: number;
  /** The run in progress: when its first page came, and what it judged so far. */
  running: { startedAt: number; missed: number | null } | null;
  reconciliation: ReconciliationSummary | null;
  /** The newest checkpoint a run moved to, seen here. */
  newestUpdate: string | null;
}

interface EventEntry {
  event: QueueEvent;
  history: EventAttempt[];
  rows: RowRef[];
}

export class Activity implements ActivityProvider {
  private readonly now: () => number;
  private readonly capacity: number;
  private readonly perSource = new Map<SourceName, SourceActivity>();
  /** Insertion order is recency: an event is moved to the end on every attempt. */
  private readonly recent = new Map<string, EventEntry>();
  private readonly samples: QueueSample[] = [];
  private readonly stops: Array<() => void> = [];
  private readonly sampleEveryMs: number;
  private readonly startedAt: number;
  private lastClaimAt: number | null = null;
  private timers: NodeJS.Timeout[] = [];
  private boardRead: { at: number; reports: Promise<ActivityReport[]> } | null = null;
  /** The post in progress: waited for on close, so that it cannot put the report back after its removal. */
  private posting: Promise<void> = Promise.resolve();

  constructor(private readonly options: ActivityOptions) {
    this.now = options.now ?? Date.now;
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.sampleEveryMs = options.sampleEveryMs ?? DEFAULT_SAMPLE_EVERY_MS;
    this.startedAt = this.now();
    for (const source of options.sources) this.perSource.set(source.name, this.newSource());
    const { lifecycle } = options;
    this.stops.push(
      lifecycle.on('events:claimed', () => {
        this.lastClaimAt = this.now();
      }),
      lifecycle.on('delivery:accepted', ({ source }) => {
        const s = this.source(source);
        s.lastDeliveryAt = this.now();
        s.deliveries.add();
      }),
      lifecycle.on('event:succeeded', ({ event, attempt, durationMs, rows }) => {
        this.source(event.source).events.add();
        this.record(event, { attempt, outcome: 'ok', durationMs, error: null }, rows);
      }),
      lifecycle.on('event:retrying', ({ event, attempt, error, spent }) => {
        if (spent) this.source(event.source).failed.add();
        this.record(event, { attempt, outcome: spent ? 'retrying' : 'waiting-for-vendor', durationMs: null, error });
      }),
      lifecycle.on('event:dead-lettered', ({ event, attempt, error }) => {
        this.source(event.source).failed.add();
        this.record(event, { attempt, outcome: 'dead-lettered', durationMs: null, error });
      }),
      lifecycle.on('backfill:page', ({ source, newestUpdate }) => {
        const s = this.source(source);
        s.running ??= { startedAt: this.now(), missed: null };
        if (newestUpdate !== null && (s.newestUpdate === null || newestUpdate > s.newestUpdate)) s.newestUpdate = newestUpdate;
      }),
      lifecycle.on('reconcile:judged', ({ source, missed }) => {
        const s = this.source(source);
        s.missed.add(missed);
        s.missedTotal += missed;
      }),
      lifecycle.on('backfill:done', ({ source, events, durationMs, missed }) => {
        const finishedAt = this.now();
        const s = this.source(source);
        s.running = null;
        s.reconciliation = { startedAt: iso(finishedAt - durationMs), finishedAt: iso(finishedAt), events, missed, durationMs, error: null };
      }),
      lifecycle.on('backfill:failed', ({ source, error }) => {
        const finishedAt = this.now();
        const s = this.source(source);
        const startedAt = s.running?.startedAt ?? finishedAt;
        s.running = null;
        s.reconciliation = { startedAt: iso(startedAt), finishedAt: iso(finishedAt), events: 0, missed: null, durationMs: finishedAt - startedAt, error };
      }),
    );
  }

  /** Starts sampling the queue (one sample now, then every `sampleEveryMs`) and posting to the board. */
  start(): void {
    if (this.timers.length > 0) return;
    void this.sample();
    this.timers.push(setInterval(() => void this.sample(), this.sampleEveryMs));
    if (this.options.board !== undefined) {
      this.post();
      this.timers.push(setInterval(() => this.post(), this.options.postEveryMs ?? 2_000));
    }
    for (const timer of this.timers) timer.unref();
  }

  /** Stops the timers and listeners, and takes this process's report off the board. */
  async close(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    for (const stop of this.stops.splice(0)) stop();
    const board = this.options.board;
    if (board !== undefined) {
      await this.posting;
      await board.board.remove(board.id).catch(() => {});
      await board.board.close().catch(() => {});
    }
  }

  /** The processes posting to the board (this one first), or this one alone without a board. */
  async processes(): Promise<ProcessSummary[]> {
    const own: ProcessSummary = { id: this.options.board?.id ?? `${process.pid}`, role: this.options.board?.role ?? 'start', startedAt: iso(this.startedAt), at: iso(this.now()), lastClaimAt: this.lastClaimAt === null ? null : iso(this.lastClaimAt), self: true };
    const others = (await this.others()).map((r): ProcessSummary => ({ id: r.id, role: r.role, startedAt: r.startedAt, at: r.at, lastClaimAt: r.lastClaimAt, self: false }));
    return [own, ...others];
  }

  /** This process's report, as posted to the board. */
  report(): ActivityReport {
    const minute = currentMinute(this.now);
    const sources: SourceReport[] = [...this.perSource].map(([name, s]) => ({
      name,
      lastDeliveryAt: s.lastDeliveryAt === null ? null : iso(s.lastDeliveryAt),
      minute,
      perMinute: { deliveries: s.deliveries.series(), events: s.events.series(), failed: s.failed.series(), missed: s.missed.series() },
      missedTotal: s.missedTotal,
      reconciliation: s.reconciliation,
    }));
    const events: ReportedEvent[] = [...this.recent.values()].slice(-REPORTED_EVENTS).reverse().map((e) => ({ ...summary(e), history: e.history, rows: e.rows }));
    const board = this.options.board;
    return { id: board?.id ?? `${process.pid}`, role: board?.role ?? 'start', at: iso(this.now()), startedAt: iso(this.startedAt), lastClaimAt: this.lastClaimAt === null ? null : iso(this.lastClaimAt), sources, events };
  }

  /** Each source, over every process posting to the board: counts added up, the newest of the rest. */
  async sources(): Promise<SourceOverview[]> {
    const db = this.options.database();
    const minute = currentMinute(this.now);
    const reports = [this.report(), ...(await this.others())];
    return Promise.all(
      this.options.sources.map(async (source): Promise<SourceOverview> => {
        const parts = reports.flatMap((r) => r.sources.filter((p) => p.name === source.name));
        const sum = (pick: (p: SourceReport) => readonly number[]) => {
          const out = new Array<number>(60).fill(0);
          for (const p of parts) addSeries(out, minute, pick(p), p.minute);
          return out;
        };
        const newest = <T>(values: Array<T | null>, key: (v: T) => string) => values.filter((v): v is T => v !== null).sort((x, y) => (key(x) < key(y) ? 1 : -1))[0] ?? null;
        const vendor = source.vendor?.status();
        const budget = source.vendor?.stats();
        return {
          name: source.name,
          apiConfigured: source.apiConfigured,
          lastDeliveryAt: newest(parts.map((p) => p.lastDeliveryAt), (v) => v),
          perMinute: { deliveries: sum((p) => p.perMinute.deliveries), events: sum((p) => p.perMinute.events), failed: sum((p) => p.perMinute.failed) },
          reconciliation: newest(parts.map((p) => p.reconciliation), (r) => r.finishedAt),
          checkpoint: await this.checkpoint(db, source.name, this.source(source.name)),
          missedWebhooks: { lastHour: sum((p) => p.perMinute.missed).reduce((x, y) => x + y, 0), total: parts.reduce((n, p) => n + p.missedTotal, 0) },
          vendor:
            vendor === undefined || budget === undefined
              ? null
              : {
                  ...(vendor.state === 'ok' ? { state: 'ok' as const } : { state: vendor.state, until: iso(vendor.until), reason: vendor.reason }),
                  inFlight: budget.inFlight,
                  windows: budget.windows,
                },
        };
      }),
    );
  }

  queueHistory(): QueueSample[] {
    return [...this.samples];
  }

  /** Newest first: the queue's waiting events, and what this process and the others posting to the board worked on. */
  async events(options: { query?: string; source?: SourceName; limit: number }): Promise<EventSummary[]> {
    const query = options.query?.trim() ?? '';
    const limit = Math.max(1, options.limit);
    const matches = (event: Pick<QueueEvent, 'id' | 'source' | 'entityKey'>, rows: readonly RowRef[]) =>
      (options.source === undefined || event.source === options.source) && (query === '' || matchesQuery(event, rows, query));
    const out: EventSummary[] = [];
    const seen = new Set<string>();
    const add = (event: EventSummary) => {
      if (seen.has(event.id)) return;
      seen.add(event.id);
      out.push(event);
    };
    for (const entry of [...this.recent.values()].reverse()) if (matches(entry.event, entry.rows)) add(summary(entry));
    for (const report of await this.others()) for (const event of report.events) if (matches(event, event.rows)) add(withoutHistory(event));
    for (const event of await this.waiting()) if (matches(event, [])) add(pendingSummary(event));
    out.sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : a.receivedAt > b.receivedAt ? -1 : 0));
    return out.slice(0, limit);
  }

  async event(id: string): Promise<EventDetail | null> {
    const entry = this.recent.get(id);
    if (entry !== undefined) {
      return { ...summary(entry), payload: this.options.redact(entry.event.payload), history: [...entry.history], rows: await this.rows(entry.rows) };
    }
    const waiting = (await this.waiting()).find((e) => e.id === id);
    const [dead] = await this.options.queue.listDeadLetters({ ids: [id] }).catch(() => []);
    // Worked on in another process: its payload is no longer held anywhere once it succeeded.
    for (const report of await this.others()) {
      const reported = report.events.find((e) => e.id === id);
      if (reported === undefined) continue;
      const payload = dead?.event.payload ?? waiting?.payload;
      return { ...withoutHistory(reported), payload: payload === undefined ? null : this.options.redact(payload), history: reported.history, rows: await this.rows(reported.rows) };
    }
    if (waiting !== undefined) return { ...pendingSummary(waiting), payload: this.options.redact(waiting.payload), history: [], rows: [] };
    if (dead === undefined) return null;
    const history: EventAttempt[] = [{ attempt: dead.attempts, at: dead.deadLetteredAt, outcome: 'dead-lettered', durationMs: null, error: dead.error }];
    return {
      ...eventSummary(dead.event),
      outcome: 'dead-lettered',
      attempts: dead.attempts,
      durationMs: null,
      error: dead.error,
      payload: this.options.redact(dead.event.payload),
      history,
      rows: [],
    };
  }

  /** The other processes' fresh reports (a read reused for a second; none without a board or when it cannot be read). */
  private async others(): Promise<ActivityReport[]> {
    const board = this.options.board;
    if (board === undefined) return [];
    const now = this.now();
    if (this.boardRead === null || now - this.boardRead.at > BOARD_READ_REUSE_MS) {
      this.boardRead = { at: now, reports: board.board.read().catch(() => []) };
    }
    return (await this.boardRead.reports).filter((r) => r.id !== board.id);
  }

  /** Posts this process's report, one post at a time. */
  private post(): void {
    const board = this.options.board;
    if (board === undefined) return;
    // A board that cannot be reached: the next post tries again (the console shows this process alone meanwhile).
    this.posting = this.posting.then(() => board.board.post(this.report())).catch(() => {});
  }

  private newSource(): SourceActivity {
    return {
      lastDeliveryAt: null,
      deliveries: new MinuteCounts(this.now),
      events: new MinuteCounts(this.now),
      failed: new MinuteCounts(this.now),
      missed: new MinuteCounts(this.now),
      missedTotal: 0,
      running: null,
      reconciliation: null,
      newestUpdate: null,
    };
  }

  private source(name: SourceName): SourceActivity {
    let s = this.perSource.get(name);
    if (s === undefined) {
      s = this.newSource();
      this.perSource.set(name, s);
    }
    return s;
  }

  private record(event: QueueEvent, attempt: Omit<EventAttempt, 'at'>, rows?: RowRef[]): void {
    let entry = this.recent.get(event.id);
    if (entry === undefined) {
      entry = { event, history: [], rows: [] };
    } else {
      this.recent.delete(event.id);
    }
    entry.history.push({ ...attempt, at: iso(this.now()) });
    if (entry.history.length > MAX_HISTORY) entry.history.shift();
    if (rows !== undefined) entry.rows = rows;
    this.recent.set(event.id, entry);
    while (this.recent.size > this.capacity) {
      const oldest = this.recent.keys().next().value as string;
      this.recent.delete(oldest);
    }
  }

  private async waiting(): Promise<QueueEvent[]> {
    try {
      return await this.options.queue.peek(QUEUE_LOOK);
    } catch {
      return []; // the queue's engine away: /health says so; the console shows what this process holds
    }
  }

  private async sample(): Promise<void> {
    try {
      const stats = await this.options.queue.stats();
      this.samples.push({ at: iso(this.now()), ...stats });
    } catch {
      return; // a gap in the chart for the time the queue could not be read
    }
    const oldest = this.now() - HOUR_MS;
    while (this.samples.length > 0 && Date.parse((this.samples[0] as QueueSample).at) < oldest) this.samples.shift();
  }

  private async checkpoint(db: Database | null, source: SourceName, s: SourceActivity): Promise<SourceOverview['checkpoint']> {
    if (db !== null) {
      try {
        const checkpoint = await db.getCheckpoint(source);
        if (checkpoint !== null) return { lastEventTime: checkpoint.lastEventTime === null ? null : checkpoint.lastEventTime.toISOString() };
      } catch {
        // the database away: say what this process last saw
      }
    }
    return s.newestUpdate === null ? null : { lastEventTime: s.newestUpdate };
  }

  private async rows(refs: readonly RowRef[]): Promise<EventDetail['rows']> {
    const db = this.options.database();
    return Promise.all(
      refs.map(async (ref) => {
        if (db === null) return { ...ref, row: null };
        try {
          const row = ref.table === 'tasks' ? await db.getTask(ref.id) : await db.getEmail(ref.id);
          return { ...ref, row: row === null ? null : this.options.redact(row) };
        } catch {
          return { ...ref, row: null };
        }
      }),
    );
  }
}

function currentMinute(now: () => number): number {
  return Math.floor(now() / MINUTE);
}

/** Adds `series` (ending at epoch minute `minute`) into `into` (ending at `current`), minute by minute. */
function addSeries(into: number[], current: number, series: readonly number[], minute: number): void {
  const shift = current - minute;
  for (let i = 0; i < series.length; i++) {
    const j = i - shift;
    if (j >= 0 && j < into.length) into[j] = (into[j] as number) + (series[i] as number);
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function withoutHistory(event: ReportedEvent): EventSummary {
  const { history: _history, rows: _rows, ...rest } = event;
  return rest;
}

function pendingSummary(event: QueueEvent): EventSummary {
  return { ...eventSummary(event), outcome: 'pending', attempts: 0, durationMs: null, error: null };
}

function summary(entry: EventEntry): EventSummary {
  const last = entry.history.at(-1) as EventAttempt;
  const error: ErrorRecord | null = last.error ?? [...entry.history].reverse().find((a) => a.error !== null)?.error ?? null;
  return { ...eventSummary(entry.event), outcome: last.outcome, attempts: last.attempt, durationMs: last.durationMs, error: last.outcome === 'ok' ? null : error };
}

/** An event id, an entity key (`task:123`) or its id (`123`), or the id of a row it wrote (a message id). */
function matchesQuery(event: Pick<QueueEvent, 'id' | 'entityKey'>, rows: readonly RowRef[], query: string): boolean {
  if (event.id === query) return true;
  const key = event.entityKey;
  if (key !== null && (key === query || key.slice(key.indexOf(':') + 1) === query)) return true;
  return rows.some((r) => r.id === query);
}
