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
import type { ErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { QueueEvent, RowRef, SourceName } from '../model.ts';
import type { Queue } from '../queue/queue.ts';
import { MINUTE } from '../retry-policy.ts';
import type { ActivityProvider, EventAttempt, EventDetail, EventSummary, MinuteSeries, QueueSample, ReconciliationSummary, SourceOverview } from '../server/console/data.ts';
import type { Source } from '../sources/source.ts';

/** Events remembered by default. */
const DEFAULT_CAPACITY = 2000;
/** Attempts remembered per event (the newest). */
const MAX_HISTORY = 20;
/** Events still in the queue looked at by a search. */
const QUEUE_LOOK = 500;
/** Queue samples: one every 30 s, an hour of them. */
const DEFAULT_SAMPLE_EVERY_MS = 30_000;
const HOUR_MS = 60 * MINUTE;

export interface ActivityOptions {
  lifecycle: Lifecycle;
  queue: Queue;
  sources: readonly Source[];
  /** The database rows are read from, once there is one (null: rows and checkpoints are not shown). */
  database: () => Database | null;
  /** Redacts secrets from a payload before it is shown. */
  redact: (payload: unknown) => unknown;
  capacity?: number;
  sampleEveryMs?: number;
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
    const current = Math.floor(this.now() / MINUTE);
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
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: ActivityOptions) {
    this.now = options.now ?? Date.now;
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.sampleEveryMs = options.sampleEveryMs ?? DEFAULT_SAMPLE_EVERY_MS;
    for (const source of options.sources) this.perSource.set(source.name, this.newSource());
    const { lifecycle } = options;
    this.stops.push(
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

  /** Starts sampling the queue (one sample now, then every `sampleEveryMs`). */
  start(): void {
    if (this.timer !== null) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.sampleEveryMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const stop of this.stops.splice(0)) stop();
  }

  async sources(): Promise<SourceOverview[]> {
    const db = this.options.database();
    return Promise.all(
      this.options.sources.map(async (source): Promise<SourceOverview> => {
        const s = this.source(source.name);
        const vendor = source.vendor?.status();
        return {
          name: source.name,
          apiConfigured: source.apiConfigured,
          lastDeliveryAt: s.lastDeliveryAt === null ? null : iso(s.lastDeliveryAt),
          perMinute: { deliveries: s.deliveries.series(), events: s.events.series(), failed: s.failed.series() },
          reconciliation: s.reconciliation,
          checkpoint: await this.checkpoint(db, source.name, s),
          missedWebhooks: { lastHour: s.missed.lastHour(), total: s.missedTotal },
          vendor:
            vendor === undefined
              ? null
              : vendor.state === 'ok'
                ? { state: 'ok' }
                : { state: vendor.state, until: iso(vendor.until), reason: vendor.reason },
        };
      }),
    );
  }

  queueHistory(): QueueSample[] {
    return [...this.samples];
  }

  async events(options: { query?: string; source?: SourceName; limit: number }): Promise<EventSummary[]> {
    const query = options.query?.trim() ?? '';
    const limit = Math.max(1, options.limit);
    const matches = (event: QueueEvent, rows: readonly RowRef[]) =>
      (options.source === undefined || event.source === options.source) && (query === '' || matchesQuery(event, rows, query));
    const out: EventSummary[] = [];
    const seen = new Set<string>();
    // The queue's waiting events first (they are the newest arrivals), then what was worked on here.
    for (const event of await this.waiting()) {
      if (this.recent.has(event.id) || !matches(event, [])) continue;
      seen.add(event.id);
      out.push(pendingSummary(event));
    }
    for (const entry of [...this.recent.values()].reverse()) {
      if (seen.has(entry.event.id) || !matches(entry.event, entry.rows)) continue;
      out.push(summary(entry));
    }
    out.sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : a.receivedAt > b.receivedAt ? -1 : 0));
    return out.slice(0, limit);
  }

  async event(id: string): Promise<EventDetail | null> {
    const entry = this.recent.get(id);
    if (entry !== undefined) {
      return { ...summary(entry), payload: this.options.redact(entry.event.payload), history: [...entry.history], rows: await this.rows(entry.rows) };
    }
    const waiting = (await this.waiting()).find((e) => e.id === id);
    if (waiting !== undefined) return { ...pendingSummary(waiting), payload: this.options.redact(waiting.payload), history: [], rows: [] };
    const [dead] = await this.options.queue.listDeadLetters({ ids: [id] });
    if (dead === undefined) return null;
    const history: EventAttempt[] = [{ attempt: dead.attempts, at: dead.deadLetteredAt, outcome: 'dead-lettered', durationMs: null, error: dead.error }];
    return {
      ...eventFacts(dead.event),
      outcome: 'dead-lettered',
      attempts: dead.attempts,
      durationMs: null,
      error: dead.error,
      payload: this.options.redact(dead.event.payload),
      history,
      rows: [],
    };
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

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function eventFacts(event: QueueEvent): Pick<EventSummary, 'id' | 'source' | 'type' | 'entityKey' | 'origin' | 'receivedAt'> {
  return { id: event.id, source: event.source, type: event.type, entityKey: event.entityKey, origin: event.origin, receivedAt: event.receivedAt.toISOString() };
}

function pendingSummary(event: QueueEvent): EventSummary {
  return { ...eventFacts(event), outcome: 'pending', attempts: 0, durationMs: null, error: null };
}

function summary(entry: EventEntry): EventSummary {
  const last = entry.history.at(-1) as EventAttempt;
  const error: ErrorRecord | null = last.error ?? [...entry.history].reverse().find((a) => a.error !== null)?.error ?? null;
  return { ...eventFacts(entry.event), outcome: last.outcome, attempts: last.attempt, durationMs: last.durationMs, error: last.outcome === 'ok' ? null : error };
}

/** An event id, an entity key (`task:123`) or its id (`123`), or the id of a row it wrote (a message id). */
function matchesQuery(event: QueueEvent, rows: readonly RowRef[], query: string): boolean {
  if (event.id === query) return true;
  const key = event.entityKey;
  if (key !== null && (key === query || key.slice(key.indexOf(':') + 1) === query)) return true;
  return rows.some((r) => r.id === query);
}
