/**
 * Every SQL statement the PostgreSQL backend runs, built once per schema. Table names are always
 * schema-qualified, so nothing depends on a connection's search_path. Write statements take a whole
 * batch as one `json` parameter (see postgres-rows.ts) and have fixed text, so each is prepared once per
 * connection and reused.
 *
 * The stale-write guard is the rule of rows.ts `isStale`, written as the ON CONFLICT condition:
 * an incoming version is written when it is at least the later of the stored `updated_at` and
 * `deleted_at` (a record without a version only where the stored row has none either). ON CONFLICT DO UPDATE locks the conflicting row before evaluating the
 * condition and evaluates it against the newest committed version, so concurrent writers cannot let
 * an older version win; RETURNING lists exactly the rows inserted or updated, which makes the counts
 * exact. The rows the condition skipped stay locked until the transaction ends.
 */
import { ATTACHMENT_COLUMNS, EMAIL_COLUMNS, TASK_COLUMNS } from '../rows.ts';

/** `"name"`, with embedded quotes doubled: a safe SQL identifier for any name. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

const q = quoteIdentifier;
const list = (columns: readonly string[]) => columns.map(q).join(', ');

/** Stored attachment columns: the canonical ones plus `position` (order within the message). */
export const STORED_ATTACHMENT_COLUMNS = [...ATTACHMENT_COLUMNS, 'position'] as const;

function upsert(table: string, rowType: string, columns: readonly string[], guard: string | null): string {
  const updates = columns.filter((c) => c !== 'id').map((c) => `${q(c)} = excluded.${q(c)}`).join(', ');
  return [
    `INSERT INTO ${table} AS t (${list(columns)})`,
    `SELECT ${list(columns)} FROM json_populate_recordset(NULL::${rowType}, $1::json)`,
    `ON CONFLICT (id) DO UPDATE SET ${updates}`,
    guard === null ? '' : `WHERE ${guard}`,
    'RETURNING t.id',
  ].join('\n');
}

/**
 * isStale (rows.ts) negated: write when the incoming version is not older than the stored one (a stored
 * row without any version counts as older than every version); an incoming record without a version
 * writes only over a row that has none either.
 */
const NOT_STALE = `(excluded.updated_at IS NULL AND t.updated_at IS NULL AND t.deleted_at IS NULL)
  OR excluded.updated_at >= GREATEST(coalesce(t.updated_at, '-infinity'), coalesce(t.deleted_at, '-infinity'))`;

/**
 * A deletion writes unless the row is already deleted (a no-op, not stale) or was updated after the
 * deletion time (stale). A never-seen id gets a tombstone: the id, the deletion, and column defaults.
 */
function tombstone(table: string): string {
  return `INSERT INTO ${table} AS t (id, deleted, deleted_at, synced_at)
    SELECT d.id, true, d.at, $2::timestamptz FROM json_to_recordset($1::json) AS d(id text, at timestamptz)
    ON CONFLICT (id) DO UPDATE SET deleted = true, deleted_at = excluded.deleted_at, synced_at = excluded.synced_at
    WHERE NOT (t.deleted AND t.deleted_at IS NOT NULL) AND (t.updated_at IS NULL OR excluded.deleted_at >= t.updated_at)
    RETURNING t.id`;
}

/** Why the rows a tombstone statement skipped were skipped: already deleted (no-op) or stale. */
function skippedDeletions(table: string): string {
  return `SELECT id, (deleted AND deleted_at IS NOT NULL) AS already_deleted FROM ${table} WHERE id = ANY($1::text[])`;
}

export type Statements = ReturnType<typeof buildStatements>;

/** All statements for the schema `schema` (unquoted name). */
export function buildStatements(schema: string) {
  const s = q(schema);
  const tasks = `${s}.tasks`;
  const emails = `${s}.emails`;
  const attachments = `${s}.attachments`;
  const checkpoints = `${s}.checkpoints`;
  const attachmentUpdates = STORED_ATTACHMENT_COLUMNS.filter((c) => c !== 'id').map((c) => `${q(c)} = excluded.${q(c)}`).join(', ');
  return {
    schema: s,
    migrationsTable: `${s}.schema_migrations`,

    taskUpsert: upsert(tasks, tasks, TASK_COLUMNS, NOT_STALE),
    emailUpsert: upsert(emails, emails, EMAIL_COLUMNS, NOT_STALE),
    taskTombstone: tombstone(tasks),
    emailTombstone: tombstone(emails),
    taskSkippedDeletions: skippedDeletions(tasks),
    emailSkippedDeletions: skippedDeletions(emails),

    /**
     * Makes the stored attachments of the written messages ($1, ids) exactly $2 (json rows): removes
     * those no longer listed, upserts the rest. One statement: the DELETE and the INSERT touch
     * different rows.
     */
    attachmentsReplace: `WITH incoming AS (
        SELECT * FROM json_populate_recordset(NULL::${attachments}, $2::json)
      ), removed AS (
        DELETE FROM ${attachments} a
        WHERE a.email_id = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.id = a.id)
      )
      INSERT INTO ${attachments} (${list(STORED_ATTACHMENT_COLUMNS)})
      SELECT ${list(STORED_ATTACHMENT_COLUMNS)} FROM incoming
      ON CONFLICT (id) DO UPDATE SET ${attachmentUpdates}`,

    taskGet: `SELECT ${list(TASK_COLUMNS)} FROM ${tasks} WHERE id = $1`,
    /** The message and its attachments in one snapshot; attachments as a json array in vendor order. */
    emailGet: `SELECT ${list(EMAIL_COLUMNS)},
        (SELECT coalesce(json_agg(json_build_object(${ATTACHMENT_COLUMNS.map((c) => `'${c}', a.${q(c)}`).join(', ')}) ORDER BY a.position, a.id), '[]')
         FROM ${attachments} a WHERE a.email_id = e.id) AS attachments_json
      FROM ${emails} e WHERE e.id = $1`,

    checkpointGet: `SELECT source, last_event_time, last_cursor, updated_at FROM ${checkpoints} WHERE source = $1`,
    /** Checkpoints never move backwards: an older last_event_time leaves the stored one. */
    checkpointSet: `INSERT INTO ${checkpoints} AS c (source, last_event_time, last_cursor, updated_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (source) DO UPDATE SET last_event_time = excluded.last_event_time, last_cursor = excluded.last_cursor, updated_at = excluded.updated_at
      WHERE c.last_event_time IS NULL OR excluded.last_event_time >= c.last_event_time`,

    counts: `SELECT (SELECT count(*) FROM ${tasks}) AS tasks, (SELECT count(*) FROM ${emails}) AS emails, (SELECT count(*) FROM ${attachments}) AS attachments`,
  };
}
