import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { FakeClock } from '../../src/http/clock.ts';
import { RateLimiter } from '../../src/http/rate-limiter.ts';
import { ApiError, HttpClient, type HttpClientOptions } from '../../src/http/http-client.ts';
import { createLogger } from '../../src/log.ts';
import { closedPort, holdUnlessClosed, startTestServer, type TestServer } from './test-server.ts';

const T0 = Date.UTC(2025, 0, 1);
const TOKEN = 'Bearer SECRET-TOKEN-1234567890';

const TASKS = { tasks: [{ id: 1, name: 'Write the customer letter' }], meta: { page: { pageOffset: 0 } } };
const taskList = z.object({ tasks: z.array(z.object({ id: z.number(), name: z.string() })) });

let clock: FakeClock;
let server: TestServer;
/** Per-key request counters for routes that fail the first N times. */
const counters = new Map<string, number>();
let tasksStatus = 200;

function count(key: string): number {
  const n = (counters.get(key) ?? 0) + 1;
  counters.set(key, n);
  return n;
}

beforeAll(async () => {
  server = await startTestServer(
    (app) => {
      app.get('/projects/api/v3/tasks.json', async (_req, reply) => {
        if (tasksStatus !== 200) return reply.code(tasksStatus).send({ errors: [{ title: 'unavailable' }] });
        return TASKS;
      });
      const echo = async (req: { method: string; query: unknown; headers: Record<string, unknown>; body: unknown }) => ({
        method: req.method,
        query: req.query,
        body: req.body ?? null,
        authorization: req.headers.authorization ?? null,
        contentType: req.headers['content-type'] ?? null,
        accept: req.headers.accept ?? null,
        userAgent: req.headers['user-agent'] ?? null,
      });
      app.all('/echo', echo);
      app.all('/v1/echo', echo);
      app.post('/empty-201', async (_req, reply) => reply.code(201).send());
      app.delete('/empty-204', async (_req, reply) => reply.code(204).send());
      app.get('/not-json', async (_req, reply) => reply.type('text/html').send('<html><body>Login required</body></html>'));
      app.all<{ Params: { code: string }; Querystring: { kind?: string } }>('/status/:code', async (req, reply) => {
        const code = Number(req.params.code);
        if (req.query.kind === 'html') return reply.code(code).type('text/html').send(`<html>${'x'.repeat(1000)}</html>`);
        if (req.query.kind === 'empty') return reply.code(code).send();
        return reply.code(code).send({ error: { type: 'INVALID_VALUE', message: `status ${code}` } });
      });
      app.all<{ Params: { key: string }; Querystring: { fail?: string } }>('/flaky/:key', async (req, reply) => {
        const n = count(`flaky:${req.params.key}`);
        if (n <= Number(req.query.fail ?? 0)) return reply.code(503).send({ error: 'busy' });
        return { ok: true, attempt: n };
      });
      app.all<{ Params: { key: string }; Querystring: { fail?: string; mode?: string; wait?: string } }>(
        '/limited/:key',
        async (req, reply) => {
          const n = count(`limited:${req.params.key}`);
          if (n > Number(req.query.fail ?? 0)) return { ok: true, attempt: n };
          const wait = Number(req.query.wait ?? 0);
          const now = clock.now();
          if (req.query.mode === 'seconds') reply.header('retry-after', String(wait));
          if (req.query.mode === 'date') reply.header('retry-after', new Date(now + wait * 1000).toUTCString());
          if (req.query.mode === 'reset') reply.header('x-ratelimit-reset', String(Math.floor(now / 1000) + wait));
          if (req.query.mode === 'reset-ms') reply.header('x-ratelimit-reset', String(now + wait * 1000));
          return reply.code(429).send({ error: 'Too Many Requests' });
        },
      );
      app.get('/spent-429', async (_req, reply) =>
        reply.code(429).header('retry-after', '30').header('x-ratelimit-remaining', '0').header('x-ratelimit-reset', String(Math.floor(clock.now() / 1000) + 30)).send({ error: 'Too Many Requests' }),
      );
      app.get('/maintenance', async (_req, reply) => reply.code(503).header('retry-after', '120').send({ error: 'maintenance' }));
      app.get('/spent', async (_req, reply) =>
        reply.header('x-ratelimit-remaining', '0').header('x-ratelimit-reset', String(Math.floor(clock.now() / 1000) + 15)).send({ ok: true }),
      );
      app.all('/slow', async (req, reply) => {
        await holdUnlessClosed(req.raw.socket, 2000);
        return reply.send({ late: true });
      });
      app.all('/reset', async (req, reply) => {
        req.raw.socket.destroy();
        return reply.hijack();
      });
      app.get<{ Querystring: { size: string; chunked?: string } }>('/download', async (req, reply) => {
        const body = Buffer.alloc(Number(req.query.size), 7);
        if (req.query.chunked !== undefined) {
          reply.hijack();
          reply.raw.writeHead(200, { 'content-type': 'application/octet-stream' });
          for (let i = 0; i < body.length; i += 256) reply.raw.write(body.subarray(i, i + 256));
          reply.raw.end();
          return reply;
        }
        return reply.type('application/octet-stream').send(body);
      });
    },
    { now: () => clock.now() },
  );
});

