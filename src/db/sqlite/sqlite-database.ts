/**
 * SqliteDatabase: the embedded default backend, one file at `${DATA_DIR}/connector.db`.
 *
 * WAL mode with `synchronous=FULL` (a committed write survives power loss), `busy_timeout` so that a
 * second process (the `serve` role reading health, an operator's CLI) waits instead of failing.
 * better-sqlite3 is synchronous: each batch is one IMMEDIATE transaction in which the stale-write
 * guard reads the stored version and writes only newer or equal records, so the rule is exact and the
 * counts are true.
 */
import { mkdirSync } from 'node:fs';
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
  private readonly db: BetterSqlite3.Database;
  private readonly now: () => Date;
  private statements: ReturnType<SqliteDatabase['prepare']> | null = null;

  constructor(options: SqliteDatabaseOptions) {
    super();
    this.now = options.now ?? (() => new Date());
    if (options.file !== ':memory:') mkdirSync(path.dirname(options.file), { recursive: true });
    try {
      this.db = new BetterSqlite3(options.file);
      this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
    } catch (err) {
      throw toDbError(err, `cannot open SQLite database ${options.file}`);
    }
  }

  async migrate(): Promise<void> {
    this.guard('migrate', () => {
      this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
      const applied = new Set(this.db.prepare('SELECT version FROM schema_migrations').all().map((r) => (r as { version: number }).version));
      for (const migration of SQLITE_MIGRATIONS) {
        if (applied.has(migration.version)) continue;
        this.db.transaction(() => {
          this.db.exec(migration.sql);
          this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(migration.version, migration.name, this.now().toISOString());
        }).immediate();
      }
    });
    this.statements = this.prepare();
  }

  async apply(changes: Changes): Promise<WriteResult> {
    const s = this.ready();
    return this.guard('write', () =>
      this.db.transaction(() => {
        const result: WriteResult = { written: 0, stale: 0 };
        const syncedAt = this.now();
        for (const task of changes.tasks) this.upsertRow(s.taskVersion, s.taskUpsert, task, taskRow(task, syncedAt), result);
        for (const email of changes.emails) {
          if (this.upsertRow(s.emailVersion, s.emailUpsert, email, emailRow(email, syncedAt), result)) this.replaceAttachments(email.id, email.attachments);
        }
        for (const deletion of changes.deletedTasks) this.markDeleted(s.taskVersion, s.taskTombstone, deletion, syncedAt, result);
        for (const deletion of changes.deletedEmails) this.markDeleted(s.emailVersion, s.emailTombstone, deletion, syncedAt, result);
        return result;
      }).immediate(),
    );
  }

  async getTask(id: string): Promise<Task | null> {
    const row = this.guard('read', () => this.ready().taskGet.get(id) as Record<string, unknown> | undefined);
    return row === undefined ? null : rowToTask(row, SQLITE_CELLS);
  }

  async getEmail(id: string): Promise<Email | null> {
    const s = this.ready();
    return this.guard('read', () => {
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
    const s = this.ready();
    const row = encodeRow(checkpointRow(checkpoint, this.now()));
    this.guard('write', () => s.checkpointSet.run(row));
  }

  async health(): Promise<DatabaseHealth> {
    try {
      this.db.prepare('SELECT 1').get();
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

  private guard<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
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

/** Busy, locked, I/O and full-disk errors pass; everything else is the database refusing the write. */
function toDbError(err: unknown, context: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const code = (err as { code?: unknown }).code;
  const message = `${context}: ${(err as Error).message ?? String(err)}`;
  const transient = typeof code === 'string' && /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|PROTOCOL)/.test(code);
  return new ConnectorError(transient ? 'CONN_ERR_DB_UNAVAILABLE' : 'CONN_ERR_DB_REJECTED', message, { cause: err, details: { driverCode: code } });
}
