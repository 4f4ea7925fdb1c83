/**
 * Time, as the HTTP core and the rate limiter see it. Everything that waits on purpose (a retry delay,
 * a rate-limit window, a pause after 429) waits on a `Clock`, so tests can replace minutes with a
 * `FakeClock` and assert exact instants. Request timeouts are the exception: they bound a real socket
 * and always run on real timers.
 *
 * `now()` is epoch milliseconds, because vendor headers (Retry-After dates, X-RateLimit-Reset) are
 * wall-clock instants that get compared with it.
 */

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms` milliseconds; rejects with `signal.reason` if the signal aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** setTimeout cannot wait longer than 2^31-1 ms (about 24.8 days); longer sleeps are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      let remaining = Math.max(0, ms);
      let timer: ReturnType<typeof setTimeout>;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const arm = (): void => {
        const step = Math.min(remaining, MAX_TIMER_MS);
        remaining -= step;
        timer = setTimeout(() => {
          if (remaining > 0) return arm();
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }, step);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      arm();
    }),
};

export interface FakeClockOptions {
  /** Starting time, epoch ms. Default 2025-01-01T00:00:00Z. */
  now?: number;
  /**
   * When true, time jumps to the next pending wake-up by itself whenever something sleeps, one timer
   * per event-loop turn (after pending I/O callbacks have had a chance to run). Handy when the code
   * under test sleeps for minutes between real HTTP requests. Default false: time moves only through
   * `advance()`.
   */
  autoAdvance?: boolean;
}

interface FakeTimer {
  at: number;
  seq: number;
  resolve: () => void;
}

/**
 * A clock for tests. Sleepers are kept in order of their wake-up instant (ties in order of arrival);
 * `advance(ms)` moves time forward, waking each due sleeper at its own instant and letting its
 * continuation run (and perhaps sleep again) before time moves further. An aborted sleep leaves the
 * list at once, so `pending()` counts only real waiters: a test can assert nothing was left behind.
 */
export class FakeClock implements Clock {
  private current: number;
  private timers: FakeTimer[] = [];
  private seq = 0;
  private readonly autoAdvance: boolean;
  private autoScheduled = false;

  constructor(options: FakeClockOptions = {}) {
    this.current = options.now ?? Date.UTC(2025, 0, 1);
    this.autoAdvance = options.autoAdvance ?? false;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.timers = this.timers.filter((t) => t !== timer);
        reject(signal?.reason);
      };
      const timer: FakeTimer = {
        at: this.current + Math.max(0, ms),
        seq: this.seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.timers.push(timer);
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      if (this.autoAdvance) this.scheduleAutoAdvance();
    });
  }

  /** Moves time forward by `ms`, waking every sleeper due by then at its own instant. */
  async advance(ms: number): Promise<void> {
    const target = this.current + Math.max(0, ms);
    await settle();
    for (;;) {
      const next = this.timers[0];
      if (next === undefined || next.at > target) break;
      this.timers.shift();
      this.current = Math.max(this.current, next.at);
      next.resolve();
      await settle();
    }
    this.current = target;
  }

  /** Moves time to the next wake-up (if any) and wakes that sleeper. Returns whether one was due. */
  async next(): Promise<boolean> {
    const next = this.timers[0];
    if (next === undefined) return false;
    await this.advance(next.at - this.current);
    return true;
  }

  /** Sleepers not yet woken. */
  pending(): number {
    return this.timers.length;
  }

  private scheduleAutoAdvance(): void {
    if (this.autoScheduled) return;
    this.autoScheduled = true;
    setImmediate(() => {
      this.autoScheduled = false;
      const next = this.timers.shift();
      if (next === undefined) return;
      this.current = Math.max(this.current, next.at);
      next.resolve();
      if (this.timers.length > 0) this.scheduleAutoAdvance();
    });
  }
}

/** Lets queued promise continuations and immediates run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
