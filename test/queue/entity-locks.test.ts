/**
 * The entity locks of the shared queue (src/queue/entity-locks.ts) on the real engines: two processes
 * (two lock objects with sessions of their own) never hold one entity at once, and a release frees the
 * entity whatever else this process does with its locks at that moment.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { PostgresEntityLocks, RedisEntityLocks, type EntityLocks } from '../../src/queue/entity-locks.ts';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis } from '../helpers/services.ts';

const quiet = createLogger({ level: 'silent', console: false });
const engines = [
  { name: 'redis', available: (await requireRedis()).available },
  { name: 'postgres', available: (await requirePostgres()).available },
] as const;

const opened: EntityLocks[] = [];
afterEach(async () => {
  for (const locks of opened.splice(0)) await locks.close();
});

function open(engine: 'redis' | 'postgres', prefix: string, ttlMs = 30_000): EntityLocks {
  const locks =
    engine === 'redis'
      ? new RedisEntityLocks(new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }), prefix, ttlMs)
      : new PostgresEntityLocks(
          async () => {
            const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
            await client.connect();
            return client;
          },
          prefix,
          quiet,
        );
  opened.push(locks);
  return locks;
}

for (const engine of engines) {
  describe.skipIf(!engine.available)(`entity locks on ${engine.name}`, () => {
    it('gives an entity to one process at a time, and to another once released', async () => {
      const prefix = `el${randomUUID().slice(0, 8)}`;
      const a = open(engine.name, prefix);
      const b = open(engine.name, prefix);
      expect(await a.tryLock('task:1')).toBe(true);
      expect(await b.tryLock('task:1')).toBe(false);
      expect(await b.tryLock('task:2')).toBe(true);
      await a.release('task:1');
      expect(await b.tryLock('task:1')).toBe(true);
      await b.release('task:1');
      await b.release('task:2');
    });

    it('frees the entity when a renewal of the locks held runs at the same moment as its release', async () => {
      const prefix = `el${randomUUID().slice(0, 8)}`;
      const a = open(engine.name, prefix);
      const b = open(engine.name, prefix);
      for (let round = 0; round < 20; round++) {
        const entity = `task:${round}`;
        expect(await a.tryLock(entity)).toBe(true);
        // The queue renews every lock of the events in hand on a timer; an ack releases one of them.
        await Promise.all([a.renew([entity, 'task:other']), a.release(entity)]);
        expect(await b.tryLock(entity), `round ${round}: released, so free for another process`).toBe(true);
        await b.release(entity);
      }
    });
  });
}
