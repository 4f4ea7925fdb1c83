/**
 * Airtable's checkpoints with a shared queue (src/db/airtable/engine-checkpoints.ts), on the real Redis
 * and PostgreSQL: kept in the engine, so that two processes on two hosts (two DATA_DIRs here) see the
 * same checkpoint; never moving backwards, even when two write at once; seeded once from a host's
 * checkpoint file when the engine has none. And the factory: DB_BACKEND=airtable with
 * QUEUE_BACKEND=redis keeps them in the engine, not in DATA_DIR.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { createDatabase } from '../../src/db/create-database.ts';
import { PostgresCheckpoints, RedisCheckpoints, SeededCheckpoints, type CheckpointRecords } from '../../src/db/airtable/engine-checkpoints.ts';
import { FileCheckpoints } from '../../src/db/airtable/file-checkpoints.ts';
import { createLogger } from '../../src/log.ts';
import type { Checkpoint } from '../../src/model.ts';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis, withPostgresClient } from '../helpers/services.ts';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-engine-cp-'));
  dirs.push(dir);
  return dir;
};
/** Prefixes used, whose checkpoints are removed from the shared engines afterwards. */
const prefixes = new Set<string>();
const newPrefix = () => {
  const prefix = `t${randomUUID().slice(0, 8)}`;
  prefixes.add(prefix);
  return prefix;
};

const engines = [
  { name: 'redis', available: (await requireRedis()).available, open: (prefix: string): CheckpointRecords => new RedisCheckpoints(TEST_REDIS_URL, prefix) },
  { name: 'postgres', available: (await requirePostgres()).available, open: (prefix: string): CheckpointRecords => new PostgresCheckpoints(TEST_POSTGRES_URL, prefix) },
];

afterAll(async () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  const all = [...prefixes];
  if (engines[0]?.available === true) {
    const redis = new Redis(TEST_REDIS_URL);
    await redis.del(...all.map((p) => `${p}:checkpoints`));
    redis.disconnect();
  }
  if (engines[1]?.available === true) await withPostgresClient(TEST_POSTGRES_URL, (c) => c.query('DELETE FROM connector_engine.checkpoints WHERE prefix = ANY($1)', [all]));
});

const at = (iso: string) => new Date(iso);
const checkpoint = (lastEventTime: string | null, lastCursor: string | null = null): Checkpoint => ({ source: 'teamwork', lastEventTime: lastEventTime === null ? null : at(lastEventTime), lastCursor, updatedAt: at('2026-01-01T00:00:00Z') });

