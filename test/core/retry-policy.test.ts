import { describe, expect, it } from 'vitest';
import { BASE_DELAY, MAX_DELAY, calculateDelay, parseRetryAfter } from '../../src/retry-policy.ts';

describe('retry policy', () => {
  it('grows exponentially with jitter in the upper half, capped', () => {
    expect(calculateDelay(1, undefined, () => 0)).toBe(BASE_DELAY / 2);
    expect(calculateDelay(1, undefined, () => 0.999999)).toBe(BASE_DELAY);
    expect(calculateDelay(3, undefined, () => 0)).toBe(2 * BASE_DELAY);
    expect(calculateDelay(3, undefined, () => 0.999999)).toBe(4 * BASE_DELAY);
    expect(calculateDelay(50, undefined, () => 0.999999)).toBe(MAX_DELAY);
  });

  it('waits at least what the other side asked for', () => {
    expect(calculateDelay(1, 30_000, () => 0.5)).toBe(30_000);
    expect(calculateDelay(10, 10, () => 0)).toBeGreaterThan(10);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-28T12:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter('Sat, 28 Nov 2026 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sat, 28 Nov 2026 11:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});