afterAll(async () => {
  await server.close();
});

afterEach(() => {
  tasksStatus = 200;
  server.seen.length = 0;
  expect(clock.pending()).toBe(0); // nothing left sleeping
});

function client(options: Partial<HttpClientOptions> = {}): HttpClient {
  return new HttpClient({
    vendor: 'teamwork',
    baseUrl: server.url,
    headers: { Authorization: TOKEN },
    maxAttempts: 3,
    clock,
    ...options,
  });
}

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

function fresh(autoAdvance = true): void {
  clock = new FakeClock({ now: T0, autoAdvance });
}

describe('HttpClient success', () => {
  beforeAll(() => fresh());

  it('returns JSON validated by the schema, sending the query, auth and accept headers', async () => {
    const response = await client().get('/projects/api/v3/tasks.json', {
      query: { page: 2, include: 'tags', skipped: undefined, flag: true },
      schema: taskList,
    });
    expect(response.status).toBe(200);
    expect(response.data.tasks[0]?.name).toBe('Write the customer letter');
    expect(response.headers.get('content-type')).toMatch(/application\/json/);
    const [seen] = server.seen;
    expect(seen?.url).toBe('/projects/api/v3/tasks.json?page=2&include=tags&flag=true');
    expect(seen?.headers.authorization).toBe(TOKEN);
    expect(seen?.headers.accept).toBe('application/json');
  });

  it('sends a JSON body and keeps the base URL path', async () => {
    const response = await client({ baseUrl: `${server.url}/v1/` }).request<Record<string, unknown>>('post', 'echo', { body: { a: 1, b: 'two' }, headers: { 'X-Extra': 'yes' } });
    expect(response.data).toMatchObject({ method: 'POST', body: { a: 1, b: 'two' }, contentType: 'application/json', authorization: TOKEN, userAgent: 'teamwork-missive-connector' });
    expect(server.seen[0]?.url).toBe('/v1/echo');
    expect(server.seen[0]?.headers['x-extra']).toBe('yes');
  });

  it('reads an empty 201 or 204 as null', async () => {
    expect((await client().request('POST', '/empty-201', { body: {} })).data).toBeNull();
    const deleted = await client().request('DELETE', '/empty-204');
    expect(deleted).toMatchObject({ status: 204, data: null });
  });

  it('follows a same-origin full URL (a vendor "next" link) with auth, and refuses a foreign one', async () => {
    await client().get(`${server.url}/echo?page=3`);
    expect(server.seen[0]?.headers.authorization).toBe(TOKEN);
    await expect(client().get('http://127.0.0.2:9/echo')).rejects.toThrow(/refusing to send credentials/);
  });

  it('does not carry credentials across a redirect to another origin', async () => {
    const other = await startTestServer((app) => app.get('/landing', async (req) => ({ authorization: req.headers.authorization ?? null })));
    try {
      const hop = await startTestServer((app) => app.get('/hop', async (_req, reply) => reply.redirect(`${other.url}/landing`)));
      try {
        const response = await client({ baseUrl: hop.url }).get<{ authorization: string | null }>('/hop');
        expect(hop.seen[0]?.headers.authorization).toBe(TOKEN);
        expect(response.data.authorization).toBeNull();
      } finally {
        await hop.close();
      }
    } finally {
      await other.close();
    }
  });

  it('refuses settings that would never send or never stop', () => {
    expect(() => client({ maxAttempts: 0 })).toThrow(/maxAttempts >= 1/);
    expect(() => client({ timeoutMs: 0 })).toThrow(/timeoutMs > 0/);
    expect(() => client({ baseUrl: 'not a url' })).toThrow(/base URL is not a URL/);
  });

  it('sends no client headers to an absolute URL', async () => {
    const response = await client({ baseUrl: 'http://127.0.0.1:9/api' }).get<{ authorization: string | null }>(`${server.url}/echo`, { absolute: true });
    expect(response.data.authorization).toBeNull();
  });

  it('pauses the limiter when a response says the budget is spent', async () => {
    const limiter = new RateLimiter({ clock });
    await client({ limiter }).get('/spent');
    expect(limiter.stats().pausedUntil).toBe(clock.now() + 15_000);
  });
});

