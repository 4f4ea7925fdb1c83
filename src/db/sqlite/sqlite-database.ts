/**
 * SqliteDatabase: the embedded default backend, one file at `${DATA_DIR}/connector.db`.
 *
 * WAL mode with `synchronous=FULL` (a committed write survives power loss), `busy_timeout` so that a
 * second process (the `serve` role reading health, an operator's CLI) waits instead of failing.
 * better-sqlite3 is synchronous: each batch is one IMMEDIATE transaction in which the stale-write
 * guard reads the stored version and writes only newer or equal records, so the rule is exact and the
 * counts are true.
 *
 * The file under us (issue 15). A connection keeps writing into a file deleted from under it (the
 * inode lives on while it is open), which would lose every write after the deletion. So the file's
 * identity (device and inode, as opened) is checked with one stat before each write (a batch is one
 * write), before each read, and on every health() (which /health polls):
 * - no file at the path: the connection is closed at once (SQLite removes its -wal and -shm files, so
 *   that a file restored later never meets a stale write-ahead log), and every call fails with
 *   CONN_ERR_DB_UNAVAILABLE (the worker holds its batch and acks nothing) and health() fails, until
 * - a file is at the path again ("the file is back": the operator restored it from a backup, or put
 *   any SQLite file there) or the path names another file than the one open (replaced): it is opened,
 *   migrated to the current schema, and used from the next call on.
 * A read-only file (SQLITE_READONLY: permissions, a read-only mount) is an outage too; after one, the
 * next call reopens the file, so that a file made writable again is written without a restart.
 * Errors: only a record SQLite refuses (a constraint, a value too big or of the wrong type) is
 * CONN_ERR_DB_REJECTED; every other SQLite error (busy, locked, read-only, full, I/O, cannot open,
 * corrupt, no such table) is CONN_ERR_DB_UNAVAILABLE: held and retried, never dead-lettered.
 */
