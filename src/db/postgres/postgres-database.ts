/**
 * PostgresDatabase: the Database contract on PostgreSQL, for more than one worker process or machine.
 *
 * Connections come from one `pg` Pool. A connection the server drops while idle (a restart, a
 * failover, an idle timeout) makes the pool emit 'error'; we listen, report it, and the pool discards
 * that connection and opens a new one on next use, so a server restart costs the calls made while it
 * is down (each fails with a retryable CONN_ERR_DB_UNAVAILABLE) and nothing else. Calls never wait
 * forever: a connection attempt gives up after `connectTimeoutMs`, a statement after
 * `statementTimeoutMs`.
 *
 * Writes. `apply` turns a batch into at most one statement per table (see statements.ts): records are
 * first reduced to the newest per id (the others count as stale, as the conformance suite states) and
 * sorted by id, so that concurrent batches lock rows in the same order and do not deadlock each other.
 * A batch of task upserts alone is a single statement and runs without an explicit transaction; any
 * other batch runs in one READ COMMITTED transaction, upserts first, then deletions. If the connection
 * is lost during COMMIT the outcome is unknown to us; the dispatcher retries, and the write is an
 * idempotent upsert, so either outcome ends in the same rows.
 *
 * Schema. All tables live in `schema` (default 'public'); `migrate()` creates the schema when missing
 * and applies the numbered migrations of migrations.ts inside one transaction that first takes a
 * transaction-scoped advisory lock for that schema, so processes starting together apply each
 * migration exactly once, one after the other, and a process that dies mid-migration leaves neither a
 * half-applied migration nor a held lock behind.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Attachment, Changes, Checkpoint, Deletion, Email, SourceName, Task } from '../../model.ts';
import type { Database, DatabaseCounts, DatabaseHealth, WriteResult } from '../database.ts';
import { attachmentRow, emailRow, newestById, rowToAttachment, rowToEmail, rowToTask, taskRow } from '../rows.ts';
import { POSTGRES_MIGRATIONS } from './migrations.ts';
import { toDbError } from './postgres-errors.ts';
import { POSTGRES_CELLS, plainRow, storableText, toJsonParam } from './postgres-rows.ts';
import { buildStatements, type Statements } from './statements.ts';
import { BatchDatabase } from '../batch-database.ts';

const SECOND = 1000;
/** The tables the worker writes, which health() checks it can write. */
const WRITTEN_TABLES = ['tasks', 'emails', 'attachments', 'checkpoints'] as const;
/** One round trip: recovery, read-only default, and the written tables missing or not writable ($1: qualified names). */
const HEALTH_SQL = `SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') AS read_only,
  ARRAY(SELECT t FROM unnest($1::text[]) AS t
    WHERE to_regclass(t) IS NULL OR NOT (has_table_privilege(to_regclass(t), 'INSERT') AND has_table_privilege(to_regclass(t), 'UPDATE'))) AS not_writable`;
/** Longest wait for another process's migration run (client-side limit). */
const MIGRATION_LOCK_WAIT_MS = 10 * 60 * SECOND;

export interface PostgresDatabaseOptions {
  /** A postgres:// URL (DATABASE_URL). */
  connectionString: string;
  /** Schema that holds the tables; `migrate()` creates it when missing. Default 'public'. */
  schema?: string;
  /** Most connections the pool keeps open. Default 10. */
  poolSize?: number;
  /** Milliseconds to wait for a connection (a free pool slot, or the server) before failing as unavailable. Default 10 s. */
  connectTimeoutMs?: number;
  /** Milliseconds a statement may run before the server cancels it (a retryable error). 0 = no limit. Default 60 s. */
  statementTimeoutMs?: number;
  /** Receives a warning when an idle pooled connection fails (e.g. the server restarted). Default: none. */
  log?: Logger;
  /** The clock for `synced_at` and checkpoint times. Default: the system clock. */
  now?: () => Date;
}

