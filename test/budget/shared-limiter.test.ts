/**
 * The RateLimiter with a shared budget, on the real engines: two limiters on two stores stand for two
 * worker processes. What a user of the connector would notice: together they stay within one budget;
 * a 429 heard by one pauses the other (which then reports its vendor paused, with the reason); a wait
 * longer than the caller allows is refused with a BudgetWait naming the shared budget; a concurrency
 * slot held by one process is taken by the other when it is given back; an engine that does not answer
 * makes requests fail fast (CONN_ERR_VENDOR_PAUSED through the HTTP client, nothing sent) instead of
 * hanging. Then the Airtable client: two processes' clients of one base against the Airtable simulator,
 * which counts arrivals over a sliding second, stay within its 5 per second (and, as the control shows,
 * each with only its own budget they do not).
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { BudgetStore } from '../../src/budget/budget-store.ts';
import { PostgresBudgetStore } from '../../src/budget/postgres-budget-store.ts';
import { RedisBudgetStore } from '../../src/budget/redis-budget-store.ts';
import { AirtableClient, DEFAULT_BASE_WINDOW } from '../../src/db/airtable/airtable-client.ts';
import { ApiError, HttpClient } from '../../src/http/http-client.ts';
import { BudgetWait, ENGINE_RETRY_MS, RateLimiter, type RateLimiterOptions, type VendorState } from '../../src/http/rate-limiter.ts';
import { createLogger } from '../../src/log.ts';
import { startAirtableSimulator, type AirtableSimulator } from '../../simulators/airtable/index.ts';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis } from '../helpers/services.ts';
import { startTestServer, type TestServer } from '../http/test-server.ts';
import { maxInWindow } from './conformance.ts';

const quiet = createLogger({ level: 'silent', console: false });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const engines = [
  { name: 'redis' as const, available: (await requireRedis()).available, open: (prefix: string) => RedisBudgetStore.open({ url: TEST_REDIS_URL, prefix, log: quiet, where: 'Redis' }) },
  { name: 'postgres' as const, available: (await requirePostgres()).available, open: async (prefix: string) => new PostgresBudgetStore({ url: TEST_POSTGRES_URL, prefix, log: quiet, where: 'PostgreSQL' }) },
];

const opened: BudgetStore[] = [];
afterEach(async () => {
  for (const store of opened.splice(0)) {
    await store.purge().catch(() => {});
    await store.close();
  }
});

for (const engine of engines) {
  describe.skipIf(!engine.available)(`shared budgets through the RateLimiter on ${engine.name}`, () => {
    /** `count` stores on one fresh prefix: one per "process". */
    async function processes(count: number): Promise<BudgetStore[]> {
      const prefix = `t${randomUUID().slice(0, 8)}`;
      const made: BudgetStore[] = [];
      for (let i = 0; i < count; i++) made.push(await engine.open(prefix));
      opened.push(...made);
      return made;
    }

    const limiter = (store: BudgetStore, options: Omit<RateLimiterOptions, 'shared'>) => new RateLimiter({ ...options, shared: { store, name: 'vendor' } });

    it('two processes together stay within one budget', async () => {
      const [a, b] = (await processes(2)) as [BudgetStore, BudgetStore];
      const windows = [{ limit: 8, intervalMs: 300 }];
      const limiters = [limiter(a, { windows }), limiter(b, { windows })];
      const grants: number[] = [];
      const started = Date.now();
      await Promise.all(
        Array.from({ length: 32 }, async (_, i) => {
          const release = await (limiters[i % 2] as RateLimiter).acquire();
          grants.push(Date.now());
          release();
        }),
      );
      // 32 at 8 per 300 ms: the last 8 cannot start before 900 ms. Each process with only its own
      // budget would have been done after one window, 300 ms. (The engine's own log is checked span by
      // span in the conformance suite.)
      expect(grants).toHaveLength(32);
      expect(Date.now() - started).toBeGreaterThanOrEqual(880);
      const usage = await a.usage({ name: 'vendor', concurrency: null, windows });
      expect(usage.windows[0]?.used).toBeLessThanOrEqual(8);
    });

    it('a 429 heard by one process pauses the other, which reports its vendor paused with the reason', async () => {
      const [a, b] = (await processes(2)) as [BudgetStore, BudgetStore];
      const windows = [{ limit: 100, intervalMs: 1_000 }];
      const heard = limiter(a, { windows });
      const other = limiter(b, { windows });
      const states: VendorState[] = [];
      other.onStateChange((state) => states.push(state));
      heard.pauseUntil(Date.now() + 800, 'answered 429, asking to wait 0.8 s');
      // The pause is written on its own (pauseUntil does not wait for the engine): once it is there,
      // the other process's next request waits it out.
      const spec = { name: 'vendor', concurrency: null, windows };
      const pausedForMs = await (async () => {
        for (;;) {
          const usage = await b.usage(spec);
          if (usage.pausedForMs > 0) return usage.pausedForMs;
          await sleep(5);
        }
      })();
      const started = Date.now();
      const release = await other.acquire();
      release();
      expect(Date.now() - started).toBeGreaterThanOrEqual(pausedForMs - 100);
      expect(states[0]).toMatchObject({ state: 'paused', reason: 'answered 429, asking to wait 0.8 s' });
      expect(other.status()).toEqual({ state: 'ok' });
    });

    it('a wait for the shared window longer than maxWaitMs is refused at once with a BudgetWait naming the shared budget', async () => {
      const [a, b] = (await processes(2)) as [BudgetStore, BudgetStore];
      const windows = [{ limit: 2, intervalMs: 2_000 }];
      const first = limiter(a, { windows });
      const second = limiter(b, { windows });
      (await first.acquire())();
      (await first.acquire())();
      const started = Date.now();
      const refused = await second.acquire(undefined, 500).then(
        () => null,
        (err: unknown) => err,
      );
      // At once: one round trip (the first of this store's, which may create the engine's tables).
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(refused).toBeInstanceOf(BudgetWait);
      expect((refused as BudgetWait).reason).toBe('the shared budget of 2 requests per 2 s is used up (every process together)');
      expect((refused as BudgetWait).until - Date.now()).toBeGreaterThan(500);
      // This process's own window is empty: only the shared budget refused.
      expect(second.stats().windows[0]?.used).toBe(0);
    });

    it('a concurrency slot held by one process goes to the other when it is given back', async () => {
      const [a, b] = (await processes(2)) as [BudgetStore, BudgetStore];
      const holder = limiter(a, { concurrency: 1 });
      const waiter = limiter(b, { concurrency: 1 });
      const release = await holder.acquire();
      let granted = 0;
      const pending = waiter.acquire(undefined, 50).then((r) => {
        granted = Date.now();
        return r;
      });
      await sleep(300);
      expect(granted).toBe(0); // not bounded by maxWaitMs: slots come free as requests end
      const releasedAt = Date.now();
      release();
      (await pending)();
      expect(granted - releasedAt).toBeLessThan(1_000);
      // Both slots are back in the engine.
      await sleep(50);
      expect((await a.usage({ name: 'vendor', concurrency: 1, windows: [] })).inFlight).toBe(0);
    });
  });
}

