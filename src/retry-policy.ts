/**
 * One retry policy for everything that tries again: the dispatcher between attempts at an event, and
 * the HTTP core between requests to a vendor. Delays grow exponentially from `BASE_DELAY`, are capped at
 * `MAX_DELAY`, and carry full jitter over their upper half so that many waiters do not wake together.
 * When the other side said how long to wait (Retry-After, a rate-limit reset), we wait at least that.
 *
 * The resulting table (attempt -> delay range) is in docs/reliability.md.
 */

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

/** Delay before the second attempt, before jitter. */
export const BASE_DELAY = 1 * SECOND;
/** No delay is longer than this, except one the other side asked for. */
export const MAX_DELAY = 5 * MINUTE;

/**
 * Milliseconds to wait after `attempt` (1-based) failed.
 * @param attempt the attempt that just failed, from 1
 * @param retryAfterMs how long the other side asked us to wait, if it said
 * @param random a source of randomness in [0, 1), for tests
 */
export function calculateDelay(attempt: number, retryAfterMs?: number, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** exponent);
  const jittered = Math.round(ceiling / 2 + random() * (ceiling / 2));
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > jittered) {
    return Math.ceil(retryAfterMs);
  }
  return jittered;
}

/**
 * Reads a Retry-After header value: delta-seconds or an HTTP date. Returns milliseconds from `now`,
 * or undefined when the header is absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * SECOND);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}