describe('HttpClient bad responses', () => {
  beforeAll(() => fresh());

  it('rejects JSON of the wrong shape without quoting its values', async () => {
    const wrong = z.object({ tasks: z.array(z.object({ id: z.string() })) });
    const err = await failure(client().get('/projects/api/v3/tasks.json', { schema: wrong }));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_BAD_RESPONSE', retryable: false, status: 200, attempts: 1 });
    expect(err.message).toContain('teamwork GET /projects/api/v3/tasks.json answered 200 with JSON of an unexpected shape: tasks.0.id');
    expect(err.message).not.toContain('customer letter');
    expect(server.seen).toHaveLength(1);
  });

  it('rejects a body that is not JSON, once, with an excerpt', async () => {
    const err = await failure(client().get('/not-json'));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_BAD_RESPONSE', retryable: false, attempts: 1 });
    expect(err.message).toContain('not JSON (text/html');
    expect(err.bodyExcerpt).toBe('<html><body>Login required</body></html>');
    expect(server.seen).toHaveLength(1);
  });
});

describe('HttpClient status classes', () => {
  beforeAll(() => fresh());

  const cases: Array<[number, string, boolean, number]> = [
    [400, 'CONN_ERR_HTTP_CLIENT', false, 1],
    [401, 'CONN_ERR_HTTP_AUTH', false, 1],
    [403, 'CONN_ERR_HTTP_AUTH', false, 1],
    [404, 'CONN_ERR_HTTP_NOT_FOUND', false, 1],
    [409, 'CONN_ERR_HTTP_CLIENT', false, 1],
    [422, 'CONN_ERR_HTTP_CLIENT', false, 1],
    [500, 'CONN_ERR_HTTP_SERVER', true, 3],
    [502, 'CONN_ERR_HTTP_SERVER', true, 3],
    [503, 'CONN_ERR_HTTP_SERVER', true, 3],
    [504, 'CONN_ERR_HTTP_SERVER', true, 3],
    [507, 'CONN_ERR_HTTP_SERVER', true, 3],
  ];

  it.each(cases)('%i -> %s (retryable %s, %i attempts)', async (status, code, retryable, attempts) => {
    const err = await failure(client().get(`/status/${status}`));
    expect(err).toMatchObject({ code, retryable, status, attempts, vendor: 'teamwork', method: 'GET' });
    expect(err.url).toBe(`${server.url}/status/${status}`);
    expect(server.seen).toHaveLength(attempts);
    expect(err.body).toEqual({ error: { type: 'INVALID_VALUE', message: `status ${status}` } });
    expect(err.details).toMatchObject({ vendor: 'teamwork', attempts });
    expect(err.message).toMatch(new RegExp(`^teamwork GET /status/${status} answered ${status}`));
    expect(err.message).not.toContain('SECRET');
  });

  it('keeps a non-JSON error body as an excerpt of 500 characters', async () => {
    const err = await failure(client().get('/status/400', { query: { kind: 'html' } }));
    expect(err.bodyExcerpt).toHaveLength(500);
    expect(err.bodyExcerpt?.startsWith('<html>xxx')).toBe(true);
    expect(err.body).toBeUndefined();
  });

  it('says what failed, how often, in one line an operator can act on', async () => {
    tasksStatus = 503;
    const err = await failure(client({ maxAttempts: 5 }).get('/projects/api/v3/tasks.json', { query: { updatedAfter: '2025-01-01' } }));
    expect(err.message).toBe('teamwork GET /projects/api/v3/tasks.json answered 503 after 5 attempts');
    const auth = await failure(client().get('/status/401'));
    expect(auth.message).toBe('teamwork GET /status/401 answered 401 (credentials refused: check the API token and its permissions)');
  });
});

