/**
 * Budgets on a real clock, driven through HttpClient against a real server that measures what it sees:
 * the Missive budget (5 concurrent, 300 per 60 s, 900 per 15 min) with windows scaled by 0.005 (300 ms
 * and 4.5 s), and a small budget whose every limit binds even on a slow machine.
 *
 * The checks take the vendor's view: arrival times at the server, against the budget's true windows.
 * Arrivals lag the limiter's grants by varying amounts on a busy machine (tens of milliseconds at load
 * average 6), so, as the Missive client does in production (`windowMarginMs`), the limiter runs with
 * its windows lengthened by a margin that absorbs that jitter. The exact arithmetic, without margin, is
 * tested on a fake clock in rate-limiter.test.ts. Concurrency needs no margin: the server counts a
 * request from arrival to answer, which lies inside the client's acquire..release. Connections and JIT
 * are warmed first.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { HttpClient } from '../../src/http/http-client.ts';
import { RateLimiter, type RateWindow } from '../../src/http/rate-limiter.ts';
import { MINUTE } from '../../src/retry-policy.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const SCALE = 0.005;
const MISSIVE: { concurrency: number; windows: RateWindow[] } = {
  concurrency: 5,
  windows: [
    { limit: 300, intervalMs: 1 * MINUTE },
    { limit: 900, intervalMs: 15 * MINUTE },
  ],
};
const REQUESTS = 950;
/** The limiter's windows are this much longer than the budget's, for arrival jitter. */
const MARGIN_MS = 100;

const withMargin = (windows: RateWindow[]): RateWindow[] => windows.map((w) => ({ limit: w.limit, intervalMs: w.intervalMs + MARGIN_MS }));

let server: TestServer;
let active = 0;
let maxActive = 0;

beforeAll(async () => {
  server = await startTestServer((app) => {
    app.get('/v1/ping', async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((resolve) => setTimeout(resolve, 1));
      active--;
      return { ok: true };
    });
  });
  let sent = 0;
  await Promise.all(
    Array.from({ length: 5 }, async () => {
      while (sent++ < 200) await (await fetch(`${server.url}/v1/ping`)).text();
    }),
  );
});

beforeEach(() => {
  server.seen.length = 0;
  maxActive = 0;
});

afterAll(async () => {
  await server.close();
});

/** The most arrivals within any span shorter than `windowMs`. */
function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while ((sorted[hi] as number) - (sorted[lo] as number) >= windowMs) lo++;
    max = Math.max(max, hi - lo + 1);
  }
  return max;
}

it('never exceeds the scaled Missive budget, and uses all of its concurrency', async () => {
  const windows = MISSIVE.windows.map((w) => ({ limit: w.limit, intervalMs: w.intervalMs * SCALE }));
  const limiter = new RateLimiter({ concurrency: MISSIVE.concurrency, windows: withMargin(windows) });
  const http = new HttpClient({ vendor: 'missive', baseUrl: `${server.url}/v1`, limiter, maxAttempts: 1 });

  const started = Date.now();
  await Promise.all(Array.from({ length: REQUESTS }, () => http.get('/ping')));
  const elapsed = Date.now() - started;

  const arrivals = server.seen.map((r) => r.at).sort((a, b) => a - b);
  expect(arrivals).toHaveLength(REQUESTS);
  expect(maxActive).toBe(MISSIVE.concurrency);
  for (const w of windows) {
    expect(maxInWindow(arrivals, w.intervalMs), `${w.limit} per ${w.intervalMs} ms`).toBeLessThanOrEqual(w.limit);
  }
  // The 901st request waited for the first to leave the 15-minute (4.5 s) window.
  const long = windows[1]?.intervalMs ?? 0;
  expect((arrivals[900] as number) - (arrivals[0] as number)).toBeGreaterThanOrEqual(long);
  expect(elapsed).toBeGreaterThanOrEqual(long);
  expect(limiter.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
});

it('holds a small budget where every limit binds: 3 concurrent, 10 per 200 ms, 25 per 1 s', async () => {
  const limiter = new RateLimiter({
    concurrency: 3,
    windows: withMargin([
      { limit: 10, intervalMs: 200 },
      { limit: 25, intervalMs: 1000 },
    ]),
  });
  const http = new HttpClient({ vendor: 'test', baseUrl: server.url, limiter, maxAttempts: 1 });
  await Promise.all(Array.from({ length: 50 }, () => http.get('/v1/ping')));

  const arrivals = server.seen.map((r) => r.at).sort((a, b) => a - b);
  const at = (i: number): number => (arrivals[i] as number) - (arrivals[0] as number);
  expect(maxActive).toBe(3);
  expect(maxInWindow(arrivals, 200)).toBeLessThanOrEqual(10);
  expect(maxInWindow(arrivals, 1000)).toBeLessThanOrEqual(25);
  // Each limit held someone back: the 11th waited for the short window, the 26th for the long one.
  expect(at(10)).toBeGreaterThanOrEqual(200);
  expect(at(20)).toBeGreaterThanOrEqual(400);
  expect(at(25)).toBeGreaterThanOrEqual(1000);
});
