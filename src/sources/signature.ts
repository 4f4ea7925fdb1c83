/**
 * HMAC-SHA256 signatures over raw delivery bytes, compared in constant time. Vendors differ only in the
 * header and its prefix; that knowledge stays in each source's webhook module.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ConnectorError } from '../errors.ts';

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
  if (given.length !== 64) return false;
  // Hex decoding stops at the first character that is not a hex digit: 32 bytes from 64 characters
  // means all were.
  const bytes = Buffer.from(given, 'hex');
  if (bytes.length !== 32) return false;
  return timingSafeEqual(createHmac('sha256', secret).update(body).digest(), bytes);
}

/**
 * The refusal of a delivery to a source with no secret configured: secure by default, the endpoint takes
 * nothing it cannot authenticate unless the operator opted out with WEBHOOKS_ALLOW_UNSIGNED=true.
 */
export function missingSecret(setting: string): ConnectorError {
  return new ConnectorError(
    'CONN_ERR_WEBHOOK_SIGNATURE',
    `no ${setting} is set: this endpoint refuses deliveries; set it (or WEBHOOKS_ALLOW_UNSIGNED=true to accept unsigned deliveries, not recommended)`,
    { status: 401, details: { variable: setting } },
  );
}