import { accessSync, constants as fsConstants, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { ConnectorError } from '../../errors.ts';
import type { Attachment, Changes, Checkpoint, Deletion, Email, SourceName, Task } from '../../model.ts';
import type { Database, DatabaseCounts, DatabaseHealth, WriteResult } from '../database.ts';
import { ATTACHMENT_COLUMNS, EMAIL_COLUMNS, TASK_COLUMNS, Json, attachmentRow, checkpointRow, emailRow, isStale, rowToAttachment, rowToEmail, rowToTask, taskRow, type CellDecoder, type CellValue, type Row } from '../rows.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { BatchDatabase } from '../batch-database.ts';

type Statement = BetterSqlite3.Statement;

export interface SqliteDatabaseOptions {
  /** File path, or ':memory:'. */
  file: string;
  /** Milliseconds to wait for another process's lock. Default 5000. */
  busyTimeoutMs?: number;
  now?: () => Date;
}

export class SqliteDatabase extends BatchDatabase implements Database {
  readonly backend = 'sqlite' as const;
  private db: BetterSqlite3.Database;
  private readonly file: string;
  private readonly busyTimeoutMs: number;
  private readonly now: () => Date;
  private statements: ReturnType<SqliteDatabase['prepare']> | null = null;
  /** Device and inode of the file as opened, and of its -wal and -shm files; null for ':memory:'. */
  private identity: { dev: number; ino: number } | null = null;
  private sidecars: Array<{ suffix: string; dev: number; ino: number }> = [];
  /** Why the open connection cannot be used (the file deleted), or null. */
  private lost: string | null = null;
  /** A read-only error was seen and no write succeeded since: reopen before each call. */
  private reopenWanted = false;

  constructor(options: SqliteDatabaseOptions) {
    super();
    this.now = options.now ?? (() => new Date());
    this.file = options.file;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    if (options.file !== ':memory:') mkdirSync(path.dirname(options.file), { recursive: true });
    this.db = this.open();
  }

  private open(): BetterSqlite3.Database {
    let db: BetterSqlite3.Database | undefined;
    try {
      db = new BetterSqlite3(this.file);
      db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      if (this.file !== ':memory:') {
        db.prepare('SELECT count(*) FROM sqlite_master').get(); // creates the -wal and -shm files
        const stat = statSync(this.file);
        this.identity = { dev: stat.dev, ino: stat.ino };
        this.sidecars = [];
        for (const suffix of ['-wal', '-shm']) {
          const side = statOrNull(this.file + suffix);
          if (side !== null) this.sidecars.push({ suffix, ...side });
        }
      }
      return db;
    } catch (err) {
      if (db?.open === true) db.close();
      throw toDbError(err, `cannot open SQLite database ${this.file}`);
    }
  }

  /**
   * Gives up the connection to a file that is no longer at the path. SQLite leaves its -wal and -shm
   * behind for a moved database; a file put at the path later would read that -wal as its own (the old
   * database's pages over the restored one). So the -wal is set aside as `<file>-wal.orphaned-<time>`
   * (it holds the old file's last writes, for forensics) and the -shm removed, each only while it is
   * still the one this connection opened.
   */
  private abandon(): void {
    try {
      if (this.db.open) this.db.close();
    } catch {
      // closing a connection to a deleted file can fail; it is given up either way
    }
    for (const side of this.sidecars) {
      const at = this.file + side.suffix;
      const now = statOrNull(at);
      if (now === null || now.dev !== side.dev || now.ino !== side.ino) continue;
      try {
        if (side.suffix === '-wal') renameSync(at, `${at}.orphaned-${Date.now()}`);
        else rmSync(at, { force: true });
      } catch {
        // best effort; the next check tries again
      }
    }
    this.sidecars = [];
  }

  /**
   * The one stat per call: throws CONN_ERR_DB_UNAVAILABLE while no file is at the path; reopens (and
   * migrates) when the path names another file than the one open, or after a read-only error.
   */
  private checkFile(): void {
    if (this.identity === null) return;
    let stat: { dev: number; ino: number } | null;
    try {
      stat = statSync(this.file);
    } catch {
      stat = null;
    }
    if (stat === null) {
      if (this.lost === null) {
        this.lost = `SQLite database file ${this.file} was deleted (or moved) under the running connector; nothing is written until a file is at that path again (restore it from a backup) or the process restarts`;
        this.abandon();
      }
      throw new ConnectorError('CONN_ERR_DB_UNAVAILABLE', this.lost, { details: { file: this.file } });
    }
    if (this.lost === null && !this.reopenWanted && stat.dev === this.identity.dev && stat.ino === this.identity.ino) return;
    const migrated = this.statements !== null;
    if (this.lost === null && !this.reopenWanted) this.abandon(); // replaced: the old file's -wal must not meet the new one
    else if (this.db.open) this.db.close();
    this.statements = null;
    this.db = this.open();
    this.lost = null; // reopenWanted stays until a write succeeds: a file still read-only is reopened again
    if (migrated) {
      this.runMigrations();
      this.statements = this.prepare();
    }
  }

  async migrate(): Promise<void> {
    this.guard('migrate', () => this.runMigrations());
    this.statements = this.prepare();
  }

  private runMigrations(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    const applied = new Set(this.db.prepare('SELECT version FROM schema_migrations').all().map((r) => (r as { version: number }).version));
    for (const migration of SQLITE_MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      this.db.transaction(() => {
        this.db.exec(migration.sql);
        this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(migration.version, migration.name, this.now().toISOString());
      }).immediate();
    }
  }

  async apply(changes: Changes): Promise<WriteResult> {
    this.ready();
    return this.guard('write', () => {
      const s = this.ready();
      return this.db.transaction(() => {
        const result: WriteResult = { written: 0, stale: 0 };
        const syncedAt = this.now();
        for (const task of changes.tasks) this.upsertRow(s.taskVersion, s.taskUpsert, task, taskRow(task, syncedAt), result);
        for (const email of changes.emails) {
          if (this.upsertRow(s.emailVersion, s.emailUpsert, email, emailRow(email, syncedAt), result)) this.replaceAttachments(email.id, email.attachments);
        }
        for (const deletion of changes.deletedTasks) this.markDeleted(s.taskVersion, s.taskTombstone, deletion, syncedAt, result);
        for (const deletion of changes.deletedEmails) this.markDeleted(s.emailVersion, s.emailTombstone, deletion, syncedAt, result);
        return result;
      }).immediate();
    });
  }

  async getTask(id: string): Promise<Task | null> {
    const row = this.guard('read', () => this.ready().taskGet.get(id) as Record<string, unknown> | undefined);
    return row === undefined ? null : rowToTask(row, SQLITE_CELLS);
  }

  async getEmail(id: string): Promise<Email | null> {
    this.ready();
    return this.guard('read', () => {
      const s = this.ready();
      const row = s.emailGet.get(id) as Record<string, unknown> | undefined;
      if (row === undefined) return null;
      const attachments = (s.attachmentsGet.all(id) as Record<string, unknown>[]).map(rowToAttachment);
      return rowToEmail(row, attachments, SQLITE_CELLS);
    });
  }

  async getCheckpoint(source: SourceName): Promise<Checkpoint | null> {
    const row = this.guard('read', () => this.ready().checkpointGet.get(source) as Record<string, string | null> | undefined);
    if (row === undefined) return null;
    return { source, lastEventTime: toDate(row.last_event_time), lastCursor: row.last_cursor ?? null, updatedAt: toDate(row.updated_at) };
  }

  async setCheckpoint(checkpoint: Checkpoint): Promise<void> {
    this.ready();
    const row = encodeRow(checkpointRow(checkpoint, this.now()));
    this.guard('write', () => this.ready().checkpointSet.run(row));
  }

  /** Whether the file is the one open and takes writes (see the header), not only whether SELECT 1 answers. */
  async health(): Promise<DatabaseHealth> {
    try {
      this.guard('health check', () => this.checkFile());
      this.db.prepare('SELECT 1').get();
      if (this.identity !== null) {
        try {
          accessSync(this.file, fsConstants.W_OK);
        } catch (err) {
          return { ok: false, backend: this.backend, detail: `SQLite database file ${this.file} is not writable: ${(err as Error).message}` };
        }
      }
      if (this.db.readonly || this.reopenWanted) return { ok: false, backend: this.backend, detail: `SQLite database ${this.file} is read-only: not writable` };
      return { ok: true, backend: this.backend };
    } catch (err) {
      return { ok: false, backend: this.backend, detail: (err as Error).message };
    }
  }

  async counts(): Promise<DatabaseCounts> {
    return this.guard('read', () => {
      const count = (table: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
      return { tasks: count('tasks'), emails: count('emails'), attachments: count('attachments') };
    });
  }

  async close(): Promise<void> {
    this.identity = null;
    if (this.db.open) this.db.close();
  }

  /** Writes `row` unless the stored version is newer. Returns whether it wrote. */
  private upsertRow(version: Statement, upsert: Statement, record: { id: string; updatedAt: Date | null }, row: Row, result: WriteResult): boolean {
    const stored = version.get(record.id) as { updated_at: string | null; deleted_at: string | null } | undefined;
    if (stored !== undefined && isStale(record.updatedAt, toDate(stored.updated_at), toDate(stored.deleted_at))) {
      result.stale += 1;
      return false;
    }
    upsert.run(encodeRow(row));
    result.written += 1;
    return true;
  }

  /** Sets deleted/deleted_at, or stores a tombstone for an id never seen. Newer stored data wins. */
  private markDeleted(version: Statement, tombstone: Statement, deletion: Deletion, syncedAt: Date, result: WriteResult): void {
    const stored = version.get(deletion.id) as { updated_at: string | null; deleted_at: string | null; deleted: number } | undefined;
    if (stored !== undefined) {
      if (stored.deleted === 1 && stored.deleted_at !== null) return;
      if (isStale(deletion.at, toDate(stored.updated_at), null)) {
        result.stale += 1;
        return;
      }
    }
    tombstone.run({ id: deletion.id, deleted_at: deletion.at.toISOString(), synced_at: syncedAt.toISOString() });
    result.written += 1;
  }

  private replaceAttachments(emailId: string, attachments: readonly Attachment[]): void {
    const s = this.ready();
    const keep = new Set(attachments.map((a) => a.id));
    for (const { id } of s.attachmentIds.all(emailId) as { id: string }[]) if (!keep.has(id)) s.attachmentDelete.run(id);
    for (const attachment of attachments) s.attachmentUpsert.run(encodeRow(attachmentRow(attachment)));
  }

  private ready(): NonNullable<SqliteDatabase['statements']> {
    if (this.statements === null) throw new ConnectorError('CONN_ERR_DB_REJECTED', 'SQLite database used before migrate()');
    return this.statements;
  }

  private prepare() {
    const p = (sql: string) => this.db.prepare(sql);
    return {
      taskVersion: p('SELECT updated_at, deleted_at, deleted FROM tasks WHERE id = ?'),
      taskUpsert: p(upsertSql('tasks', TASK_COLUMNS)),
      taskTombstone: p(tombstoneSql('tasks')),
      taskGet: p('SELECT * FROM tasks WHERE id = ?'),
      emailVersion: p('SELECT updated_at, deleted_at, deleted FROM emails WHERE id = ?'),
      emailUpsert: p(upsertSql('emails', EMAIL_COLUMNS)),
      emailTombstone: p(tombstoneSql('emails')),
      emailGet: p('SELECT * FROM emails WHERE id = ?'),
      attachmentIds: p('SELECT id FROM attachments WHERE email_id = ?'),
      attachmentDelete: p('DELETE FROM attachments WHERE id = ?'),
      attachmentUpsert: p(upsertSql('attachments', ATTACHMENT_COLUMNS)),
      attachmentsGet: p('SELECT * FROM attachments WHERE email_id = ? ORDER BY rowid'),
      checkpointGet: p('SELECT * FROM checkpoints WHERE source = ?'),
      checkpointSet: p(`INSERT INTO checkpoints (source, last_event_time, last_cursor, updated_at)
        VALUES (@source, @last_event_time, @last_cursor, @updated_at)
        ON CONFLICT (source) DO UPDATE SET last_event_time = excluded.last_event_time, last_cursor = excluded.last_cursor, updated_at = excluded.updated_at
        WHERE checkpoints.last_event_time IS NULL OR excluded.last_event_time >= checkpoints.last_event_time`),
    };
  }

  /** Runs `fn` after checking the file (see the header), mapping what it throws to a ConnectorError. */
  private guard<T>(what: string, fn: () => T): T {
    try {
      this.checkFile();
      const value = fn();
      if (what === 'write') this.reopenWanted = false;
      return value;
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && code.startsWith('SQLITE_READONLY')) this.reopenWanted = true;
      throw toDbError(err, `SQLite ${what} failed`);
    }
  }
}

const quote = (column: string) => `"${column}"`;

function upsertSql(table: string, columns: readonly string[]): string {
  const names = columns.map(quote).join(', ');
  const values = columns.map((c) => `@${c}`).join(', ');
  const updates = columns.filter((c) => c !== 'id').map((c) => `${quote(c)} = excluded.${quote(c)}`).join(', ');
  return `INSERT INTO ${table} (${names}) VALUES (${values}) ON CONFLICT (id) DO UPDATE SET ${updates}`;
}

function tombstoneSql(table: string): string {
  return `INSERT INTO ${table} (id, deleted, deleted_at, synced_at) VALUES (@id, 1, @deleted_at, @synced_at)
    ON CONFLICT (id) DO UPDATE SET deleted = 1, deleted_at = excluded.deleted_at, synced_at = excluded.synced_at`;
}

function encode(value: CellValue): string | number | null {
  if (value === null) return null;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Json) return JSON.stringify(value.value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}

function encodeRow(row: Row): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = {};
  for (const [key, value] of Object.entries(row)) out[key] = encode(value);
  return out;
}

