/**
 * The Lease conformance suite (lease-conformance.ts) on both queue engines, the real Redis and
 * PostgreSQL of the development machine (test/helpers/services.ts).
 */
import { createLogger } from '../../src/log.ts';
import { PostgresLeases } from '../../src/sync/postgres-leases.ts';
import { RedisLeases } from '../../src/sync/redis-leases.ts';
import { Redis } from 'ioredis';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis, withPostgresClient } from '../helpers/services.ts';
import { describe } from 'vitest';
import { leaseConformance } from './lease-conformance.ts';

const quiet = createLogger({ level: 'silent', console: false });

/** The same URL with its host and port replaced. */
function via(url: string, host: string, port: number): string {
  const u = new URL(url);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

function target(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port || defaultPort) };
}

const redis = await requireRedis();
const postgres = await requirePostgres();

describe.skipIf(!redis.available)('redis', () => {
  leaseConformance('redis', {
    url: TEST_REDIS_URL,
    target: target(TEST_REDIS_URL, 6379),
    throughProxy: (url, proxy) => via(url, '127.0.0.1', proxy.port),
    open: async (url, prefix) => new RedisLeases(url, prefix, quiet),
    cleanup: async (prefixes) => {
      const client = new Redis(TEST_REDIS_URL);
      for (const prefix of prefixes) {
        const keys = await client.keys(`${prefix}:lease:*`);
        if (keys.length > 0) await client.del(...keys);
      }
      client.disconnect();
    },
  });
});

describe.skipIf(!postgres.available)('postgres', () => {
  leaseConformance('postgres', {
    url: TEST_POSTGRES_URL,
    target: target(TEST_POSTGRES_URL, 5432),
    throughProxy: (url, proxy) => via(url, '127.0.0.1', proxy.port),
    open: async (url, prefix) => new PostgresLeases(url, prefix, quiet),
    cleanup: async (prefixes) => {
      await withPostgresClient(TEST_POSTGRES_URL, (c) => c.query('DELETE FROM connector_engine.leases WHERE prefix = ANY($1)', [prefixes]));
    },
  });
});
