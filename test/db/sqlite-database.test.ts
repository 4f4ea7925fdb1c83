import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { later, makeEmail, makeTask } from '../fixtures/records.ts';
import { databaseConformance } from './conformance.ts';
import { expectMergedSplitRows, seedSplitRows } from './split-rows.ts';

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

  it('migration 2 merges rows stored under other spellings of one id, keeping the newest version', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-sqlite-'));
    const file = path.join(dir, 'connector.db');
    try {
      // Rows as versions before 2 stored them: the id as the vendor spelled it.
      const before = new SqliteDatabase({ file });
      await before.migrate();
      const t0 = new Date('2026-11-04T10:00:00.000Z');
      await before.upsertTasks([
        makeTask({ id: '4343', title: 'ten', updatedAt: t0 }),
        makeTask({ id: '04343', title: 'twelve', updatedAt: later(t0, 7200), projectId: '077' }),
        makeTask({ id: ' 004343', title: 'eleven', updatedAt: later(t0, 3600) }),
        makeTask({ id: '0099', title: 'only spelling', updatedAt: t0 }),
        makeTask({ id: '12', title: 'untouched', updatedAt: t0 }),
      ]);
      const uuid = '0f3a6c2e-1b7d-4c88-9e2f-5a1b2c3d4e5f';
      await before.upsertEmails([
        makeEmail({ id: uuid, subject: 'older', updatedAt: t0 }),
        makeEmail({ id: uuid.toUpperCase(), subject: 'newer', updatedAt: later(t0, 60), conversationId: 'AAAAAAAA-1B7D-4C88-9E2F-5A1B2C3D4E5F', attachments: [{ id: 'ATT-1', emailId: uuid.toUpperCase(), filename: 'a.pdf', mediaType: null, size: 1, url: null, storedPath: null, sha256: null }] }),
      ]);
      await before.close();
      const raw = new BetterSqlite3(file);
      raw.prepare('DELETE FROM schema_migrations WHERE version >= 2').run();
      raw.close();

      const after = new SqliteDatabase({ file });
      await after.migrate();
      // The older version's attachment (att-1, makeEmail's) moves to the kept email too.
      expect(await after.counts()).toEqual({ tasks: 3, emails: 1, attachments: 2 });
      expect(await after.getTask('4343')).toMatchObject({ id: '4343', title: 'twelve', updatedAt: later(t0, 7200), projectId: '77' });
      expect(await after.getTask('99')).toMatchObject({ id: '99', title: 'only spelling' });
      expect(await after.getTask('12')).toMatchObject({ title: 'untouched' });
      expect(await after.getEmail(uuid)).toMatchObject({
        id: uuid,
        subject: 'newer',
        conversationId: 'aaaaaaaa-1b7d-4c88-9e2f-5a1b2c3d4e5f',
        attachments: expect.arrayContaining([expect.objectContaining({ id: 'ATT-1', emailId: uuid, filename: 'a.pdf' }), expect.objectContaining({ id: 'att-1', emailId: uuid })]),
      });
      await after.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('migration 2 merges a tombstone into the full row it deletes and keeps every attachment of the merged rows', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-sqlite-'));
    const file = path.join(dir, 'connector.db');
    try {
      const before = new SqliteDatabase({ file });
      await before.migrate();
      await seedSplitRows(before);
      await before.close();
      const raw = new BetterSqlite3(file);
      raw.prepare('DELETE FROM schema_migrations WHERE version >= 2').run();
      raw.close();

      const after = new SqliteDatabase({ file });
      await after.migrate();
      await expectMergedSplitRows(after);
      await after.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