describe('an engine that does not answer', () => {
  let server: TestServer | null = null;
  const sockets = new Set<net.Socket>();
  let silent: net.Server | null = null;
  afterAll(async () => {
    await server?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => (silent === null ? resolve(undefined) : silent.close(resolve)));
  });

  it('makes a request fail fast with CONN_ERR_VENDOR_PAUSED (not sent, no attempt spent), and again until ENGINE_RETRY_MS', async () => {
    silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => (silent as net.Server).listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    server = await startTestServer((app) => app.get('/v1/ping', async () => ({ ok: true })));
    const store = new PostgresBudgetStore({ url: `postgres://postgres@127.0.0.1:${port}/test`, prefix: 'x', log: quiet, where: `PostgreSQL at 127.0.0.1:${port}` });
    opened.push(store);
    const limiter = new RateLimiter({ concurrency: 5, windows: [{ limit: 300, intervalMs: 60_000 }], shared: { store, name: 'missive' } });
    const http = new HttpClient({ vendor: 'missive', baseUrl: `${server.url}/v1`, limiter, maxWaitMs: 10_000 });

    const started = Date.now();
    const err = await http.get('/ping').then(
      () => null,
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('CONN_ERR_VENDOR_PAUSED');
    expect((err as ApiError).retryable).toBe(true);
    expect((err as ApiError).retryAfterMs).toBeGreaterThan(ENGINE_RETRY_MS - 500);
    expect((err as ApiError).message).toContain(`missive is waiting: the shared vendor budget cannot be read (PostgreSQL at 127.0.0.1:${port}: `);
    expect(server.hits('/v1/ping')).toHaveLength(0);

    // Within ENGINE_RETRY_MS the engine is not asked again: refused at once.
    const again = Date.now();
    await expect(limiter.acquire(undefined, 60_000)).rejects.toBeInstanceOf(BudgetWait);
    expect(Date.now() - again).toBeLessThan(100);
    expect(limiter.stats().waiting).toBe(0);
  });
});

describe.skipIf(!engines[0]?.available)('the Airtable client: two processes on one base', () => {
  let sim: AirtableSimulator | null = null;
  afterEach(async () => {
    await sim?.stop();
    sim = null;
  });

  async function run(limiters: [RateLimiter, RateLimiter], count: number): Promise<{ statuses: number[]; arrivals: number[] }> {
    sim = await startAirtableSimulator({ rateLimit: { lockoutMs: 200 } });
    const s = sim;
    const clients = limiters.map((limiter) => new AirtableClient({ token: s.token, baseId: s.baseId, baseUrl: s.url, limiter, maxAttempts: 1, rateLimitPauseMs: 200 }));
    // Connections and JIT warmed first (one request each, then a quiet window): a first request's
    // connection set-up delays its arrival by more than the budget's 100 ms margin.
    await Promise.all(clients.map((c) => c.listTables()));
    await sleep(1_200);
    s.requests.clear();
    await Promise.all(Array.from({ length: count }, (_, i) => (clients[i % 2] as AirtableClient).listTables().catch(() => null)));
    const seen = s.requests.entries.filter((r) => r.path.startsWith('/v0/'));
    return { statuses: seen.map((r) => r.status), arrivals: seen.filter((r) => r.status !== 429).map((r) => r.startedAt) };
  }

  it('stay within 5 requests per second together, with no 429', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const a = await RedisBudgetStore.open({ url: TEST_REDIS_URL, prefix, log: quiet, where: 'Redis' });
    const b = await RedisBudgetStore.open({ url: TEST_REDIS_URL, prefix, log: quiet, where: 'Redis' });
    opened.push(a, b);
    const own = (store: BudgetStore) => new RateLimiter({ windows: [DEFAULT_BASE_WINDOW], shared: { store, name: 'airtable:base' } });
    const { statuses, arrivals } = await run([own(a), own(b)], 16);
    expect(statuses).toHaveLength(16);
    expect(statuses.filter((s) => s === 429)).toEqual([]);
    expect(maxInWindow(arrivals, 1_000)).toBeLessThanOrEqual(5);
  });

  it('control: each with only its own budget, together they go over and are refused', async () => {
    const own = () => new RateLimiter({ windows: [DEFAULT_BASE_WINDOW] });
    const { statuses } = await run([own(), own()], 16);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
  });
});
