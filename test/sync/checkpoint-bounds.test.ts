/**
 * A backfill page's newest time moves the checkpoint only as far as the run's start, and an invalid
 * one not at all: checkpoints never move back, so a single item dated in the future (a vendor's bad
 * data) would otherwise make every later run start after it and miss everything until then (issue 14,
 * hostile input: found beside the invalid Missive times of item 11). Real SQLite and file queue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import { noChanges } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { BackfillPage, Source } from '../../src/sources/source.ts';
import { runBackfill } from '../../src/sync/backfill.ts';
import { CheckpointStore } from '../../src/sync/checkpoints.ts';

const log = createLogger({ level: 'silent', console: false });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function world() {
  const dir = mkdtempSync(path.join(tmpdir(), 'checkpoint-bounds-'));
  const db = new SqliteDatabase({ file: path.join(dir, 'connector.db') });
  await db.migrate();
  const queue = await FileQueue.open({ dir: path.join(dir, 'queue'), log });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => db.close(), () => queue.close());
  const checkpoints = new CheckpointStore(db, path.join(dir, 'checkpoints'));
  return { db, deps: { queue, checkpoints, lifecycle: new Lifecycle(), log, overlapSeconds: 120, initialHours: 24 } };
}

/** A source whose backfill yields pages with these newest times (and no events). */
function sourceWith(times: Array<Date | null>): Source {
  return {
    name: 'missive',
    apiConfigured: true,
    verify: () => {},
    parseWebhook: () => ({ events: [] }),
    handle: async () => noChanges(),
    backfill: async function* (): AsyncGenerator<BackfillPage> {
      for (const [i, newestUpdate] of times.entries()) yield { events: [], newestUpdate, cursor: `page-${i}` };
    },
  };
}

describe('the checkpoint a backfill page may set', () => {
  it('a time in the future moves it only to the start of the run; an invalid time not at all', async () => {
    const { db, deps } = await world();
    const past = new Date(Date.now() - 3_600_000);
    const before = Date.now();
    await runBackfill(sourceWith([past, new Date('2096-01-01T00:00:00Z'), new Date(Number.NaN)]), deps);
    const after = Date.now();
    const stored = (await db.getCheckpoint('missive'))?.lastEventTime?.getTime();
    expect(stored).toBeGreaterThanOrEqual(before);
    expect(stored).toBeLessThanOrEqual(after);

    const { db: db2, deps: deps2 } = await world();
    await runBackfill(sourceWith([past, new Date(Number.NaN)]), deps2);
    expect((await db2.getCheckpoint('missive'))?.lastEventTime?.getTime()).toBe(past.getTime());
  });
});
