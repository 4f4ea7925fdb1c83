/**
 * Who may use the operator console, and how that is proved. Nothing here knows a route.
 *
 * Words:
 * - operator: whoever holds ADMIN_TOKEN. There are no users: one token, one role.
 * - session: a cookie (`connector_session`) a login hands out, proving the token was shown. Stateless:
 *   `v1.<expiry>.<nonce>.<mac>`, the expiry in ms since the epoch (base 36), a random nonce, and an
 *   HMAC-SHA256 over both with a key derived from ADMIN_TOKEN. Any process that has the token accepts
 *   it (hosts behind a load balancer need nothing shared); changing ADMIN_TOKEN ends every session.
 *   Logging out deletes the cookie; the cookie itself stays valid until its expiry (SESSION_TTL_MS), as
 *   with any stateless session.
 * - CSRF token: an HMAC of the session's nonce with another derived key. A console action made with a
 *   session must carry it in `x-csrf-token`; a page of another site can send the cookie (not with
 *   SameSite=Strict in today's browsers, but that is one defence) and cannot read the token.
 * - bearer: `Authorization: Bearer <ADMIN_TOKEN>`, for scripts. No cookie is involved, so no CSRF token.
 *
 * Every comparison of a secret is constant-time: the token through SHA-256 digests (equal length
 * whatever was sent), a MAC against the MAC it should be. The token is never logged, nor what a failed
 * login tried.
 *
 * Failed logins are limited per client address (LoginLimiter): LOGIN_FAILURES_PER_WINDOW in
 * LOGIN_WINDOW_MS; past that every login from the address (even with the right token) is answered 429
 * with Retry-After until its oldest failure leaves the window.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { HOUR, MINUTE } from '../../retry-policy.ts';

export const SESSION_COOKIE = 'connector_session';
/** How long a session lasts after its login: 12 hours. */
export const SESSION_TTL_MS = 12 * HOUR;
/** Failed logins a client address may make in LOGIN_WINDOW_MS before it is refused (429). */
export const LOGIN_FAILURES_PER_WINDOW = 5;
export const LOGIN_WINDOW_MS = MINUTE;
/** Client addresses the login limiter remembers at most; the one with the oldest failure is forgotten first. */
const LOGIN_LIMITER_MAX_CLIENTS = 10_000;

/**
 * The start-up line for a process that serves HTTP without ADMIN_TOKEN (src/main.ts logs it, info).
 */
export const CONSOLE_OFF_NOTICE = 'the operator console (/dashboard) is off: set ADMIN_TOKEN (at least 16 characters) to turn it on, then open /dashboard and log in with the token';

/** The start-up line when the console is on, naming where it is (never the token). */
export function consoleOnNotice(baseUrl: string): string {
  return `the operator console is at ${baseUrl}/dashboard (log in with ADMIN_TOKEN)`;
}

/** Who did something through the console, for its log lines: `session <first 8 of the nonce>` or `bearer`. */
export type Operator = { kind: 'session'; nonce: string; expiresAt: number } | { kind: 'bearer' };

export function describeOperator(operator: Operator): string {
  return operator.kind === 'bearer' ? 'bearer' : `session ${operator.nonce.slice(0, 8)}`;
}

export interface ConsoleAuthOptions {
  /** ADMIN_TOKEN. */
  token: string;
  now?: () => number;
}

export class ConsoleAuth {
  private readonly tokenDigest: Buffer;
  private readonly sessionKey: Buffer;
  private readonly csrfKey: Buffer;
  private readonly now: () => number;

  constructor(options: ConsoleAuthOptions) {
    this.tokenDigest = sha256(options.token);
    // Two keys from the token, each for one use, so a MAC of one kind is never a valid MAC of the other.
    this.sessionKey = createHmac('sha256', options.token).update('connector console session v1').digest();
    this.csrfKey = createHmac('sha256', options.token).update('connector console csrf v1').digest();
    this.now = options.now ?? Date.now;
  }

  /** Whether `given` is the token (constant-time). */
  tokenMatches(given: string): boolean {
    return timingSafeEqual(sha256(given), this.tokenDigest);
  }

  /** A new session's cookie value. */
  newSession(): { value: string; nonce: string; expiresAt: number } {
    const expiresAt = this.now() + SESSION_TTL_MS;
    const nonce = randomBytes(18).toString('base64url');
    const body = `v1.${expiresAt.toString(36)}.${nonce}`;
    return { value: `${body}.${this.mac(this.sessionKey, body)}`, nonce, expiresAt };
  }

  /** The session a cookie value proves, or null (malformed, forged, or expired). */
  verifySession(value: string | undefined): Operator | null {
    if (value === undefined || value.length > 200) return null;
    const parts = value.split('.');
    if (parts.length !== 4 || parts[0] !== 'v1') return null;
    const [, expiry, nonce, mac] = parts as [string, string, string, string];
    if (!/^[0-9a-z]{1,12}$/.test(expiry) || !/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) return null;
    if (!this.macMatches(this.sessionKey, `v1.${expiry}.${nonce}`, mac)) return null;
    const expiresAt = parseInt(expiry, 36);
    if (!(expiresAt > this.now())) return null;
    return { kind: 'session', nonce, expiresAt };
  }

  /** The CSRF token of a session (by its nonce). */
  csrfToken(nonce: string): string {
    return this.mac(this.csrfKey, nonce);
  }

  /** Whether `given` is the session's CSRF token (constant-time). */
  csrfMatches(nonce: string, given: string | undefined): boolean {
    return given !== undefined && this.macMatches(this.csrfKey, nonce, given);
  }

