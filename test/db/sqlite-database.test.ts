import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { makeTask } from '../fixtures/records.ts';
import { databaseConformance } from './conformance.ts';

databaseConformance('sqlite', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-sqlite-'));
  const db = new SqliteDatabase({ file: path.join(dir, 'connector.db') });
  return {
    db,
    cleanup: async () => {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteDatabase', () => {
  it('keeps data across reopen and applies migrations once', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-sqlite-'));
    const file = path.join(dir, 'connector.db');
    try {
      const first = new SqliteDatabase({ file });
      await first.migrate();
      await first.upsertTask(makeTask());
      await first.close();

      const second = new SqliteDatabase({ file });
      await second.migrate();
      expect((await second.getTask('1001'))?.title).toBe('Write the quarterly report');
      expect((await second.counts()).tasks).toBe(1);
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to write before migrate() with a clear error', async () => {
    const db = new SqliteDatabase({ file: ':memory:' });
    await expect(db.upsertTask(makeTask())).rejects.toMatchObject({ code: 'CONN_ERR_DB_REJECTED', message: expect.stringContaining('migrate') });
    await db.close();
  });
});
