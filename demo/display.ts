/**
 * What the person running the demo sees. Three modes:
 * - `live` (stdout is a terminal): notable things scroll by as lines, and a status block stays at the
 *   bottom, redrawn in place (ANSI cursor moves) on every `status()`. Lines are cut to the terminal's
 *   width so that the block never wraps (wrapping would break the cursor arithmetic).
 * - `plain` (piped, CI, a file): notable things as lines, and the status as one line every
 *   `plainEveryMs`; nothing is ever rewritten.
 * - `quiet`: warnings only; the final summary is printed by the caller.
 * State: the number of block lines on screen (`drawn`), erased before any line is written above it.
 */
import type { Counts } from './tally.ts';
import type { RowCounts } from './stack.ts';

export type DisplayMode = 'live' | 'plain' | 'quiet';

export interface StatusData {
  elapsedMs: number;
  counts: Counts;
  /** Null until first read. */
  rows: RowCounts | null;
  queue: { pending: number; inFlight: number; delayed: number } | null;
  reconciliation: { runs: number; everyMs: number; nextAt: number | null };
}

export interface DisplayOptions {
  mode: DisplayMode;
  /** Where everything goes. Default process.stdout. */
  out?: NodeJS.WriteStream;
  /** Plain mode: one status line this often, ms. Default 5,000. */
  plainEveryMs?: number;
  /** ANSI colours (live mode only). Default: on unless NO_COLOR is set. */
  color?: boolean;
}

const ESC = '\x1b[';

export class Display {
  readonly mode: DisplayMode;
  private readonly out: NodeJS.WriteStream;
  private readonly plainEveryMs: number;
  private readonly color: boolean;
  private drawn = 0;
  private lastBlock: string[] = [];
  private lastPlainAt = 0;
  private closed = false;

  constructor(options: DisplayOptions) {
    this.mode = options.mode;
    this.out = options.out ?? process.stdout;
    this.plainEveryMs = options.plainEveryMs ?? 5_000;
    this.color = options.mode === 'live' && (options.color ?? process.env.NO_COLOR === undefined);
  }

  /** A line that stays: something notable happened. Not shown in quiet mode. */
  event(text: string, at = Date.now()): void {
    if (this.mode === 'quiet' || this.closed) return;
    this.above(`${this.dim(clock(at))}  ${text}`);
  }

  /** A warning or error from the connector; shown in every mode. */
  warn(text: string, at = Date.now()): void {
    this.above(`${this.dim(clock(at))}  ${this.paint('33', `! ${text}`)}`);
  }

  /** A line of text as it is (start-up information). */
  text(text = ''): void {
    this.above(text);
  }

  /** Redraws the status block (live) or prints a status line when one is due (plain). */
  status(data: StatusData): void {
    if (this.closed) return;
    if (this.mode === 'live') {
      this.lastBlock = statusBlock(data).map((line, i) => (i === 0 ? this.paint('1', line) : line));
      this.erase();
      this.draw();
    } else if (this.mode === 'plain' && Date.now() - this.lastPlainAt >= this.plainEveryMs) {
      this.lastPlainAt = Date.now();
      this.out.write(`${statusLine(data)}\n`);
    }
  }

  /** Takes the status block off the screen; later lines are written plainly. */
  close(): void {
    this.erase();
    this.closed = true;
    this.lastBlock = [];
  }

  private above(line: string): void {
    this.erase();
    this.out.write(`${line}\n`);
    this.draw();
  }

  private erase(): void {
    if (this.drawn === 0) return;
    this.out.write(`${ESC}${this.drawn}A\r${ESC}0J`);
    this.drawn = 0;
  }

  private draw(): void {
    if (this.mode !== 'live' || this.closed || this.lastBlock.length === 0) return;
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    this.out.write(`${this.lastBlock.map((line) => fit(line, width)).join('\n')}\n`);
    this.drawn = this.lastBlock.length;
  }

  private dim(text: string): string {
    return this.paint('2', text);
  }

  private paint(code: string, text: string): string {
    return this.color ? `${ESC}${code}m${text}${ESC}0m` : text;
  }
}

/** HH:MM:SS, local time. */
export function clock(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** 83_000 -> "1:23"; 3_723_000 -> "1:02:03". */
export function duration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function rowsText(rows: RowCounts | null): string {
  if (rows === null) return 'reading…';
  return `tasks ${rows.tasks} · emails ${rows.emails}${rows.attachments === null ? '' : ` · attachments ${rows.attachments}`}`;
}

function nextText(r: StatusData['reconciliation']): string {
  if (r.nextAt === null) return '';
  return ` · next in ${Math.max(0, Math.ceil((r.nextAt - Date.now()) / 1000))} s`;
}

/**
 * The status as a block of lines: the live block, or (`final`) the summary printed after the stop,
 * which leaves out what no longer applies (the queue, the next reconciliation).
 */
export function statusBlock(data: StatusData, options: { title?: string; final?: boolean } = {}): string[] {
  const c = data.counts;
  const q = data.queue;
  const r = data.reconciliation;
  const lines = [
    options.title ?? `── connector demo · running ${duration(data.elapsedMs)} · Ctrl-C stops everything ──`,
    `  webhooks received   Teamwork ${c.received.teamwork} · Missive ${c.received.missive}`,
    `  events processed    ${c.processed} · retries ${c.retries} · dead letters ${c.deadLetters} · stale skipped ${c.stale}`,
    `  database rows       ${rowsText(data.rows)}`,
  ];
  if (options.final !== true) lines.push(`  queue               ${q === null ? 'reading…' : `pending ${q.pending} · in flight ${q.inFlight} · waiting to retry ${q.delayed}`}`);
  lines.push(`  reconciliation      every ${Math.round(r.everyMs / 1000)} s · ${r.runs} run${r.runs === 1 ? '' : 's'} · ${c.backfillEvents} events queued${options.final === true ? '' : nextText(r)}`);
  return lines;
}

/** The status as one line (plain mode). */
export function statusLine(data: StatusData): string {
  const c = data.counts;
  const rows = data.rows === null ? 'rows: reading' : `rows: tasks ${data.rows.tasks}, emails ${data.rows.emails}`;
  return (
    `[${duration(data.elapsedMs)}] received Teamwork ${c.received.teamwork}, Missive ${c.received.missive} | processed ${c.processed} | ` +
    `retries ${c.retries} | dead letters ${c.deadLetters} | ${rows} | queue pending ${data.queue?.pending ?? '?'}`
  );
}

/** Cuts `line` to `width` visible characters (ANSI colour codes do not count), ending in "…". */
export function fit(line: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  const visible = line.replace(/\x1b\[[0-9;]*m/g, '');
  if ([...visible].length <= width) return line;
  // A cut line loses its colours; the block's lines are short enough that this is rare.
  return `${[...visible].slice(0, width - 1).join('')}…`;
}
