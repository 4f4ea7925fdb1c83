/**
 * The vendor's auth state as the HTTP client sees it (src/http/rate-limiter.ts `recordAuth`): a 401 or
 * 403 makes it failing, once; answers that say nothing about credentials (404, 429, 5xx) change
 * nothing; a 2xx accepts them again, once. Against a local HTTP server answering what it is told.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient } from '../../src/http/http-client.ts';
import { RateLimiter, type VendorAuth } from '../../src/http/rate-limiter.ts';
import { createLogger } from '../../src/log.ts';

let server: Server;
let baseUrl = '';
beforeAll(async () => {
  server = createServer((req, res) => {
    const status = Number(/\/status\/(\d+)/.exec(req.url ?? '')?.[1] ?? 200);
    res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('vendor auth state', () => {
  it('401/403 -> failing (once, with the request named), 404/429/500 -> unchanged, 2xx -> accepted again (once)', async () => {
    const limiter = new RateLimiter({});
    const client = new HttpClient({ vendor: 'teamwork', baseUrl, limiter, maxAttempts: 1, defaultRateLimitPauseMs: 10, headers: { authorization: 'Bearer t0ps3cret' }, log: createLogger({ level: 'silent', console: false }) });
    const changes: Array<{ auth: VendorAuth; previous: VendorAuth }> = [];
    limiter.onAuthChange((auth, previous) => changes.push({ auth, previous }));
    const call = (status: number) => client.request('GET', `/status/${status}`).catch(() => {});

    await call(200);
    expect(limiter.authStatus()).toEqual({ failing: false });
    await call(401);
    await call(403);
    await call(404);
    await call(429);
    await call(500);
    expect(limiter.authStatus()).toEqual({ failing: true, status: 401, since: expect.any(Number), detail: 'GET /status/401 answered 401' });
    expect(changes).toHaveLength(1);
    await call(204);
    expect(limiter.authStatus()).toEqual({ failing: false });
    await call(200);
    expect(changes.map((c) => c.auth.failing)).toEqual([true, false]);
    expect(JSON.stringify(changes)).not.toContain('t0ps3cret');
  });
});