for (const engine of engines) {
  describe.skipIf(!engine.available)(`Airtable checkpoints in ${engine.name}`, () => {
    const opened: CheckpointRecords[] = [];
    const open = (prefix: string) => {
      const store = engine.open(prefix);
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close?.();
    });

    it('is shared by every process on the prefix, and apart from other prefixes', async () => {
      const prefix = newPrefix();
      const [hostA, hostB, other] = [open(prefix), open(prefix), open(newPrefix())];
      expect(await hostA.get('teamwork')).toBeNull();
      await hostA.set(checkpoint('2026-03-01T10:00:00.123Z', 'c1'), new Date());
      expect(await hostB.get('teamwork')).toEqual({ source: 'teamwork', lastEventTime: at('2026-03-01T10:00:00.123Z'), lastCursor: 'c1', updatedAt: at('2026-01-01T00:00:00Z') });
      expect(await hostB.get('missive')).toBeNull();
      expect(await other.get('teamwork')).toBeNull();
    });

    it('never moves backwards: an older time, or none, is ignored; the same time may move the cursor', async () => {
      const store = open(newPrefix());
      await store.set(checkpoint('2026-03-01T10:00:00Z', 'c1'), new Date());
      await store.set(checkpoint('2026-02-01T10:00:00Z', 'old'), new Date());
      await store.set(checkpoint(null, 'none'), new Date());
      expect(await store.get('teamwork')).toMatchObject({ lastEventTime: at('2026-03-01T10:00:00Z'), lastCursor: 'c1' });
      await store.set(checkpoint('2026-03-01T10:00:00Z', 'c2'), new Date());
      expect(await store.get('teamwork')).toMatchObject({ lastEventTime: at('2026-03-01T10:00:00Z'), lastCursor: 'c2' });
      await store.set(checkpoint('2026-03-02T10:00:00Z', 'c3'), new Date());
      expect(await store.get('teamwork')).toMatchObject({ lastEventTime: at('2026-03-02T10:00:00Z'), lastCursor: 'c3' });
    });

    it('keeps the newest of many processes writing at once', async () => {
      const prefix = newPrefix();
      const stores = Array.from({ length: 5 }, () => open(prefix));
      const times = Array.from({ length: 40 }, (_, i) => new Date(Date.UTC(2026, 2, 1, 0, i)).toISOString());
      const shuffled = [...times].sort(() => Math.random() - 0.5);
      await Promise.all(shuffled.map((t, i) => (stores[i % stores.length] as CheckpointRecords).set(checkpoint(t), new Date())));
      expect((await (stores[0] as CheckpointRecords).get('teamwork'))?.lastEventTime).toEqual(at(times.at(-1) as string));
    });

    it("is seeded once from this host's checkpoint file when the engine has none", async () => {
      const dir = tempDir();
      const files = new FileCheckpoints(dir);
      await files.set(checkpoint('2026-03-01T10:00:00Z', 'from-file'), new Date());
      const prefix = newPrefix();
      const seeded = new SeededCheckpoints(open(prefix), files);
      expect(await seeded.get('teamwork')).toMatchObject({ lastEventTime: at('2026-03-01T10:00:00Z'), lastCursor: 'from-file' });
      // Now in the engine: another host, with no file, reads it.
      expect(await open(prefix).get('teamwork')).toMatchObject({ lastEventTime: at('2026-03-01T10:00:00Z'), lastCursor: 'from-file' });
      // Once the engine has one, the file is not read again.
      await seeded.set(checkpoint('2026-03-05T10:00:00Z', 'engine'), new Date());
      await files.set(checkpoint('2026-04-01T10:00:00Z', 'newer-file'), new Date());
      expect(await seeded.get('teamwork')).toMatchObject({ lastCursor: 'engine' });
      expect(await seeded.get('missive')).toBeNull();
    });
  });
}

describe.skipIf(!engines[0]?.available)('DB_BACKEND=airtable with a shared queue', () => {
  it('keeps checkpoints in the engine, not in DATA_DIR', async () => {
    const dir = tempDir();
    const prefix = newPrefix();
    const env = { DB_BACKEND: 'airtable', AIRTABLE_TOKEN: 'patTest.0123456789', AIRTABLE_BASE_ID: 'appTest123', QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix };
    const log = createLogger({ level: 'silent', console: false });
    const hostA = await createDatabase(parseConfig({ ...env, DATA_DIR: path.join(dir, 'a') }), { log });
    const hostB = await createDatabase(parseConfig({ ...env, DATA_DIR: path.join(dir, 'b') }), { log });
    try {
      await hostA.setCheckpoint(checkpoint('2026-03-01T10:00:00Z', 'a'));
      expect(await hostB.getCheckpoint('teamwork')).toMatchObject({ lastEventTime: at('2026-03-01T10:00:00Z'), lastCursor: 'a' });
      expect(existsSync(path.join(dir, 'a', 'checkpoints', 'teamwork.json'))).toBe(false);
      const store = new RedisCheckpoints(TEST_REDIS_URL, prefix);
      expect(await store.get('teamwork')).toMatchObject({ lastCursor: 'a' });
      await store.close();
    } finally {
      await hostA.close();
      await hostB.close();
    }
  });
});
