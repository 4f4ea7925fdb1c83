/**
 * A budget of requests shared by everything in the process that talks to one vendor (or one Airtable
 * base): at most `concurrency` in flight, and at most `limit` started within any `intervalMs` for each
 * window. Missive, for example, is 5 concurrent, 300 per 60 s and 900 per 15 min, all at once.
 */
import { ConnectorError } from '../errors.ts';
import { systemClock, type Clock } from './clock.ts';

/** At most `limit` acquisitions start within any `intervalMs` milliseconds. */
export interface RateWindow {
  limit: number;
  intervalMs: number;
}

export interface RateLimiterOptions {
  /** Most requests in flight at once. Default: unlimited. */
  concurrency?: number;
  /** Sliding windows, all enforced (e.g. Missive: 300 per 60 s and 900 per 15 min). Default: none. */
  windows?: RateWindow[];
  /** Time source for windows and pauses. Default `systemClock`. */
  clock?: Clock;
}

export interface RateLimiterStats {
  /** Acquired and not yet released. */
  inFlight: number;
  /** Callers waiting in `acquire`. */
  waiting: number;
  /** Clock time before which nobody acquires, when a pause is in force; otherwise undefined. */
  pausedUntil: number | undefined;
  /** Per window, the acquisitions that started within its last `intervalMs`. */
  windows: Array<{ limit: number; intervalMs: number; used: number }>;
}

/**
 * The start times of the last `limit` acquisitions, oldest first, in a ring. A new acquisition fits
 * the window exactly when fewer than `limit` are recorded or the oldest is at least `intervalMs` old:
 * then no span of `intervalMs` ever holds more than `limit` starts.
 */
class SlidingWindow {
  private readonly starts: number[] = [];
  private head = 0;

  constructor(
    readonly limit: number,
    readonly intervalMs: number,
  ) {}

  /** The earliest clock time at which one more acquisition fits. */
  freeAt(): number {
    if (this.starts.length < this.limit) return -Infinity;
    return (this.starts[this.head] as number) + this.intervalMs;
  }

  record(at: number): void {
    if (this.starts.length < this.limit) {
      this.starts.push(at);
      return;
    }
    this.starts[this.head] = at;
    this.head = (this.head + 1) % this.limit;
  }

  used(now: number): number {
    let count = 0;
    for (const start of this.starts) if (now - start < this.intervalMs) count++;
    return count;
  }
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * Waiters are served strictly first in, first out: everyone needs the same thing (one slot in every
 * window and one concurrency slot), so the head of the queue blocks those behind it and nobody starves.
 *
 * States of the head waiter, re-evaluated by `pump()` after every acquire, release, pause, abort and
 * wake-up:
 * - concurrency full            -> wait; the next `release` pumps again (no timer).
 * - a window full, or paused    -> one timer until the latest of (each full window's oldest start +
 *                                  intervalMs, pausedUntil); on waking, check again, because timers can
 *                                  fire a millisecond early and a pause may have been extended.
 * - otherwise                   -> granted now: the start time goes into every window, inFlight + 1.
 * At most one timer is armed at a time, and it is cancelled when the queue empties, so an idle limiter
 * holds no timer.
 */
export class RateLimiter {
  private readonly clock: Clock;
  private readonly concurrency: number;
  private readonly windows: SlidingWindow[];
  private readonly queue: Waiter[] = [];
  private inFlight = 0;
  private pausedUntilMs = -Infinity;
  /** The armed wake-up: when it fires and how to cancel it. */
  private timer: { at: number; cancel: AbortController } | undefined;

  constructor(options: RateLimiterOptions) {
    this.clock = options.clock ?? systemClock;
    this.concurrency = options.concurrency ?? Infinity;
    if (!(this.concurrency >= 1)) {
      throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `rate limiter concurrency must be at least 1, got ${this.concurrency}`);
    }
    this.windows = (options.windows ?? []).map((w) => {
      if (!Number.isInteger(w.limit) || w.limit < 1 || !(w.intervalMs > 0)) {
        throw new ConnectorError(
          'CONN_ERR_CONFIG_INVALID',
          `rate limiter window needs an integer limit >= 1 and intervalMs > 0, got ${w.limit} per ${w.intervalMs} ms`,
        );
      }
      return new SlidingWindow(w.limit, w.intervalMs);
    });
  }

  /**
   * Waits for a slot in every window and a concurrency slot; returns the release function (calling it
   * twice releases once). If `signal` aborts first, the caller leaves the queue and the promise rejects
   * with `signal.reason`.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const index = this.queue.indexOf(waiter);
          if (index === -1) return;
          this.queue.splice(index, 1);
          reject(signal.reason);
          this.pump();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
      this.pump();
    });
  }

  /** Nobody acquires before `untilMs` (clock time): used after a 429 so the whole process waits. */
  pauseUntil(untilMs: number): void {
    if (!(untilMs > this.pausedUntilMs)) return;
    this.pausedUntilMs = untilMs;
    this.pump();
  }

  /** Snapshot for metrics/tests: in flight, waiting, pause, and used slots per window. */
  stats(): RateLimiterStats {
    const now = this.clock.now();
    return {
      inFlight: this.inFlight,
      waiting: this.queue.length,
      pausedUntil: this.pausedUntilMs > now ? this.pausedUntilMs : undefined,
      windows: this.windows.map((w) => ({ limit: w.limit, intervalMs: w.intervalMs, used: w.used(now) })),
    };
  }

  /** Grants waiters in order while they fit; otherwise arranges to be called again when they might. */
  private pump(): void {
    for (;;) {
      const head = this.queue[0];
      if (head === undefined) {
        this.disarm();
        return;
      }
      if (this.inFlight >= this.concurrency) {
        // Only a release frees a slot; a window timer would wake for nothing.
        this.disarm();
        return;
      }
      const now = this.clock.now();
      const readyAt = Math.max(this.pausedUntilMs, ...this.windows.map((w) => w.freeAt()));
      if (readyAt > now) {
        this.arm(readyAt);
        return;
      }
      this.queue.shift();
      if (head.onAbort !== undefined) head.signal?.removeEventListener('abort', head.onAbort);
      for (const w of this.windows) w.record(now);
      this.inFlight++;
      head.resolve(this.releaser());
    }
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight--;
      this.pump();
    };
  }

  private arm(at: number): void {
    if (this.timer !== undefined) {
      if (this.timer.at === at) return;
      this.disarm();
    }
    const cancel = new AbortController();
    const timer = { at, cancel };
    this.timer = timer;
    this.clock.sleep(at - this.clock.now(), cancel.signal).then(
      () => {
        if (this.timer !== timer) return;
        this.timer = undefined;
        this.pump();
      },
      () => {
        // Cancelled by disarm(): a newer timer (or none) is in charge.
      },
    );
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    this.timer.cancel.abort();
    this.timer = undefined;
  }
}
