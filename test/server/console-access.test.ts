/**
 * Who can reach the operator console (issue 17): every /dashboard route of the route table off without
 * ADMIN_TOKEN and closed without a session; login (right, wrong, empty, rate-limited), the session
 * cookie's attributes, expiry and forgery; CSRF on actions; the bearer token; nothing secret logged.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LOGIN_FAILURES_PER_WINDOW, LOGIN_WINDOW_MS, SESSION_TTL_MS } from '../../src/server/console/auth.ts';
import { consoleHarness, dashboardRoutes, login, sessionFrom, TOKEN, type ConsoleHarness } from './console-harness.ts';

const open: ConsoleHarness[] = [];
afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
});
async function harness(...args: Parameters<typeof consoleHarness>): Promise<ConsoleHarness> {
  const h = await consoleHarness(...args);
  open.push(h);
  return h;
}

const PUBLIC = new Set(['GET /dashboard/login', 'HEAD /dashboard/login', 'POST /dashboard/login', 'POST /dashboard/logout']);
const form = (token: string) => ({ payload: `token=${encodeURIComponent(token)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });

describe('console access', () => {
  it('lists the console routes from the route table: each answers 404 without ADMIN_TOKEN, and 401 or 303 without a session', async () => {
    const on = await harness();
    const routes = dashboardRoutes(on.app);
    // The table is read, not assumed: the API's routes are all there.
    for (const expected of ['GET /dashboard', 'GET /dashboard/api/overview', 'GET /dashboard/api/events/sample-id', 'POST /dashboard/api/dead-letters/replay', 'POST /dashboard/api/dead-letters/discard', 'POST /dashboard/api/backfill', 'GET /dashboard/api/session']) {
      expect(routes.map((r) => `${r.method} ${r.url}`)).toContain(expected);
    }
    const off = await harness({ token: null });
    for (const { method, url } of [...routes, { method: 'GET', url: '/dashboard/unknown' }, { method: 'POST', url: '/dashboard/api/unknown' }]) {
      const answer = await off.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${TOKEN}` } });
      expect(answer.statusCode, `${method} ${url} with the console off`).toBe(404);
      if (method !== 'HEAD') expect(answer.json(), `${method} ${url}`).toMatchObject({ error: 'CONN_ERR_NOT_FOUND', message: expect.stringContaining('set ADMIN_TOKEN') });
    }
    const forged = 'connector_session=v1.zzzzzzzz.AAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    for (const { method, url } of routes) {
      if (PUBLIC.has(`${method} ${url}`)) continue;
      for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }, { cookie: forged }]) {
        const answer = await on.app.inject({ method: method as 'GET', url, headers });
        if (url.startsWith('/dashboard/api/')) {
          expect(answer.statusCode, `${method} ${url} ${JSON.stringify(headers)}`).toBe(401);
          if (method !== 'HEAD') expect(answer.json()).toMatchObject({ error: 'CONN_ERR_AUTH_REQUIRED' });
        } else {
          expect(answer.statusCode, `${method} ${url}`).toBe(303);
          expect(answer.headers.location).toBe('/dashboard/login');
        }
      }
    }
    // Unknown URLs teach nothing either.
    expect((await on.app.inject({ url: '/dashboard/api/nope' })).statusCode).toBe(401);
    expect((await on.app.inject({ url: '/dashboard/nope' })).statusCode).toBe(303);
  });

  it('logs in with the right token: 303 to /dashboard with an HttpOnly, SameSite=Strict cookie on /dashboard; Secure only over https', async () => {
    const h = await harness();
    const answer = await h.app.inject({ method: 'POST', url: '/dashboard/login', ...form(TOKEN) });
    expect(answer.statusCode).toBe(303);
    expect(answer.headers.location).toBe('/dashboard');
    const cookie = String(answer.headers['set-cookie']);
    expect(cookie).toMatch(/^connector_session=v1\.[0-9a-z]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; /);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).toContain('Path=/dashboard');
    expect(cookie).toContain(`Max-Age=${SESSION_TTL_MS / 1000}`);
    expect(cookie).not.toContain('Secure');
    expect(cookie).not.toContain(TOKEN);
    // X-Forwarded-Proto is the client's word unless a proxy is trusted.
    expect(String((await h.app.inject({ method: 'POST', url: '/dashboard/login', ...form(TOKEN), headers: { ...form(TOKEN).headers, 'x-forwarded-proto': 'https' } })).headers['set-cookie'])).not.toContain('Secure');

    const page = await h.app.inject({ url: '/dashboard', headers: { cookie: sessionFrom(answer)! } });
    expect(page.statusCode).toBe(200);
    const session = await h.app.inject({ url: '/dashboard/api/session', headers: { cookie: sessionFrom(answer)! } });
    const { csrfToken, operator } = session.json() as { csrfToken: string; operator: string };
    expect(operator).toMatch(/^session [A-Za-z0-9_-]{8}$/);
    expect(page.body).toContain(`<meta name="csrf-token" content="${csrfToken}">`);
    expect(h.lines.some((l) => l.msg === 'console login' && l.component === 'console' && l.client === '127.0.0.1')).toBe(true);

    const proxied = await harness({ env: { TRUST_PROXY: 'true' } });
    const overHttps = await proxied.app.inject({ method: 'POST', url: '/dashboard/login', ...form(TOKEN), headers: { ...form(TOKEN).headers, 'x-forwarded-proto': 'https' } });
    expect(String(overHttps.headers['set-cookie'])).toMatch(/; Secure/);
    const overHttp = await proxied.app.inject({ method: 'POST', url: '/dashboard/login', ...form(TOKEN), headers: { ...form(TOKEN).headers, 'x-forwarded-proto': 'http' } });
    expect(String(overHttp.headers['set-cookie'])).not.toContain('Secure');
  });

  it('refuses a wrong or empty token with the form and a message, logs the address and never what was tried', async () => {
    const h = await harness();
    const wrong = await h.app.inject({ method: 'POST', url: '/dashboard/login', ...form('not-the-token-but-close'), remoteAddress: '10.1.2.3' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['content-type']).toMatch(/^text\/html/);
    expect(wrong.body).toContain('That is not the token');
    expect(wrong.body).toContain('<form method="post" action="/dashboard/login">');
    expect(wrong.headers['set-cookie']).toBeUndefined();
    const empty = await h.app.inject({ method: 'POST', url: '/dashboard/login', ...form('') });
    expect(empty.statusCode).toBe(400);
    expect(empty.body).toContain('the form field token was empty');
    const noBody = await h.app.inject({ method: 'POST', url: '/dashboard/login' });
    expect(noBody.statusCode).toBe(400);
    const failed = h.lines.filter((l) => l.msg === 'console login failed: wrong token');
    expect(failed).toEqual([expect.objectContaining({ level: 'warn', client: '10.1.2.3', component: 'console' })]);
    const everything = JSON.stringify(h.lines);
    expect(everything).not.toContain('not-the-token-but-close');
    expect(everything).not.toContain(TOKEN);
  });

  it('limits failed logins per client address: then 429 with Retry-After, even for the right token, until the window passes', async () => {
    const h = await harness({ env: { TRUST_PROXY: 'true' } });
    const from = (address: string) => ({ 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': `203.0.113.9, ${address}` });
    for (let i = 0; i < LOGIN_FAILURES_PER_WINDOW; i++) {
      h.clock.now += 1000;
      expect((await h.app.inject({ method: 'POST', url: '/dashboard/login', payload: 'token=wrong-guess-number-x', headers: from('198.51.100.7') })).statusCode).toBe(401);
    }
    const limited = await h.app.inject({ method: 'POST', url: '/dashboard/login', payload: `token=${TOKEN}`, headers: from('198.51.100.7') });
    expect(limited.statusCode).toBe(429);
    // The first failure leaves the window 60 s after it was made: 56 s from now.
    expect(limited.headers['retry-after']).toBe(String(LOGIN_WINDOW_MS / 1000 - (LOGIN_FAILURES_PER_WINDOW - 1)));
    expect(limited.body).toContain('Too many failed logins');
    expect(limited.headers['set-cookie']).toBeUndefined();
    expect(h.lines.some((l) => l.msg.includes('too many failed logins') && l.client === '198.51.100.7')).toBe(true);
    // Another address (the last X-Forwarded-For entry: what the proxy saw) is not held up.
    expect((await h.app.inject({ method: 'POST', url: '/dashboard/login', payload: `token=${TOKEN}`, headers: from('198.51.100.8') })).statusCode).toBe(303);
    h.clock.now += LOGIN_WINDOW_MS;
    expect((await h.app.inject({ method: 'POST', url: '/dashboard/login', payload: `token=${TOKEN}`, headers: from('198.51.100.7') })).statusCode).toBe(303);
  });

  it('ends a session at its expiry, refuses a tampered one, and logout deletes the cookie', async () => {
    const h = await harness();
    const { cookie } = await login(h.app);
    expect((await h.app.inject({ url: '/dashboard/api/overview', headers: { cookie } })).statusCode).toBe(200);
    const [head, mac] = [cookie.slice(0, cookie.lastIndexOf('.')), cookie.slice(cookie.lastIndexOf('.') + 1)];
    const flipped = `${head}.${mac[0] === 'A' ? 'B' : 'A'}${mac.slice(1)}`;
    expect((await h.app.inject({ url: '/dashboard/api/overview', headers: { cookie: flipped } })).statusCode).toBe(401);
    // A longer expiry with the old MAC is not accepted.
    const [, , nonce] = cookie.split('=')[1]!.split('.');
    expect((await h.app.inject({ url: '/dashboard/api/overview', headers: { cookie: `connector_session=v1.zzzzzzzzz.${nonce}.${mac}` } })).statusCode).toBe(401);
    // A session from another token (another deployment) is not accepted.
    const other = await harness({ token: 'another-token-entirely-0123456789' });
    const foreign = await login(other.app, 'another-token-entirely-0123456789');
    expect((await h.app.inject({ url: '/dashboard/api/overview', headers: { cookie: foreign.cookie } })).statusCode).toBe(401);

    h.clock.now += SESSION_TTL_MS - 1000;
    expect((await h.app.inject({ url: '/dashboard/api/overview', headers: { cookie } })).statusCode).toBe(200);
    h.clock.now += 2000;
    expect((await h.app.inject({ url: '/dashboard/api/overview', headers: { cookie } })).statusCode).toBe(401);
    expect((await h.app.inject({ url: '/dashboard', headers: { cookie } })).headers.location).toBe('/dashboard/login');

    const out = await h.app.inject({ method: 'POST', url: '/dashboard/logout', headers: { cookie } });
    expect(out.statusCode).toBe(303);
    expect(out.headers.location).toBe('/dashboard/login');
    expect(String(out.headers['set-cookie'])).toMatch(/^connector_session=; Max-Age=0; Path=\/dashboard; HttpOnly; SameSite=Strict/);
  });

  it('refuses an action made with a session but without its CSRF token (403); the bearer token needs none', async () => {
    const h = await harness();
    const { cookie, csrf } = await login(h.app);
    const replay = (headers: Record<string, string>) => h.app.inject({ method: 'POST', url: '/dashboard/api/dead-letters/replay', payload: { all: true }, headers });
    for (const headers of [{ cookie } as Record<string, string>, { cookie, 'x-csrf-token': '' }, { cookie, 'x-csrf-token': `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` }, { cookie, 'x-csrf-token': csrf.slice(0, 10) }]) {
      const refused = await replay(headers);
      expect(refused.statusCode, JSON.stringify(headers)).toBe(403);
      expect(refused.json()).toMatchObject({ error: 'CONN_ERR_CSRF', message: expect.stringContaining('x-csrf-token') });
    }
    // Another session's token is not this one's.
    const second = await login(h.app);
    expect((await replay({ cookie, 'x-csrf-token': second.csrf })).statusCode).toBe(403);
    expect(h.lines.filter((l) => l.msg === 'console action refused: no valid CSRF token')).toHaveLength(5);

    expect((await replay({ cookie, 'x-csrf-token': csrf })).json()).toEqual({ replayed: 0, ids: [], missingIds: [], dryRun: false });
    expect((await replay({ authorization: `Bearer ${TOKEN}` })).statusCode).toBe(200);
    expect((await replay({ authorization: `bearer   ${TOKEN}` })).statusCode).toBe(200);
    // GETs need no token.
    expect((await h.app.inject({ url: '/dashboard/api/dead-letters', headers: { cookie } })).statusCode).toBe(200);
    const session = await h.app.inject({ url: '/dashboard/api/session', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(session.json()).toEqual({ operator: 'bearer', csrfToken: null, expiresAt: null });
    expect(session.headers['cache-control']).toBe('no-store');
  });
});
