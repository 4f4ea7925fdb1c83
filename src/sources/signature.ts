/**
 * HMAC-SHA256 signatures over raw delivery bytes, compared in constant time. Vendors differ only in the
 * header and its prefix; that knowledge stays in each source's webhook module.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Lower-case hex HMAC-SHA256 of `body` keyed with `secret`. */
export function hmacSha256Hex(secret: string, body: Buffer | string): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

/**
 * Whether `signatureHex` (any case) is the HMAC-SHA256 of `body` under `secret`. A value that is not
 * exactly 64 hex digits is false, without comparing.
 */
export function hmacSha256Matches(secret: string, body: Buffer, signatureHex: string | undefined): boolean {
  if (signatureHex === undefined) return false;
  const given = signatureHex.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(given)) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(given, 'hex'));
}
