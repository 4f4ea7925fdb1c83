/**
 * What a vendor's response headers say about waiting. Missive sends `Retry-After` (seconds) and
 * `X-RateLimit-Reset` (epoch seconds) on 429; Teamwork sends `x-ratelimit-*` (Desk spells it
 * `X-Rate-Limit-*`); Airtable sends neither. All results are milliseconds from `now`.
 */
import { parseRetryAfter } from '../retry-policy.ts';

/**
 * Reads an X-RateLimit-Reset value into milliseconds from `now`. Epoch seconds as documented; a number
 * too big for seconds (>= 1e12) is taken as epoch milliseconds; one too small to be a date at all
 * (< 1e9, before 2001) as seconds from now, which some APIs send. A reset already past (clock skew)
 * says nothing usable: undefined.
 */
export function parseRateLimitReset(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  const n = Number(value.trim());
  if (!Number.isFinite(n) || n <= 0) return undefined;
  if (n < 1e9) return Math.ceil(n * 1000);
  const at = n >= 1e12 ? n : n * 1000;
  return at > now ? Math.ceil(at - now) : undefined;
}

function resetHeader(headers: Headers): string | null {
  return headers.get('x-ratelimit-reset') ?? headers.get('x-rate-limit-reset');
}

/** How long the vendor asked us to wait: Retry-After first, else the rate-limit reset. */
export function vendorWaitMs(headers: Headers, now: number): number | undefined {
  return parseRetryAfter(headers.get('retry-after'), now) ?? parseRateLimitReset(resetHeader(headers), now);
}

/**
 * When a response (of any status) says the budget is spent — remaining 0 with a reset in the future —
 * the milliseconds until that reset; otherwise undefined. Lets the client pause before the 429.
 */
export function exhaustedForMs(headers: Headers, now: number): number | undefined {
  const remaining = headers.get('x-ratelimit-remaining') ?? headers.get('x-rate-limit-remaining');
  if (remaining === null || remaining.trim() !== '0') return undefined;
  return parseRateLimitReset(resetHeader(headers), now);
}