describe('HttpClient retries', () => {
  beforeAll(() => fresh());

  it('retries 5xx with growing, jittered delays on the clock, then succeeds', async () => {
    const response = await client({ maxAttempts: 5 }).get<{ attempt: number }>('/flaky/a', { query: { fail: 2 } });
    expect(response.data.attempt).toBe(3);
    const at = server.hits('/flaky/a').map((r) => r.at);
    expect(at).toHaveLength(3);
    const [a = 0, b = 0, c = 0] = at;
    expect(b - a).toBeGreaterThanOrEqual(500);
    expect(b - a).toBeLessThanOrEqual(1000);
    expect(c - b).toBeGreaterThanOrEqual(1000);
    expect(c - b).toBeLessThanOrEqual(2000);
  });

  it('takes a limiter slot for every attempt, retries included', async () => {
    const limiter = new RateLimiter({ clock, windows: [{ limit: 1, intervalMs: 10_000 }] });
    const start = clock.now();
    await client({ limiter }).get('/flaky/limited', { query: { fail: 1 } });
    await client({ limiter }).get('/echo');
    expect(server.seen.map((r) => r.at - start)).toEqual([0, 10_000, 20_000]);
  });

  it('does not repeat a POST that may have reached the server, unless told it is idempotent', async () => {
    const post = await failure(client().request('POST', '/flaky/b', { query: { fail: 5 }, body: {} }));
    expect(post).toMatchObject({ code: 'CONN_ERR_HTTP_SERVER', retryable: true, attempts: 1 });
    expect(post.message).toBe('teamwork POST /flaky/b answered 503; not repeated: POST is not idempotent and may have reached the server');
    const idempotent = await client().request<{ attempt: number }>('POST', '/flaky/c', { query: { fail: 1 }, body: {}, idempotent: true });
    expect(idempotent.data.attempt).toBe(2);
    const reset = await failure(client().request('PATCH', '/reset', { body: {} }));
    expect(reset).toMatchObject({ code: 'CONN_ERR_HTTP_NETWORK', attempts: 1 });
    expect(server.hits('/reset')).toHaveLength(1);
  });

  it('repeats a POST after 429, which says it was not processed', async () => {
    const response = await client().request<{ attempt: number }>('POST', '/limited/post', { query: { fail: 1, mode: 'seconds', wait: 2 }, body: {} });
    expect(response.data.attempt).toBe(2);
  });
});