  /** The operator an `Authorization` header proves (a bearer carrying the token), or null. */
  verifyBearer(authorization: string | undefined): Operator | null {
    if (authorization === undefined) return null;
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (match === null) return null;
    return this.tokenMatches(match[1] as string) ? { kind: 'bearer' } : null;
  }

  private mac(key: Buffer, text: string): string {
    return createHmac('sha256', key).update(text).digest('base64url');
  }

  private macMatches(key: Buffer, text: string, given: string): boolean {
    const expected = createHmac('sha256', key).update(text).digest();
    // Compared as digests of equal length: a given value of another length is not a short cut.
    return timingSafeEqual(sha256(given), sha256(expected.toString('base64url')));
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The value of one cookie in a Cookie header, or undefined. */
export function readCookie(headers: IncomingHttpHeaders, name: string): string | undefined {
  const header = headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The Set-Cookie value of a session (or, with `value` null, one that deletes it). */
export function sessionCookie(value: string | null, options: { secure: boolean; maxAgeMs?: number }): string {
  const attributes = ['Path=/dashboard', 'HttpOnly', 'SameSite=Strict'];
  if (options.secure) attributes.push('Secure');
  if (value === null) return [`${SESSION_COOKIE}=`, 'Max-Age=0', ...attributes].join('; ');
  return [`${SESSION_COOKIE}=${value}`, `Max-Age=${Math.floor((options.maxAgeMs ?? SESSION_TTL_MS) / 1000)}`, ...attributes].join('; ');
}

/** What the request says of itself, read as TRUST_PROXY allows. */
export interface RequestFacts {
  headers: IncomingHttpHeaders;
  /** The socket's remote address. */
  remoteAddress: string | undefined;
  /** Whether the socket is TLS. */
  encrypted: boolean;
}

/**
 * Whether the client reached us over https: with a trusted proxy, its X-Forwarded-Proto (the first
 * value: the proxy nearest the client wrote it); otherwise the socket.
 */
export function cameOverHttps(request: RequestFacts, trustProxy: boolean): boolean {
  if (trustProxy) {
    const proto = headerValue(request.headers['x-forwarded-proto']);
    if (proto !== undefined) return proto.split(',')[0]?.trim().toLowerCase() === 'https';
  }
  return request.encrypted;
}

/**
 * The client's address: with a trusted proxy, the last X-Forwarded-For entry (the address our proxy
 * saw: the entries before it are what the client claimed); otherwise the socket's.
 */
export function clientAddress(request: RequestFacts, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = headerValue(request.headers['x-forwarded-for']);
    const last = forwarded?.split(',').at(-1)?.trim();
    if (last !== undefined && last !== '') return last;
  }
  return request.remoteAddress ?? 'unknown';
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

/**
 * Failed logins per client address, in a sliding window. State: for each address that failed within
 * the window, the times of its failures (at most LOGIN_FAILURES_PER_WINDOW kept); addresses whose
 * failures all left the window are forgotten as they are met, and past LOGIN_LIMITER_MAX_CLIENTS the
 * address with the oldest failure is dropped, so a flood of addresses cannot grow the map without end.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly limit = LOGIN_FAILURES_PER_WINDOW,
    private readonly windowMs = LOGIN_WINDOW_MS,
  ) {}

  /** Milliseconds until `client` may try again, or 0 when it may now. */
  retryAfterMs(client: string): number {
    const times = this.recent(client);
    if (times.length < this.limit) return 0;
    return Math.max(1, (times[0] as number) + this.windowMs - this.now());
  }

  fail(client: string): void {
    const times = this.recent(client);
    times.push(this.now());
    while (times.length > this.limit) times.shift();
    this.failures.delete(client);
    this.failures.set(client, times);
    if (this.failures.size > LOGIN_LIMITER_MAX_CLIENTS) this.prune();
  }

  /** A successful login forgets the address's failures. */
  succeed(client: string): void {
    this.failures.delete(client);
  }

  private recent(client: string): number[] {
    const since = this.now() - this.windowMs;
    const times = (this.failures.get(client) ?? []).filter((t) => t > since);
    if (times.length === 0) this.failures.delete(client);
    return times;
  }

  private prune(): void {
    const since = this.now() - this.windowMs;
    for (const [client, times] of this.failures) if (!times.some((t) => t > since)) this.failures.delete(client);
    while (this.failures.size > LOGIN_LIMITER_MAX_CLIENTS) {
      let oldest: string | null = null;
      let at = Infinity;
      for (const [client, times] of this.failures) {
        const last = times.at(-1) ?? 0;
        if (last < at) {
          at = last;
          oldest = client;
        }
      }
      if (oldest === null) break;
      this.failures.delete(oldest);
    }
  }
}

/** What the console's access check found for a request it let through. */
export interface ConsoleSession {
  operator: Operator;
  /** The CSRF token the page embeds (`<meta name="csrf-token">`) and actions send; null for a bearer. */
  csrfToken: string | null;
}

const sessions = new WeakMap<object, ConsoleSession>();

/** Records the access check's finding for a request (the console's onRequest hook). */
export function setConsoleSession(request: object, session: ConsoleSession): void {
  sessions.set(request, session);
}

/**
 * The session of a request under /dashboard that passed the access check (a page route uses it to
 * embed the CSRF token); undefined for the public routes (the login page).
 */
export function consoleSessionOf(request: object): ConsoleSession | undefined {
  return sessions.get(request);
}
