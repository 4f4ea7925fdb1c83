import { describe, expect, it } from 'vitest';
import { exhaustedForMs, parseRateLimitReset, vendorWaitMs } from '../../src/http/rate-limit-headers.ts';
import { looksSecret, safePathAndQuery, safeUrl } from '../../src/http/safe-url.ts';

const NOW = Date.UTC(2025, 0, 1, 12, 0, 0);

describe('rate-limit headers', () => {
  it('reads X-RateLimit-Reset as epoch seconds, epoch ms when huge, or seconds from now when small', () => {
    expect(parseRateLimitReset(String(NOW / 1000 + 42), NOW)).toBe(42_000);
    expect(parseRateLimitReset(String(NOW + 1500), NOW)).toBe(1500);
    expect(parseRateLimitReset('30', NOW)).toBe(30_000);
    expect(parseRateLimitReset(String(NOW / 1000 - 5), NOW)).toBeUndefined(); // already past
    expect(parseRateLimitReset('soon', NOW)).toBeUndefined();
    expect(parseRateLimitReset('', NOW)).toBeUndefined();
    expect(parseRateLimitReset(null, NOW)).toBeUndefined();
  });

  it('prefers Retry-After (seconds or date) over the reset, and reads the dashed spelling', () => {
    expect(vendorWaitMs(new Headers({ 'retry-after': '7', 'x-ratelimit-reset': String(NOW / 1000 + 60) }), NOW)).toBe(7000);
    expect(vendorWaitMs(new Headers({ 'retry-after': new Date(NOW + 90_000).toUTCString() }), NOW)).toBe(90_000);
    expect(vendorWaitMs(new Headers({ 'x-rate-limit-reset': String(NOW / 1000 + 60) }), NOW)).toBe(60_000);
    expect(vendorWaitMs(new Headers(), NOW)).toBeUndefined();
  });

  it('sees a spent budget only when remaining is 0 and a reset is given', () => {
    const reset = String(NOW / 1000 + 10);
    expect(exhaustedForMs(new Headers({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset }), NOW)).toBe(10_000);
    expect(exhaustedForMs(new Headers({ 'x-ratelimit-remaining': '3', 'x-ratelimit-reset': reset }), NOW)).toBeUndefined();
    expect(exhaustedForMs(new Headers({ 'x-ratelimit-remaining': '0' }), NOW)).toBeUndefined();
  });
});

describe('safe URLs', () => {
  it('redacts query values whose names or shapes look secret, keeps the rest and the path', () => {
    const url = new URL(
      'https://user:pw@files.example.com/att/123/report.pdf?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1&apiKey=k&access_token=t&page=2&updatedAfter=2025-01-01T00:00:00Z&id=0f8fad5b-d9cb-469f-a165-70867728950e&blob=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2Rl&assigneeUserIds=5',
    );
    const shown = safeUrl(url);
    expect(shown).toBe(
      'https://files.example.com/att/123/report.pdf?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]&apiKey=[redacted]&access_token=[redacted]&page=2&updatedAfter=2025-01-01T00%3A00%3A00Z&id=0f8fad5b-d9cb-469f-a165-70867728950e&blob=[redacted]&assigneeUserIds=5',
    );
    expect(safePathAndQuery(new URL('https://x.test/v1/a?token=s3cr3t&limit=50'))).toBe('/v1/a?token=[redacted]&limit=50');
    expect(looksSecret('author', 'jane')).toBe(false);
    expect(looksSecret('Signature', 'x')).toBe(true);
  });
});
