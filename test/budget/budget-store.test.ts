/**
 * The shared vendor budgets on the real engines: the conformance suite on Redis and on PostgreSQL
 * (each test on a prefix of its own, removed afterwards), then what an engine that does not answer
 * does to a store: every call fails within ENGINE_TIMEOUT_MS with CONN_ERR_QUEUE_UNAVAILABLE (never
 * hangs), and the outage is logged once, not once per call.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { ENGINE_TIMEOUT_MS, type BudgetSpec, type BudgetStore } from '../../src/budget/budget-store.ts';
import { createBudgetStore } from '../../src/budget/create-budget-store.ts';
import { PostgresBudgetStore } from '../../src/budget/postgres-budget-store.ts';
import { RedisBudgetStore } from '../../src/budget/redis-budget-store.ts';
import { ConnectorError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { parseConfig } from '../../src/config.ts';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis, withPostgresClient } from '../helpers/services.ts';
import { memoryLogger } from '../system/harness.ts';
import { budgetStoreConformance, type BudgetHarness } from './conformance.ts';

const quiet = createLogger({ level: 'silent', console: false });
const redisUp = (await requireRedis()).available;
const postgresUp = (await requirePostgres()).available;

describe.skipIf(!redisUp)('budgets in Redis', () => {
  budgetStoreConformance('redis', (): BudgetHarness => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const prefixes = new Set([prefix]);
    const admin = new Redis(TEST_REDIS_URL);
    return {
      open: async (options = {}) => {
        prefixes.add(options.prefix ?? prefix);
        return RedisBudgetStore.open({ url: TEST_REDIS_URL, prefix: options.prefix ?? prefix, log: quiet, where: 'Redis', ...(options.leaseTtlMs !== undefined ? { leaseTtlMs: options.leaseTtlMs } : {}) });
      },
      starts: async (name) => (await admin.zrange(`{${prefix}:budget:${name}}:starts`, '0', '-1', 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number),
      destroy: async () => {
        for (const p of prefixes) {
          const store = await RedisBudgetStore.open({ url: TEST_REDIS_URL, prefix: p, log: quiet, where: 'Redis' });
          await store.purge();
          await store.close();
        }
        admin.disconnect();
      },
    };
  });
});

describe.skipIf(!postgresUp)('budgets in PostgreSQL', () => {
  budgetStoreConformance('postgres', (): BudgetHarness => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const prefixes = new Set([prefix]);
    return {
      open: async (options = {}) => {
        prefixes.add(options.prefix ?? prefix);
        return new PostgresBudgetStore({ url: TEST_POSTGRES_URL, prefix: options.prefix ?? prefix, log: quiet, where: 'PostgreSQL', ...(options.leaseTtlMs !== undefined ? { leaseTtlMs: options.leaseTtlMs } : {}) });
      },
      starts: (name) =>
        withPostgresClient(TEST_POSTGRES_URL, async (client) => {
          const { rows } = await client.query<{ ms: string }>('select extract(epoch from at) * 1000 as ms from connector_engine.budget_starts where prefix = $1 and name = $2 order by at', [prefix, name]);
          return rows.map((r) => Number(r.ms));
        }),
      destroy: async () => {
        for (const p of prefixes) {
          const store = new PostgresBudgetStore({ url: TEST_POSTGRES_URL, prefix: p, log: quiet, where: 'PostgreSQL' });
          await store.purge();
          await store.close();
        }
      },
    };
  });
});

describe('a budget engine that does not answer', () => {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  /** A TCP server that accepts connections and never says a word. */
  async function silentServer(): Promise<number> {
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  const spec: BudgetSpec = { name: 'teamwork', concurrency: null, windows: [{ limit: 10, intervalMs: 1_000 }] };
  const cases: Array<{ name: string; make: (port: number, log: ReturnType<typeof memoryLogger>['log']) => Promise<BudgetStore> }> = [
    { name: 'Redis', make: (port, log) => RedisBudgetStore.open({ url: `redis://127.0.0.1:${port}`, prefix: 'x', log, where: `Redis at 127.0.0.1:${port}` }) },
    { name: 'PostgreSQL', make: async (port, log) => new PostgresBudgetStore({ url: `postgres://postgres@127.0.0.1:${port}/test`, prefix: 'x', log, where: `PostgreSQL at 127.0.0.1:${port}` }) },
  ];

  for (const engine of cases) {
    it(`${engine.name}: refused or silent, every call fails within ${ENGINE_TIMEOUT_MS} ms with CONN_ERR_QUEUE_UNAVAILABLE, logged once`, async () => {
      const { log, lines } = memoryLogger('info');
      for (const port of [1, await silentServer()]) {
        const opening = Date.now();
        const store = await engine.make(port, log);
        expect(Date.now() - opening).toBeLessThan(ENGINE_TIMEOUT_MS + 1_000);
        try {
          for (let i = 0; i < 2; i++) {
            const started = Date.now();
            const err = await store.reserve(spec).then(
              () => null,
              (e: unknown) => e,
            );
            expect(err).toBeInstanceOf(ConnectorError);
            expect((err as ConnectorError).code).toBe('CONN_ERR_QUEUE_UNAVAILABLE');
            expect((err as ConnectorError).retryable).toBe(true);
            expect((err as ConnectorError).message).toContain(`127.0.0.1:${port}`);
            expect(Date.now() - started).toBeLessThan(ENGINE_TIMEOUT_MS + 1_000);
          }
          await expect(store.pause('teamwork', 1_000, 'answered 429')).rejects.toMatchObject({ code: 'CONN_ERR_QUEUE_UNAVAILABLE' });
        } finally {
          await store.close();
        }
      }
      // One WARN line per store (per outage), none per call; never the URL's credentials.
      const warnings = lines.filter((l) => l.level === 'warn');
      expect(warnings.map((l) => l.msg)).toEqual([expect.stringContaining('the shared vendor budgets cannot be read (' + engine.name), expect.stringContaining('the shared vendor budgets cannot be read (' + engine.name)]);
    });
  }
});

describe('createBudgetStore', () => {
  it('makes none for the file queue (one worker: its own budget is the whole budget)', async () => {
    expect(await createBudgetStore(parseConfig({}), { log: quiet })).toBeNull();
  });

  it.skipIf(!redisUp)('makes the store of the queue\'s engine, under QUEUE_PREFIX', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const store = await createBudgetStore(parseConfig({ QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix }), { log: quiet });
    try {
      expect(store?.engine).toBe('redis');
      await store?.pause('missive', 5_000, 'answered 429');
      const admin = new Redis(TEST_REDIS_URL);
      expect(await admin.hget(`{${prefix}:budget:missive}:pause`, 'reason')).toBe('answered 429');
      admin.disconnect();
      await store?.purge();
    } finally {
      await store?.close();
    }
  });

  it.skipIf(!postgresUp)('on PostgreSQL, QUEUE_DATABASE_URL (else DATABASE_URL) names the database', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const store = await createBudgetStore(parseConfig({ QUEUE_BACKEND: 'postgres', DATABASE_URL: TEST_POSTGRES_URL, QUEUE_PREFIX: prefix }), { log: quiet });
    try {
      expect(store?.engine).toBe('postgres');
      await store?.pause('missive', 5_000, 'answered 429');
      const reason = await withPostgresClient(TEST_POSTGRES_URL, async (client) => (await client.query('select pause_reason from connector_engine.budgets where prefix = $1 and name = $2', [prefix, 'missive'])).rows[0]?.pause_reason);
      expect(reason).toBe('answered 429');
      await store?.purge();
    } finally {
      await store?.close();
    }
  });
});