describe('HttpClient 429', () => {
  it('honours Retry-After seconds and pauses every caller on the shared limiter', async () => {
    fresh(false);
    const limiter = new RateLimiter({ clock, concurrency: 10 });
    const http = client({ limiter });
    const first = http.get<{ attempt: number }>('/limited/s', { query: { fail: 1, mode: 'seconds', wait: 30 } });
    await vi.waitFor(() => expect(limiter.stats().pausedUntil).toBe(T0 + 30_000));
    const other = http.get('/echo');
    await clock.advance(29_999);
    expect(server.hits('/echo')).toHaveLength(0);
    expect(limiter.stats().waiting).toBe(1);
    await clock.advance(1);
    expect((await first).data.attempt).toBe(2);
    await other;
    expect(server.hits('/echo')[0]?.at).toBe(T0 + 30_000);
    expect(server.hits('/limited/s')[1]?.at).toBe(T0 + 30_000);
  });

  it('honours a Retry-After HTTP date', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    await client({ limiter }).get('/limited/d', { query: { fail: 1, mode: 'date', wait: 45 } });
    const [a, b] = server.hits('/limited/d');
    expect((b?.at ?? 0) - (a?.at ?? 0)).toBe(45_000);
  });

  it('honours X-RateLimit-Reset in epoch seconds and in epoch milliseconds', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    await client({ limiter }).get('/limited/r', { query: { fail: 1, mode: 'reset', wait: 20 } });
    const [a, b] = server.hits('/limited/r');
    expect((b?.at ?? 0) - (a?.at ?? 0)).toBe(20_000);
    await client({ limiter }).get('/limited/rm', { query: { fail: 1, mode: 'reset-ms', wait: 25 } });
    const [c, d] = server.hits('/limited/rm');
    expect((d?.at ?? 0) - (c?.at ?? 0)).toBe(25_000);
  });

  it('pauses for defaultRateLimitPauseMs when the vendor gives no wait', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    const err = await failure(client({ limiter, maxAttempts: 2, defaultRateLimitPauseMs: 12_000 }).get('/limited/n', { query: { fail: 9 } }));
    // The call ends while the vendor is paused: not the request's fault, so it says until when.
    expect(err).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', retryable: true, attempts: 2, retryAfterMs: 12_000 });
    const [a, b] = server.hits('/limited/n');
    expect((b?.at ?? 0) - (a?.at ?? 0)).toBe(12_000);
    expect(limiter.stats().pausedUntil).toBe(clock.now() + 12_000);
  });

  it('carries the vendor wait on the final error', async () => {
    fresh();
    const err = await failure(client({ vendor: 'missive' }).get('/limited/f', { query: { fail: 9, mode: 'seconds', wait: 7 } }));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_RATE_LIMITED', retryable: true, attempts: 3, retryAfterMs: 7000, status: 429 });
    expect(err.message).toBe('missive GET /limited/f answered 429 (rate limited) after 3 attempts; missive asked to wait 7 s');
  });

  it('hands a wait longer than maxWaitMs back to the dispatcher instead of sleeping', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    const err = await failure(client({ limiter }).get('/limited/long', { query: { fail: 9, mode: 'seconds', wait: 600 } }));
    expect(err).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', retryable: true, attempts: 1, retryAfterMs: 600_000, status: 429 });
    expect(err.message).toBe(`teamwork GET /limited/long not sent before ${new Date(T0 + 600_000).toISOString()}: teamwork is paused by the vendor: answered 429, asking to wait 600 s (last attempt: answered 429 (rate limited))`);
    expect(limiter.stats().pausedUntil).toBe(T0 + 600_000);
    expect(clock.now()).toBe(T0);
  });

  it('without a limiter, ends with the 429 itself and the wait it asked for', async () => {
    fresh();
    const err = await failure(client().get('/limited/bare', { query: { fail: 9, mode: 'seconds', wait: 600 } }));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_RATE_LIMITED', retryable: true, attempts: 1, retryAfterMs: 600_000 });
    expect(err.message).toContain('not waiting 600 s in-call (limit 300 s)');
  });
});

