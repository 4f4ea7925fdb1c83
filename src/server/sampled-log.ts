/**
 * Log lines that anyone on the network can cause (a refused delivery, a timed-out connection), sampled
 * so that a flood cannot rotate the log's history away: per reason, the first `perWindow` lines of each
 * window (a minute) are written, the rest are only counted (`onSuppressed`, for metrics), and when the
 * window ends one line says how many were left out.
 *
 * State: a table reason -> { written, suppressed } for the current window, cleared when it ends. Reasons
 * come from a fixed set (source and error code, or the server's own reason), so the table stays small
 * whatever clients send.
 */
import type { Logger } from '../log.ts';

export interface SampledLogOptions {
  /** Lines written per reason and window. Default 10. */
  perWindow?: number;
  /** Window length, ms. Default one minute. */
  windowMs?: number;
  /** Called for each line left out. */
  onSuppressed?: (reason: string) => void;
}

export class SampledLog {
  private readonly perWindow: number;
  private readonly windowMs: number;
  private readonly windows = new Map<string, { written: number; suppressed: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly options: SampledLogOptions = {},
  ) {
    this.perWindow = options.perWindow ?? 10;
    this.windowMs = options.windowMs ?? 60_000;
  }

  /** Writes the line at `level` unless `reason` already had its share of this window. */
  write(level: 'info' | 'warn' | 'error', reason: string, facts: Record<string, unknown>, message: string): void {
    let window = this.windows.get(reason);
    if (window === undefined) {
      window = { written: 0, suppressed: 0 };
      this.windows.set(reason, window);
      this.timer ??= setInterval(() => this.flush(), this.windowMs).unref();
    }
    if (window.written < this.perWindow) {
      window.written++;
      this.log[level](facts, message);
      return;
    }
    window.suppressed++;
    this.options.onSuppressed?.(reason);
  }

  /** Ends the window: one summary line per reason that had lines left out. */
  flush(): void {
    for (const [reason, window] of this.windows) {
      if (window.suppressed > 0) {
        this.log.warn({ reason, suppressed: window.suppressed, windowSeconds: this.windowMs / 1000 }, `${window.suppressed} more lines like "${reason}" were left out of the log in the last ${this.windowMs / 1000} s (counted in connector_log_lines_suppressed_total)`);
      }
    }
    this.windows.clear();
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  close(): void {
    this.flush();
  }
}
