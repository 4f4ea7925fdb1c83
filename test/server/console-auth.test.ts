/**
 * The console's access pieces without HTTP: sessions (forged, truncated, expired, from another token),
 * CSRF tokens bound to their session, the bearer header's forms, the client address and https as
 * TRUST_PROXY allows, the login limiter's window; and payload redaction.
 */
import { describe, expect, it } from 'vitest';
import { redact } from '../../src/admin/redact.ts';
import { ConsoleAuth, LoginLimiter, cameOverHttps, clientAddress, readCookie } from '../../src/server/console/auth.ts';

const TOKEN = 'unit-test-admin-token-0123456789';

describe('ConsoleAuth', () => {
  it('accepts its own sessions until they expire, and nothing altered, truncated or made with another token', () => {
    let now = 1_800_000_000_000;
    const auth = new ConsoleAuth({ token: TOKEN, now: () => now });
    const { value, nonce, expiresAt } = auth.newSession();
    expect(auth.verifySession(value)).toEqual({ kind: 'session', nonce, expiresAt });
    const parts = value.split('.');
    for (const bad of [undefined, '', value.slice(0, -1), `${value}A`, parts.slice(0, 3).join('.'), `v2.${parts.slice(1).join('.')}`, [parts[0], (expiresAt + 1).toString(36), parts[2], parts[3]].join('.'), 'x'.repeat(500)]) {
      expect(auth.verifySession(bad), String(bad)).toBeNull();
    }
    expect(new ConsoleAuth({ token: `${TOKEN}x`, now: () => now }).verifySession(value)).toBeNull();
    now = expiresAt - 1;
    expect(auth.verifySession(value)).not.toBeNull();
    now = expiresAt;
    expect(auth.verifySession(value)).toBeNull();
  });

  it('binds a CSRF token to its session and its token', () => {
    const auth = new ConsoleAuth({ token: TOKEN });
    const a = auth.newSession();
    const b = auth.newSession();
    const csrf = auth.csrfToken(a.nonce);
    expect(auth.csrfMatches(a.nonce, csrf)).toBe(true);
    expect(auth.csrfMatches(b.nonce, csrf)).toBe(false);
    expect(auth.csrfMatches(a.nonce, undefined)).toBe(false);
    expect(auth.csrfMatches(a.nonce, csrf.slice(1))).toBe(false);
    expect(new ConsoleAuth({ token: `${TOKEN}x` }).csrfMatches(a.nonce, csrf)).toBe(false);
    // A session MAC is not a CSRF token (each key has one use).
    expect(auth.csrfMatches(a.nonce, a.value.split('.')[3])).toBe(false);
  });

  it('takes a bearer header with the token only', () => {
    const auth = new ConsoleAuth({ token: TOKEN });
    expect(auth.verifyBearer(`Bearer ${TOKEN}`)).toEqual({ kind: 'bearer' });
    expect(auth.verifyBearer(`bearer\t${TOKEN} `)).toEqual({ kind: 'bearer' });
    for (const bad of [undefined, '', TOKEN, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN} extra`, `Basic ${TOKEN}`, 'Bearer ']) expect(auth.verifyBearer(bad), String(bad)).toBeNull();
  });
});

describe('request facts', () => {
  const request = (headers: Record<string, string>, encrypted = false) => ({ headers, remoteAddress: '10.0.0.5', encrypted });
  it('reads X-Forwarded-* only with TRUST_PROXY, taking the address the proxy saw', () => {
    const forwarded = request({ 'x-forwarded-for': '1.1.1.1, 203.0.113.7', 'x-forwarded-proto': 'https' });
    expect(clientAddress(forwarded, false)).toBe('10.0.0.5');
    expect(clientAddress(forwarded, true)).toBe('203.0.113.7');
    expect(clientAddress(request({}), true)).toBe('10.0.0.5');
    expect(cameOverHttps(forwarded, false)).toBe(false);
    expect(cameOverHttps(forwarded, true)).toBe(true);
    expect(cameOverHttps(request({ 'x-forwarded-proto': 'http, https' }), true)).toBe(false);
    expect(cameOverHttps(request({}, true), false)).toBe(true);
  });
  it('reads one cookie among several', () => {
    expect(readCookie({ cookie: 'a=1; connector_session=v1.x.y.z; b=2' }, 'connector_session')).toBe('v1.x.y.z');
    expect(readCookie({ cookie: 'xconnector_session=1' }, 'connector_session')).toBeUndefined();
    expect(readCookie({}, 'connector_session')).toBeUndefined();
  });
});

describe('LoginLimiter', () => {
  it('refuses an address after its failures fill the window, until the oldest leaves it; a success forgets them', () => {
    let now = 0;
    const limiter = new LoginLimiter(() => now, 3, 60_000);
    for (const t of [0, 10_000, 20_000]) {
      now = t;
      expect(limiter.retryAfterMs('a')).toBe(0);
      limiter.fail('a');
    }
    expect(limiter.retryAfterMs('a')).toBe(40_000);
    expect(limiter.retryAfterMs('b')).toBe(0);
    now = 60_001;
    expect(limiter.retryAfterMs('a')).toBe(0);
    limiter.fail('a');
    expect(limiter.retryAfterMs('a')).toBe(9_999);
    limiter.succeed('a');
    expect(limiter.retryAfterMs('a')).toBe(0);
  });
});

describe('redact', () => {
  it('replaces the values of secret-named keys at any depth, leaves the rest and the input unchanged', () => {
    const input = { id: 1, token: 'abc', apiKey: 'k', api_key: 'k2', 'X-Hook-Signature': 's', nested: [{ password: 'p', webhookSecret: 'w', Authorization: 'Bearer x', name: 'keep' }], cookie: 'c', emptyToken: '', nullSecret: null };
    expect(redact(input)).toEqual({ id: 1, token: '[redacted]', apiKey: '[redacted]', api_key: '[redacted]', 'X-Hook-Signature': '[redacted]', nested: [{ password: '[redacted]', webhookSecret: '[redacted]', Authorization: '[redacted]', name: 'keep' }], cookie: '[redacted]', emptyToken: '', nullSecret: null });
    expect(input.token).toBe('abc');
  });
  it('cuts nesting too deep to show instead of overflowing the stack', () => {
    let deep: unknown = { token: 'x' };
    for (let i = 0; i < 5000; i++) deep = { a: deep };
    const out = JSON.stringify(redact(deep));
    expect(out).toContain('[too deep]');
    expect(out).not.toContain('"x"');
  });
});