describe("HttpClient and the vendor's state", () => {
  it('refuses at once, without a request, while the vendor is paused longer than maxWaitMs', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    limiter.pauseUntil(T0 + 120_000, 'answered 429, asking to wait 120 s');
    const err = await failure(client({ limiter, maxWaitMs: 10_000 }).get('/echo'));
    expect(err).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', retryable: true, attempts: 0, retryAfterMs: 120_000 });
    expect(err.message).toContain('teamwork is paused by the vendor: answered 429, asking to wait 120 s');
    expect(server.seen).toHaveLength(0);
    expect(limiter.stats().waiting).toBe(0);
  });

  it('waits out a pause within maxWaitMs', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    limiter.pauseUntil(T0 + 5_000, 'answered 429, asking to wait 5 s');
    const pending = client({ limiter, maxWaitMs: 10_000 }).get('/echo');
    await vi.waitFor(() => expect(limiter.stats().waiting).toBe(1));
    await clock.advance(5_000);
    await expect(pending).resolves.toMatchObject({ status: 200 });
  });

  it('refuses a wait for a full window longer than maxWaitMs, saying which window', async () => {
    fresh();
    const limiter = new RateLimiter({ clock, windows: [{ limit: 1, intervalMs: 60_000 }] });
    await client({ limiter, maxWaitMs: 10_000 }).get('/echo');
    const err = await failure(client({ limiter, maxWaitMs: 10_000 }).get('/echo'));
    expect(err).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', retryAfterMs: 60_000 });
    expect(err.message).toContain('the budget of 1 requests per 60 s is used up');
  });

  it('a 429 that also says "remaining 0" is paused as a 429, with its own reason', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    await failure(client({ limiter, maxWaitMs: 10_000 }).get('/spent-429'));
    expect(limiter.status()).toMatchObject({ state: 'paused', until: T0 + 30_000, reason: 'answered 429, asking to wait 30 s' });
  });

  it('a 5xx with Retry-After pauses the vendor as a 429 does', async () => {
    fresh();
    const limiter = new RateLimiter({ clock });
    const err = await failure(client({ limiter, maxWaitMs: 10_000 }).get('/maintenance'));
    expect(err).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', retryAfterMs: 120_000, status: 503 });
    expect(limiter.status()).toMatchObject({ state: 'paused', until: T0 + 120_000, reason: 'answered 503, asking to wait 120 s' });
  });

  it('takes a vendor that fails on every path for down: calls end not the event\'s fault, and later ones send nothing', async () => {
    fresh();
    const limiter = new RateLimiter({ clock, outage: { failures: 4, firstPauseMs: 30_000 } });
    const changes: string[] = [];
    limiter.onStateChange((state, previous) => changes.push(`${previous.state}->${state.state}`));
    // Two entities, each failing twice (maxAttempts 2): four failures in a row on two paths.
    const first = await failure(client({ limiter, maxAttempts: 2, maxWaitMs: 10_000 }).get('/flaky/a', { query: { fail: 99 } }));
    expect(first.code).toBe('CONN_ERR_HTTP_SERVER');
    const second = await failure(client({ limiter, maxAttempts: 2, maxWaitMs: 10_000 }).get('/flaky/b', { query: { fail: 99 } }));
    expect(second).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', retryAfterMs: 30_000, status: 503 });
    expect(second.message).toContain('teamwork is unavailable: 4 requests failed in a row, the last: GET /flaky/b answered 503');
    expect(changes).toEqual(['ok->unavailable']);
    const before = server.seen.length;
    const third = await failure(client({ limiter, maxWaitMs: 10_000 }).get('/flaky/c'));
    expect(third).toMatchObject({ code: 'CONN_ERR_VENDOR_PAUSED', attempts: 0 });
    expect(server.seen.length).toBe(before);
    // After the pause a request goes (a probe); it is answered: the vendor is up again.
    await clock.advance(30_000);
    await expect(client({ limiter, maxWaitMs: 10_000 }).get('/echo')).resolves.toMatchObject({ status: 200 });
    expect(changes).toEqual(['ok->unavailable', 'unavailable->ok']);
  });

  it('never takes the vendor for down for one path that keeps failing', async () => {
    fresh();
    const limiter = new RateLimiter({ clock, outage: { failures: 3 } });
    for (let i = 0; i < 3; i++) {
      const err = await failure(client({ limiter, maxAttempts: 2 }).get('/status/500'));
      expect(err.code).toBe('CONN_ERR_HTTP_SERVER');
    }
    expect(limiter.status()).toEqual({ state: 'ok' });
    expect(limiter.stats()).toMatchObject({ requests: 6, failed: 6, rateLimited: 0 });
  });
});

describe('HttpClient network failures', () => {
  beforeAll(() => fresh());

  it('times out an attempt that gets no answer, and retries it', async () => {
    const started = performance.now();
    const err = await failure(client({ timeoutMs: 150, maxAttempts: 2 }).get('/slow'));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_TIMEOUT', retryable: true, attempts: 2 });
    expect(err.message).toBe('teamwork GET /slow did not answer within 150 ms after 2 attempts');
    expect(server.hits('/slow')).toHaveLength(2);
    expect(performance.now() - started).toBeLessThan(1900); // did not wait for the server's 2 s
  });

  it('retries a connection reset by the server', async () => {
    const err = await failure(client().get('/reset'));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_NETWORK', retryable: true, attempts: 3, status: undefined });
    expect(err.message).toMatch(/^teamwork GET \/reset lost the connection \(UND_ERR_SOCKET: other side closed\) after 3 attempts$/);
    expect(server.hits('/reset')).toHaveLength(3);
  });

  it('retries a refused connection, even for a POST, since nothing was sent', async () => {
    const port = await closedPort();
    const http = client({ baseUrl: `http://127.0.0.1:${port}` });
    const get = await failure(http.get('/anything'));
    expect(get).toMatchObject({ code: 'CONN_ERR_HTTP_NETWORK', retryable: true, attempts: 3 });
    expect(get.message).toBe('teamwork GET /anything could not connect (ECONNREFUSED) after 3 attempts');
    const post = await failure(http.request('POST', '/anything', { body: {} }));
    expect(post.attempts).toBe(3);
  });
});

