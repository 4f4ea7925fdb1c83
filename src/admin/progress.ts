/**
 * Backfill progress for a terminal: on a TTY one line, rewritten in place with `\r` (at most every
 * `redrawMs`), with a bar, counts and rate; elsewhere (a pipe, a log file) one plain line per page.
 *
 * The bar measures time covered, not items (no vendor says how many items will come): the share of
 * the window from `since` to the start of the run that the pages have reached. A source that walks
 * newest first, or has not said how far it got, shows a moving marker instead.
 */
import type { SourceName } from '../model.ts';
import type { BackfillProgress } from '../sync/backfill.ts';
import { formatCount, formatDuration, plural } from './render.ts';

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  /** Terminal width, characters. */
  columns?: number;
}

export interface ProgressViewOptions {
  /** Least time between two redraws of the TTY line, ms. Default 100. */
  redrawMs?: number;
  /** Bar width, characters. Default 24. */
  barWidth?: number;
  now?: () => number;
}

export class BackfillProgressView {
  private readonly tty: boolean;
  private readonly redrawMs: number;
  private readonly barWidth: number;
  private readonly now: () => number;
  /** A TTY line is on screen and not yet ended with a newline. */
  private open = false;
  private lastDraw = 0;
  private source: SourceName | null = null;
  private since: Date | null = null;
  private startedAt = 0;
  private last: BackfillProgress | null = null;
  /** The source's backfill completed: its whole window is covered (100%, whatever its newest item). */
  private complete = false;

  constructor(
    private readonly out: ProgressOutput,
    options: ProgressViewOptions = {},
  ) {
    this.tty = out.isTTY === true;
    this.redrawMs = options.redrawMs ?? 100;
    this.barWidth = options.barWidth ?? 24;
    this.now = options.now ?? Date.now;
  }

  start(source: SourceName, since: Date): void {
    this.end();
    this.source = source;
    this.since = since;
    this.startedAt = this.now();
    this.last = null;
    this.complete = false;
    if (this.tty) this.draw(true);
    else this.out.write(`${source}: backfill from ${since.toISOString()}\n`);
  }

  page(progress: BackfillProgress): void {
    this.last = progress;
    if (this.tty) this.draw(false);
    else this.out.write(`${this.line(false)}\n`);
  }

  /**
   * The source's backfill completed. The bar then reads 100%: the window up to the start of the run is
   * covered even though its newest item is older than that (it stopped at 99% before).
   */
  done(): void {
    this.complete = true;
    this.end();
  }

  /** Ends the TTY line (drawing the final state), so that what follows starts on its own line. */
  end(): void {
    if (!this.open) return;
    this.draw(true);
    this.out.write('\n');
    this.open = false;
  }

  private draw(force: boolean): void {
    const t = this.now();
    if (!force && t - this.lastDraw < this.redrawMs) return;
    this.lastDraw = t;
    // A pseudo-terminal without a size reports 0 columns: assume the classic 80.
    const columns = this.out.columns !== undefined && this.out.columns > 0 ? this.out.columns : 80;
    const width = Math.max(20, columns - 1);
    let text = this.line(true);
    if (text.length > width) text = text.slice(0, width);
    this.out.write(`\r\x1b[K${text}`);
    this.open = true;
  }

  private line(withBar: boolean): string {
    const p = this.last;
    const elapsed = this.now() - this.startedAt;
    const events = p?.events ?? 0;
    const rate = elapsed > 0 ? (events * 1000) / elapsed : 0;
    // Most telling first: a narrow terminal cuts the end of the line.
    const facts = [plural(events, 'event'), `${formatCount(rate)}/s`, plural(p?.pages ?? 0, 'page'), formatDuration(elapsed)];
    if (p?.newestUpdate != null) facts.push(`through ${p.newestUpdate.toISOString().replace(/:\d\d\.\d{3}Z$/, 'Z')}`);
    return withBar ? [`${this.source ?? ''} ${this.bar()}`, ...facts].join('  ') : `${this.source ?? ''}: ${facts.join(', ')}`;
  }

  /** `[#########---------------]  37%`, or a moving marker when the share is unknown. */
  private bar(): string {
    const w = this.barWidth;
    const fraction = this.fraction();
    if (fraction === null) {
      const pos = (this.last?.pages ?? 0) % (w - 2);
      return `[${'-'.repeat(pos)}<=>${'-'.repeat(Math.max(0, w - 3 - pos))}]     `;
    }
    const filled = Math.round(fraction * w);
    return `[${'#'.repeat(filled)}${'-'.repeat(w - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
  }

  private fraction(): number | null {
    if (this.complete) return 1;
    return coveredFraction(this.since, this.startedAt, this.last?.newestUpdate ?? null);
  }
}

/**
 * The share (0..1) of the window from `since` to `startedAt` (ms) that a backfill's pages have reached
 * (`newest`: the newest update seen), or null when unknown (nothing seen yet, or an empty window).
 */
export function coveredFraction(since: Date | null, startedAt: number, newest: Date | null): number | null {
  if (newest === null || since === null) return null;
  const span = startedAt - since.getTime();
  if (span <= 0) return null;
  return Math.min(1, Math.max(0, (newest.getTime() - since.getTime()) / span));
}
