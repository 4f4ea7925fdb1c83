/**
 * What the running summary shows, counted from the connector's lifecycle events (the same events its
 * metrics count), and the feed of notable things that happened, newest last.
 */
import type { Lifecycle } from '../src/lifecycle.ts';
import type { SourceName } from '../src/model.ts';

/** One notable thing, for the "recent" list. */
export interface Notable {
  /** Wall-clock ms. */
  at: number;
  text: string;
}

/**
 * The notable things, newest last, bounded to `capacity`. Listeners hear each one as it is added
 * (the plain display prints it at once).
 */
export class Feed {
  private readonly items: Notable[] = [];
  private readonly listeners: Array<(item: Notable) => void> = [];

  /** @param capacity items kept; default 50. */
  constructor(private readonly capacity = 50) {}

  add(text: string): void {
    const item = { at: Date.now(), text };
    this.items.push(item);
    if (this.items.length > this.capacity) this.items.splice(0, this.items.length - this.capacity);
    for (const listener of this.listeners) listener(item);
  }

  /** The newest `n`, oldest first. */
  recent(n: number): readonly Notable[] {
    return this.items.slice(-n);
  }

  onAdd(listener: (item: Notable) => void): void {
    this.listeners.push(listener);
  }
}

export interface Counts {
  /** Webhook deliveries accepted (answered 200), per source. */
  received: Record<SourceName, number>;
  /** Events written to the database (webhook and backfill events alike). */
  processed: number;
  /** Events put back for another attempt. */
  retries: number;
  deadLetters: number;
  /** Records skipped because the database already had a newer version. */
  stale: number;
  /** Backfill runs completed (the start-up import and each reconciliation), all sources. */
  backfillRuns: number;
  /** Events the backfill runs queued. */
  backfillEvents: number;
}

/** Counts lifecycle events; `detach()` unsubscribes. Dead letters and the first import are notable. */
export class Tally {
  readonly counts: Counts = { received: { teamwork: 0, missive: 0 }, processed: 0, retries: 0, deadLetters: 0, stale: 0, backfillRuns: 0, backfillEvents: 0 };
  private readonly unsubscribe: Array<() => void> = [];
  private readonly imported = new Set<SourceName>();

  constructor(lifecycle: Lifecycle, feed: Feed) {
    const c = this.counts;
    this.unsubscribe.push(
      lifecycle.on('delivery:accepted', ({ source }) => void (c.received[source] += 1)),
      lifecycle.on('event:succeeded', () => void (c.processed += 1)),
      lifecycle.on('event:retrying', () => void (c.retries += 1)),
      lifecycle.on('db:written', ({ stale }) => void (c.stale += stale)),
      lifecycle.on('backfill:page', ({ events }) => void (c.backfillEvents += events)),
      lifecycle.on('event:dead-lettered', ({ source, eventId, error }) => {
        c.deadLetters += 1;
        feed.add(`${label(source)}: event ${eventId.slice(0, 8)} dead-lettered (${error.code}); see \`npm run replay-dlq\``);
      }),
      lifecycle.on('backfill:done', ({ source, events, durationMs }) => {
        c.backfillRuns += 1;
        if (this.imported.has(source)) return;
        this.imported.add(source);
        const what = source === 'teamwork' ? 'tasks' : 'conversations';
        feed.add(`${label(source)}: first backfill queued ${events} ${what} in ${(durationMs / 1000).toFixed(1)} s`);
      }),
    );
  }

  detach(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }
}

export function label(source: SourceName): string {
  return source === 'teamwork' ? 'Teamwork' : 'Missive';
}
