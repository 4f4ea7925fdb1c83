/**
 * Payload redaction for what the console shows (an event's payload, a dead letter's): the value of
 * every key that names a secret becomes "[redacted]", at any depth. The keys are those src/log.ts
 * redacts by path (apiKey, token, password, secret, authorization, cookie, the vendors' signature
 * headers), matched by name here because a payload's shape is the vendor's, not ours: `api_key`,
 * `webhookSecret`, `x-hook-signature`, `access_token`, `Authorization`.
 *
 * The input is never changed; the copy is plain JSON-ready data. Nesting deeper than MAX_DEPTH (a
 * payload stored before the door's depth limit) is cut with "[too deep]", so that showing a payload
 * can never overflow the stack.
 */

export const REDACTED = '[redacted]';
const MAX_DEPTH = 64;

/** Key names whose values are secrets: compared without case, `-` and `_` (so `api_key` = `apiKey`). */
const SECRET_KEY = /(token|secret|password|passwd|authorization|apikey|signature|cookie|credential|privatekey)/;

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key.toLowerCase().replace(/[-_\s]/g, ''));
}

export function redact(value: unknown): unknown {
  return copy(value, 0);
}

function copy(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value.toISOString();
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((item) => copy(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    out[key] = isSecretKey(key) && item !== null && item !== '' ? REDACTED : copy(item, depth + 1);
  }
  return out;
}
