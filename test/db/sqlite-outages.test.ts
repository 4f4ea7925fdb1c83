/**
 * SQLite outages (issue 15 items 5 and 6): the file deleted under a running connection, a read-only
 * file, a locked database. Each is a retryable CONN_ERR_DB_UNAVAILABLE and health() says the database
 * is not writable; writes go through again once the condition ends (the file restored, made writable,
 * the lock released), nothing written into an unlinked file.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { makeTask } from '../fixtures/records.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempFile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-sqlite-outage-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'connector.db');
}

function ids(file: string): string[] {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return (db.prepare('SELECT id FROM tasks ORDER BY id').all() as Array<{ id: string }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

/** chattr +i / -i: the one way to make a file read-only for root. False when the file system will not. */
function immutable(file: string, on: boolean): boolean {
  try {
    execFileSync('chattr', [on ? '+i' : '-i', file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('SQLite outages are CONN_ERR_DB_UNAVAILABLE', () => {
  it('the database file deleted under a running connection: writes fail as unavailable, health fails, and a file restored at the path is reopened and written', async () => {
    const file = tempFile();
    const db = new SqliteDatabase({ file });
    cleanups.push(() => db.close());
    await db.migrate();
    await db.upsertTask(makeTask({ id: 'before' }));
    // The operator's backup, taken while it runs (a checkpointed copy).
    const checkpoint = new BetterSqlite3(file);
    checkpoint.pragma('wal_checkpoint(TRUNCATE)');
    checkpoint.close();
    const backup = `${file}.bak`;
    copyFileSync(file, backup);

    rmSync(file);
    await expect(db.upsertTask(makeTask({ id: 'lost?' }))).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true });
    await expect(db.setCheckpoint({ source: 'teamwork', lastEventTime: new Date(), lastCursor: null, updatedAt: new Date() })).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE' });
    expect(await db.health()).toMatchObject({ ok: false, backend: 'sqlite', detail: expect.stringMatching(/deleted|replaced/) });
    expect(existsSync(file)).toBe(false); // nothing recreated an empty file behind the operator's back

    copyFileSync(backup, file);
    expect(await db.health()).toMatchObject({ ok: true });
    expect(await db.upsertTask(makeTask({ id: 'after' }))).toEqual({ written: 1, stale: 0 });
    expect(await db.getTask('before')).not.toBeNull();
    await db.close();
    expect(ids(file)).toEqual(['after', 'before']);
  });

  it('the database file replaced by another (a restore while running) is reopened before the next write', async () => {
    const file = tempFile();
    const db = new SqliteDatabase({ file });
    cleanups.push(() => db.close());
    await db.migrate();
    await db.upsertTask(makeTask({ id: 'one' }));
    const other = `${file}.other`;
    const seed = new SqliteDatabase({ file: other });
    await seed.migrate();
    await seed.upsertTask(makeTask({ id: 'restored' }));
    await seed.close();
    copyFileSync(other, `${file}.tmp`);
    rmSync(file);
    execFileSync('mv', [`${file}.tmp`, file]);
    expect(await db.upsertTask(makeTask({ id: 'two' }))).toEqual({ written: 1, stale: 0 });
    await db.close();
    expect(ids(file)).toEqual(['restored', 'two']);
  });

  it('a read-only database file: unavailable (not rejected), health says not writable, and writes resume once it is writable again', async (ctx) => {
    const file = tempFile();
    const first = new SqliteDatabase({ file });
    await first.migrate();
    await first.close();
    if (!immutable(file, true)) {
      ctx.skip();
      return;
    }
    cleanups.push(() => void immutable(file, false));
    const db = new SqliteDatabase({ file });
    cleanups.push(() => db.close());
    await db.migrate();
    await expect(db.upsertTask(makeTask({ id: 'ro' }))).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true });
    expect(await db.health()).toMatchObject({ ok: false, detail: expect.stringMatching(/not writable|read-only|readonly/i) });
    immutable(file, false);
    expect(await db.upsertTask(makeTask({ id: 'ro' }))).toEqual({ written: 1, stale: 0 });
    expect(await db.health()).toMatchObject({ ok: true });
  });

  it('a database locked by another connection is unavailable', async () => {
    const file = tempFile();
    const db = new SqliteDatabase({ file, busyTimeoutMs: 20 });
    cleanups.push(() => db.close());
    await db.migrate();
    const locker = new BetterSqlite3(file);
    locker.exec('BEGIN EXCLUSIVE');
    await expect(db.upsertTask(makeTask({ id: 'x' }))).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE' });
    locker.exec('ROLLBACK');
    locker.close();
    expect(await db.upsertTask(makeTask({ id: 'x' }))).toEqual({ written: 1, stale: 0 });
  });
});