/** Something that runs a query: the pool (one statement, autocommit) or a client inside a transaction. */
interface Queryable {
  query<R extends pg.QueryResultRow>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

type Named = { name: string; text: string };

export class PostgresDatabase extends BatchDatabase implements Database {
  readonly backend = 'postgres' as const;
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly sql: Statements;
  private readonly named: Record<'taskUpsert' | 'emailUpsert' | 'taskTombstone' | 'emailTombstone' | 'attachmentsReplace', Named>;
  private readonly now: () => Date;
  private migrated = false;
  private closed = false;

  constructor(options: PostgresDatabaseOptions) {
    super();
    this.schema = options.schema ?? 'public';
    this.now = options.now ?? (() => new Date());
    this.sql = buildStatements(this.schema);
    const name = (text: string): Named => ({ name: `connector_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`, text });
    this.named = {
      taskUpsert: name(this.sql.taskUpsert),
      emailUpsert: name(this.sql.emailUpsert),
      taskTombstone: name(this.sql.taskTombstone),
      emailTombstone: name(this.sql.emailTombstone),
      attachmentsReplace: name(this.sql.attachmentsReplace),
    };
    const statementTimeoutMs = options.statementTimeoutMs ?? 60 * SECOND;
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10 * SECOND,
      idleTimeoutMillis: 30 * SECOND,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10 * SECOND,
      application_name: 'teamwork-missive-connector',
      // The server cancels a statement after statement_timeout; query_timeout, a little later, is the
      // client's own limit for when the server cannot even say so (a silent network partition).
      ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs, query_timeout: statementTimeoutMs + 5 * SECOND } : {}),
    });
    // Without a listener an idle connection's error (the server restarting) would crash the process.
    // The pool has already discarded the connection; the next query opens a new one.
    this.pool.on('error', (err) => {
      options.log?.warn({ err: { message: err.message, code: (err as { code?: unknown }).code } }, 'PostgreSQL dropped an idle connection; it will be replaced');
    });
  }

  async migrate(): Promise<void> {
    await this.guard('migrate', () =>
      this.transaction(async (client) => {
        // Waiting for another process's migration may take longer than a normal statement.
        await client.query('SET LOCAL statement_timeout = 0');
        await client.query({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [migrationLockKey(this.schema)], query_timeout: MIGRATION_LOCK_WAIT_MS } as pg.QueryConfig);
        const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema]);
        if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${this.sql.schema}`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${this.sql.migrationsTable} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`);
        const applied = new Set((await client.query<{ version: number }>(`SELECT version FROM ${this.sql.migrationsTable}`)).rows.map((r) => r.version));
        for (const migration of POSTGRES_MIGRATIONS) {
          if (applied.has(migration.version)) continue;
          await client.query(migration.sql(this.sql.schema));
          await client.query(`INSERT INTO ${this.sql.migrationsTable} (version, name, applied_at) VALUES ($1, $2, $3)`, [migration.version, migration.name, this.now()]);
        }
      }),
    );
    this.migrated = true;
  }

  async apply(changes: Changes): Promise<WriteResult> {
    this.ready();
    const tasks = byId(newestById(changes.tasks));
    const emails = byId(newestById(changes.emails));
    const deletedTasks = earliestDeletionById(changes.deletedTasks);
    const deletedEmails = earliestDeletionById(changes.deletedEmails);
    const result: WriteResult = { written: 0, stale: changes.tasks.length - tasks.length + (changes.emails.length - emails.length) };
    if (tasks.length + emails.length + deletedTasks.length + deletedEmails.length === 0) return result;

    const syncedAt = this.now();
    const write = async (db: Queryable): Promise<void> => {
      if (tasks.length > 0) {
        const written = await this.upsert(db, this.named.taskUpsert, tasks.map((t) => plainRow(taskRow(t, syncedAt))));
        result.written += written.length;
        result.stale += tasks.length - written.length;
      }
      if (emails.length > 0) {
        const written = await this.upsert(db, this.named.emailUpsert, emails.map((e) => plainRow(emailRow(e, syncedAt))));
        result.written += written.length;
        result.stale += emails.length - written.length;
        if (written.length > 0) await this.replaceAttachments(db, emails, new Set(written));
      }
      if (deletedTasks.length > 0) await this.markDeleted(db, this.named.taskTombstone, this.sql.taskSkippedDeletions, deletedTasks, syncedAt, result);
      if (deletedEmails.length > 0) await this.markDeleted(db, this.named.emailTombstone, this.sql.emailSkippedDeletions, deletedEmails, syncedAt, result);
    };
    const singleStatement = emails.length === 0 && deletedTasks.length === 0 && deletedEmails.length === 0;
    await this.guard('write', () => (singleStatement ? write(this.pool) : this.transaction(write)));
    return result;
  }

  async getTask(id: string): Promise<Task | null> {
    this.ready();
    const { rows } = await this.guard('read', () => this.pool.query<Record<string, unknown>>(this.sql.taskGet, [storableText(id)]));
    return rows[0] === undefined ? null : rowToTask(rows[0], POSTGRES_CELLS);
  }

  async getEmail(id: string): Promise<Email | null> {
    this.ready();
    const { rows } = await this.guard('read', () => this.pool.query<Record<string, unknown>>(this.sql.emailGet, [storableText(id)]));
    const row = rows[0];
    if (row === undefined) return null;
    const attachments = (row.attachments_json as Record<string, unknown>[]).map(rowToAttachment);
    return rowToEmail(row, attachments, POSTGRES_CELLS);
  }

  async getCheckpoint(source: SourceName): Promise<Checkpoint | null> {
    this.ready();
    const { rows } = await this.guard('read', () => this.pool.query<{ last_event_time: Date | null; last_cursor: string | null; updated_at: Date }>(this.sql.checkpointGet, [source]));
    const row = rows[0];
    if (row === undefined) return null;
    return { source, lastEventTime: row.last_event_time, lastCursor: row.last_cursor, updatedAt: row.updated_at };
  }

  async setCheckpoint(checkpoint: Checkpoint): Promise<void> {
    this.ready();
    const cursor = checkpoint.lastCursor === null ? null : storableText(checkpoint.lastCursor);
    const values = [checkpoint.source, checkpoint.lastEventTime, cursor, checkpoint.updatedAt ?? this.now()];
    await this.guard('write', () => this.pool.query(this.sql.checkpointSet, values));
  }

  /**
   * Whether the database takes writes now, not only whether it answers: a server in recovery or a
   * read-only default (a replica after a failover), and, once migrated, a table that is missing
   * (renamed) or that we may no longer write (a privilege revoked) make it not ok, naming the cause.
   */
  async health(): Promise<DatabaseHealth> {
    try {
      const tables = this.migrated ? WRITTEN_TABLES.map((t) => `${this.sql.schema}.${t}`) : [];
      const { rows } = await this.pool.query<{ in_recovery: boolean; read_only: string; not_writable: string[] }>(HEALTH_SQL, [tables]);
      const row = rows[0];
      const problems: string[] = [];
      if (row?.in_recovery === true) problems.push('the server is in recovery (a standby): read-only');
      else if (row?.read_only === 'on') problems.push('transactions are read-only (default_transaction_read_only is on: a replica, or set by an operator)');
      if (row !== undefined && row.not_writable.length > 0) problems.push(`cannot write ${row.not_writable.join(', ')} (table missing or INSERT/UPDATE privilege revoked)`);
      if (problems.length > 0) return { ok: false, backend: this.backend, detail: `PostgreSQL is not writable: ${problems.join('; ')}` };
      return { ok: true, backend: this.backend };
    } catch (err) {
      return { ok: false, backend: this.backend, detail: toDbError(err, 'PostgreSQL unreachable').message };
    }
  }

  async counts(): Promise<DatabaseCounts> {
    this.ready();
    const { rows } = await this.guard('read', () => this.pool.query<Record<keyof DatabaseCounts, string>>(this.sql.counts));
    const row = rows[0];
    return { tasks: Number(row?.tasks ?? 0), emails: Number(row?.emails ?? 0), attachments: Number(row?.attachments ?? 0) };
  }

  /** Closes every pooled connection. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** Runs an upsert statement over `rows`; returns the ids it inserted or updated. */
  private async upsert(db: Queryable, statement: Named, rows: Record<string, unknown>[]): Promise<string[]> {
    const { rows: written } = await db.query<{ id: string }>({ ...statement, values: [toJsonParam(rows)] });
    return written.map((r) => r.id);
  }

  /** Replaces the stored attachments of each written message by its current list. */
  private async replaceAttachments(db: Queryable, emails: readonly Email[], writtenIds: ReadonlySet<string>): Promise<void> {
    const written = emails.filter((e) => writtenIds.has(storableText(e.id)));
    // One row per attachment id: ON CONFLICT cannot touch the same row twice in one statement.
    const rows = new Map<string, Record<string, unknown>>();
    for (const email of written) email.attachments.forEach((a: Attachment, position) => rows.set(a.id, { ...plainRow(attachmentRow(a)), position }));
    await db.query({ ...this.named.attachmentsReplace, values: [[...writtenIds], toJsonParam([...rows.values()])] });
  }

  /**
   * Marks deleted (or stores tombstones for) `deletions`. Rows the statement skipped are still locked
   * by this transaction, so reading them right after tells exactly why each was skipped: already
   * deleted (a no-op) or updated after the deletion (stale).
   */
  private async markDeleted(db: Queryable, statement: Named, skippedSql: string, deletions: readonly Deletion[], syncedAt: Date, result: WriteResult): Promise<void> {
    const { rows } = await db.query<{ id: string }>({ ...statement, values: [toJsonParam(deletions), syncedAt] });
    result.written += rows.length;
    if (rows.length === deletions.length) return;
    const written = new Set(rows.map((r) => r.id));
    const skipped = deletions.map((d) => storableText(d.id)).filter((id) => !written.has(id));
    const { rows: stored } = await db.query<{ id: string; already_deleted: boolean }>({ text: skippedSql, values: [skipped] });
    result.stale += stored.filter((r) => !r.already_deleted).length;
  }

  /**
   * Runs `fn` in a transaction on one pooled connection. After an error the server reported (a
   * constraint, a deadlock) the transaction is rolled back and the connection reused; after any other
   * error (connection lost, client-side timeout with the statement maybe still running) the
   * connection is destroyed, which also ends the transaction on the server.
   */
  private async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // While checked out, the pool does not listen for this connection's errors; an unhandled 'error'
    // event (the server going away between two statements) would crash the process.
    const onError = (err: Error) => {
      broken = err;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const value = await fn(client);
      await client.query('COMMIT');
      return value;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const fromServer = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
      if (!fromServer) broken ??= err as Error;
      if (broken === undefined) {
        await client.query('ROLLBACK').catch((rollbackErr: Error) => {
          broken = rollbackErr;
        });
      }
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken ?? false);
    }
  }

  private ready(): void {
    if (this.closed) throw new ConnectorError('CONN_ERR_DB_REJECTED', 'PostgreSQL database used after close()');
    if (!this.migrated) throw new ConnectorError('CONN_ERR_DB_REJECTED', 'PostgreSQL database used before migrate()');
  }

  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toDbError(err, `PostgreSQL ${what} failed`);
    }
  }
}

/** The advisory lock key for migrating `schema`: a stable signed 64-bit number, as text. */
export function migrationLockKey(schema: string): string {
  return createHash('sha256').update(`teamwork-missive-connector:migrate:${schema}`).digest().readBigInt64BE(0).toString();
}

const compareIds = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Records in id order: every writer locks rows in the same order, so batches never deadlock each other. */
function byId<T extends { id: string }>(records: T[]): T[] {
  return records.sort(compareIds);
}

/**
 * One deletion per id, in id order: the earliest, the moment the record was first seen gone. Once it
 * is stored, further deletions of the same id are no-ops, as with separate calls.
 */
function earliestDeletionById(deletions: readonly Deletion[]): Deletion[] {
  const byIdMap = new Map<string, Deletion>();
  for (const d of deletions) {
    const seen = byIdMap.get(d.id);
    if (seen === undefined || d.at.getTime() < seen.at.getTime()) byIdMap.set(d.id, d);
  }
  return byId([...byIdMap.values()]);
}