function toDate(value: unknown): Date | null {
  return typeof value === 'string' && value !== '' ? new Date(value) : null;
}

/** SQLite hands back times as ISO text, JSON as text and booleans as 0/1. */
const SQLITE_CELLS: CellDecoder = {
  date: toDate,
  json: <T>(value: unknown, fallback: T): T => (typeof value === 'string' ? (JSON.parse(value) as T) : fallback),
  bool: (value) => value === 1,
};

function statOrNull(file: string): { dev: number; ino: number } | null {
  try {
    const stat = statSync(file);
    return { dev: stat.dev, ino: stat.ino };
  } catch {
    return null;
  }
}

/** SQLite result codes (extended codes start with these) that are the record's fault. */
const REJECTED_SQLITE_CODES = /^SQLITE_(CONSTRAINT|TOOBIG|MISMATCH|RANGE)/;

/**
 * Only a record SQLite refuses is CONN_ERR_DB_REJECTED; every other SQLite error (busy, locked,
 * read-only, full, I/O, cannot open, corrupt, not a database, no such table, ...) is the database
 * unable to take writes for now: CONN_ERR_DB_UNAVAILABLE. A thrown value without a SQLite code (a
 * value the driver cannot bind) is the record's: rejected.
 */
function toDbError(err: unknown, context: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = `${context}: ${(err as Error | null)?.message ?? String(err)}`;
  const unavailable = typeof code === 'string' && code.startsWith('SQLITE_') && !REJECTED_SQLITE_CODES.test(code);
  return new ConnectorError(unavailable ? 'CONN_ERR_DB_UNAVAILABLE' : 'CONN_ERR_DB_REJECTED', message, { cause: err, details: { driverCode: code } });
}
