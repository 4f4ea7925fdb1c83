/**
 * URLs as they may appear in logs, error messages and the dead-letter file: query values that look
 * secret are replaced by "[redacted]" and user:password is dropped. A value looks secret when a word
 * of its parameter name says so (token, key, secret, signature, password, auth, credential, session,
 * code) or when it looks like a credential itself (a long unbroken run of letters and digits, as in a
 * pre-signed download URL). Paths are kept: they carry the ids an operator needs.
 */

/** Words that make a parameter name secret, matched against the words of the name (camelCase, kebab, snake). */
const SECRET_WORDS = new Set(['token', 'key', 'apikey', 'secret', 'signature', 'sig', 'password', 'passwd', 'pwd', 'auth', 'authorization', 'credential', 'credentials', 'session', 'code']);
/** 24+ characters of base64/hex alphabet with both letters and digits: an API key, not a date or id. */
const SECRET_VALUE = /^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9+/=_~.-]{24,}$/;
const REDACTED = '[redacted]';

/** True when a query value should not be shown. */
export function looksSecret(name: string, value: string): boolean {
  return nameWords(name).some((w) => SECRET_WORDS.has(w)) || (SECRET_VALUE.test(value) && !isUuidLike(value) && !isDateLike(value));
}

/** "X-Amz-Signature" -> [x, amz, signature]; "apiKey" -> [api, key]; "access_token" -> [access, token]. */
function nameWords(name: string): string[] {
  return name
    .replace(/([a-z\d])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');
}

/** The URL with secret-looking query values redacted and any user:password removed. */
export function safeUrl(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return `${copy.origin}${copy.pathname}${safeQuery(copy)}`;
}

/** Path and query only (for URLs on the client's own base), secret-looking values redacted. */
export function safePathAndQuery(url: URL): string {
  return `${url.pathname}${safeQuery(url)}`;
}

function safeQuery(url: URL): string {
  if (url.search === '') return '';
  const parts: string[] = [];
  for (const [name, value] of url.searchParams) {
    const shown = looksSecret(name, value) ? REDACTED : value;
    parts.push(`${encodeURIComponent(name)}=${shown === REDACTED ? shown : encodeURIComponent(shown)}`);
  }
  return `?${parts.join('&')}`;
}

function isUuidLike(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}

function isDateLike(value: string): boolean {
  return /^\d{4}-\d{2}-\d{2}([T ][\d:.]+)?(Z|[+-]\d{2}:?\d{2})?$/.test(value);
}