describe('HttpClient caller abort', () => {
  it('rejects with the reason during a request, without retrying, and frees the limiter', async () => {
    fresh();
    const limiter = new RateLimiter({ clock, concurrency: 1 });
    const controller = new AbortController();
    const reason = new Error('shutting down');
    setTimeout(() => controller.abort(reason), 50);
    await expect(client({ limiter }).get('/slow', { signal: controller.signal })).rejects.toBe(reason);
    expect(server.hits('/slow')).toHaveLength(1);
    expect(limiter.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('rejects while waiting for the limiter, sending nothing', async () => {
    fresh();
    const limiter = new RateLimiter({ clock, concurrency: 1 });
    const held = await limiter.acquire();
    const controller = new AbortController();
    const call = client({ limiter }).get('/echo', { signal: controller.signal });
    controller.abort(new Error('gone'));
    await expect(call).rejects.toThrow('gone');
    held();
    expect(server.seen).toHaveLength(0);
    expect(limiter.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('rejects while waiting between attempts', async () => {
    fresh(false);
    const controller = new AbortController();
    const call = client().get('/status/503', { signal: controller.signal });
    await vi.waitFor(() => expect(clock.pending()).toBe(1));
    controller.abort(new Error('stop now'));
    await expect(call).rejects.toThrow('stop now');
    expect(server.seen).toHaveLength(1);
  });
});

describe('HttpClient download', () => {
  beforeAll(() => fresh());

  it('returns the bytes when under the cap, with auth on the base and none on an absolute URL', async () => {
    const http = client();
    const got = await http.download('/download?size=1000', { maxBytes: 1000 });
    expect(got.status).toBe(200);
    expect(got.body.equals(Buffer.alloc(1000, 7))).toBe(true);
    expect(server.seen[0]?.headers.authorization).toBe(TOKEN);
    const absolute = await http.download(`${server.url}/download?size=10&chunked=1`, { maxBytes: 10, absolute: true });
    expect(absolute.body).toHaveLength(10);
    expect(server.seen[1]?.headers.authorization).toBeUndefined();
  });

  it('refuses a body over the cap, declared or streamed, without retrying', async () => {
    const declared = await failure(client().download('/download?size=2000', { maxBytes: 1000 }));
    expect(declared).toMatchObject({ code: 'CONN_ERR_HTTP_BAD_RESPONSE', retryable: false, attempts: 1 });
    expect(declared.message).toBe('teamwork GET /download answered 200 with a body over the 1000-byte download cap');
    const streamed = await failure(client().download('/download?size=5000&chunked=1', { maxBytes: 1000 }));
    expect(streamed).toMatchObject({ code: 'CONN_ERR_HTTP_BAD_RESPONSE', attempts: 1 });
    expect(server.hits('/download')).toHaveLength(2);
  });

  it('classifies error statuses like any request', async () => {
    const err = await failure(client().download('/status/404', { maxBytes: 10 }));
    expect(err).toMatchObject({ code: 'CONN_ERR_HTTP_NOT_FOUND', status: 404 });
    expect(err.bodyExcerpt).toContain('INVALID_VALUE');
  });
});

describe('HttpClient logging', () => {
  it('writes one debug line per attempt and a warn per retry, without auth, secrets or bodies', async () => {
    fresh();
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({ level: 'debug', console: false, destination: { write: (line: string) => lines.push(JSON.parse(line)) } });
    const http = client({ log, headers: { Authorization: TOKEN } });
    await http.request('POST', '/flaky/log', { query: { fail: 1, api_key: 'abcdef', page: 2 }, body: { note: 'private words' }, idempotent: true });
    const debug = lines.filter((l) => l.level === 'debug');
    const warn = lines.filter((l) => l.level === 'warn');
    expect(debug).toHaveLength(2);
    expect(debug[0]).toMatchObject({ component: 'http', vendor: 'teamwork', method: 'POST', url: '/flaky/log?fail=1&api_key=[redacted]&page=2', status: 503, attempt: 1 });
    expect(typeof debug[0]?.ms).toBe('number');
    expect(debug[1]).toMatchObject({ status: 200, attempt: 2 });
    expect(warn).toHaveLength(1);
    expect(warn[0]).toMatchObject({ attempt: 1, code: 'CONN_ERR_HTTP_SERVER', status: 503 });
    expect(String(warn[0]?.msg)).toMatch(/^retrying teamwork POST \/flaky\/log: answered 503 \(attempt 1 of 3\); next in \d+ ms$/);
    const all = JSON.stringify(lines);
    expect(all).not.toContain('SECRET-TOKEN');
    expect(all).not.toContain('abcdef');
    expect(all).not.toContain('private words');
  });
});
