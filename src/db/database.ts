/**
 * The Database contract: where canonical records end up. SQLite (embedded default), PostgreSQL and
 * Airtable implement it and pass one conformance suite (test/db/conformance.ts).
 *
 * What callers may rely on, whatever the backend:
 * - Upserts are keyed by the vendor's id: writing the same record twice leaves one row.
 * - Stale-write guard: a record whose `updatedAt` is older than the stored version (its `updatedAt`,
 *   or its `deletedAt` once deleted) is skipped and counted in `stale`; an equal time writes again
 *   (idempotent). A record without `updatedAt` never overwrites a stored row that has a version (it
 *   counts as stale); a stored row without one (written before versions were required) is overwritten
 *   by any versioned record.
 * - Deletes are soft: `deleted` and `deletedAt` are set and the row is kept. `markTaskDeleted` on an id
 *   never seen stores a tombstone row with only the id and the deletion. A later, newer upsert with
 *   `deleted: false` clears them (undelete).
 * - Checkpoints never move backwards: `setCheckpoint` with an older `lastEventTime` keeps the newer one.
 * - A backend that cannot be reached throws a retryable ConnectorError (`CONN_ERR_DB_UNAVAILABLE`), so
 *   the dispatcher backs off and retries; a write the backend refuses throws `CONN_ERR_DB_REJECTED`.
 * - `apply` writes all of a batch's changes; on a SQL backend in one transaction.
 *
 * No driver type crosses this contract.
 */
import type { Changes, Checkpoint, Deletion, Email, SourceName, Task } from '../model.ts';

export interface WriteResult {
  /** Rows created or changed. */
  written: number;
  /** Records skipped by the stale-write guard. */
  stale: number;
}

export interface DatabaseHealth {
  ok: boolean;
  backend: Database['backend'];
  /** What is wrong, when not ok. */
  detail?: string;
}

export interface DatabaseCounts {
  tasks: number;
  emails: number;
  attachments: number;
}

export interface Database {
  readonly backend: 'sqlite' | 'postgres' | 'airtable';
  /** Creates or migrates tables. Safe to call from several processes at once. */
  migrate(): Promise<void>;
  upsertTask(task: Task): Promise<WriteResult>;
  upsertTasks(tasks: readonly Task[]): Promise<WriteResult>;
  upsertEmail(email: Email): Promise<WriteResult>;
  upsertEmails(emails: readonly Email[]): Promise<WriteResult>;
  markTaskDeleted(id: string, at: Date): Promise<WriteResult>;
  markEmailDeleted(id: string, at: Date): Promise<WriteResult>;
  /** Writes every change in the batch (upserts first, then deletions). */
  apply(changes: Changes): Promise<WriteResult>;
  /** The stored task (tombstones included), or null. */
  getTask(id: string): Promise<Task | null>;
  /** The stored email with its attachments, or null. */
  getEmail(id: string): Promise<Email | null>;
  getCheckpoint(source: SourceName): Promise<Checkpoint | null>;
  setCheckpoint(checkpoint: Checkpoint): Promise<void>;
  health(): Promise<DatabaseHealth>;
  counts(): Promise<DatabaseCounts>;
  close(): Promise<void>;
}

export type { Changes, Checkpoint, Deletion, Email, Task };
