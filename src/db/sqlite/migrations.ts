/**
 * SQLite schema, as numbered migrations applied once each, in order, and recorded in
 * `schema_migrations`. Never edit a migration that has shipped: add the next one. Columns are those of
 * docs/schema.md; times are UTC ISO-8601 text, lists and raw payloads JSON text, booleans 0/1.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Whitespace trimmed from ids: space, tab, line feed, carriage return, and nothing else, exactly as
 * model.ts `trimIdSpace` (a test feeds both the same inputs). ASCII only on purpose: SQLite's trim()
 * and PostgreSQL's btrim() agree on these four whatever the database encoding, where a Unicode set
 * (no-break space, U+FEFF, ...) would depend on the encoding and on each side's Unicode tables.
 */
const WS = `' ' || char(9, 10, 13)`;
const UUID_GLOB = ['[0-9a-f]'.repeat(8), '[0-9a-f]'.repeat(4), '[0-9a-f]'.repeat(4), '[0-9a-f]'.repeat(4), '[0-9a-f]'.repeat(12)].join('-');

/** model.ts `canonicalTaskId` in SQL: trimmed; a whole number without leading zeros. */
function taskId(column: string): string {
  const t = `trim(${column}, ${WS})`;
  return `(CASE WHEN ${t} <> '' AND ${t} NOT GLOB '*[^0-9]*' THEN coalesce(nullif(ltrim(${t}, '0'), ''), '0') ELSE ${t} END)`;
}

/** model.ts `canonicalEmailId` in SQL: trimmed, UUIDs lower case. */
function missiveId(column: string): string {
  const t = `trim(${column}, ${WS})`;
  return `(CASE WHEN lower(${t}) GLOB '${UUID_GLOB}' THEN lower(${t}) ELSE ${t} END)`;
}

/** The SQL of model.ts's canonical id functions, for the test that holds both to one rule. */
export const SQLITE_CANONICAL_ID = { task: taskId, email: missiveId };

/**
 * Merges each group of rows of `table` that share a canonical id into one row, as the live write path
 * would have had it written all of them under one id (SqliteDatabase upsertRow and markDeleted):
 * - The data comes whole from the newest version: the row with the latest updated_at; among rows
 *   without one (written before versions were required), a live one before a deleted one (a tombstone
 *   has no data), then the one already under the canonical id, then the latest synced.
 * - The group's newest deletion is applied on top of it when it is not older than that version
 *   (deleted, deleted_at); an older deletion is stale, as markDeleted would have found it.
 * - `beforeDelete` runs between the two, with `merge_rows` (id, keeper) naming each row of a group and
 *   the row its group keeps: the emails' attachments move to the kept row there.
 * The other rows are deleted; renaming the kept row to the canonical id is left to the caller. Times
 * are ISO-8601 text of one length, so text order is time order.
 */
function mergeGroups(table: string, canonical: string, beforeDelete = ''): string {
  return `
      CREATE TEMP TABLE merge_rows AS
        SELECT id, keeper, deletion FROM (
          SELECT id,
            first_value(id) OVER (PARTITION BY c ORDER BY updated_at IS NULL, updated_at DESC, deleted, raw IS NULL, id = c DESC, synced_at DESC, id) AS keeper,
            max(CASE WHEN deleted = 1 THEN deleted_at END) OVER (PARTITION BY c) AS deletion,
            count(*) OVER (PARTITION BY c) AS n
          FROM (SELECT *, ${canonical} AS c FROM ${table})
        ) WHERE n > 1;
      UPDATE ${table} SET deleted = 1, deleted_at = m.deletion
        FROM merge_rows m
        WHERE ${table}.id = m.id AND m.id = m.keeper AND m.deletion IS NOT NULL AND m.deletion >= coalesce(${table}.updated_at, '');
      ${beforeDelete}
      DELETE FROM ${table} WHERE id IN (SELECT id FROM merge_rows WHERE id <> keeper);
      DROP TABLE merge_rows;`;
}

/**
 * Before the emails a merge drops are deleted (which cascades to their attachments), their attachments
 * move to the kept email; one attachment is kept per canonical attachment id, the kept email's own
 * first.
 */
const MOVE_ATTACHMENTS = `
      DELETE FROM attachments WHERE rowid IN (
        SELECT r FROM (
          SELECT a.rowid AS r, row_number() OVER (
            PARTITION BY ${missiveId('a.id')}
            ORDER BY (m.id IS NULL OR m.id = m.keeper) DESC, (a.id = ${missiveId('a.id')}) DESC, a.rowid DESC
          ) AS rank
          FROM attachments a LEFT JOIN merge_rows m ON m.id = a.email_id
        ) WHERE rank > 1
      );
      UPDATE attachments SET email_id = (SELECT keeper FROM merge_rows m WHERE m.id = attachments.email_id)
        WHERE email_id IN (SELECT id FROM merge_rows WHERE id <> keeper);`;

/**
 * Version 2 (issue 14, item 4): ids used to be stored as the vendor spelled them, so `4343` and `04343`
 * (or a UUID in two cases) were two rows of one task or message. Each group of rows with one canonical
 * id is merged into one row under that id (mergeGroups); the ids rows refer to (project, tasklist,
 * parent, conversation, attachments' message) are made canonical too. Foreign keys are checked at
 * commit, so a message can be renamed before its attachments follow.
 */
function canonicalIdsSql(): string {
  return `
      PRAGMA defer_foreign_keys = ON;
      ${mergeGroups('tasks', taskId('id'))}
      UPDATE tasks SET id = ${taskId('id')} WHERE id <> ${taskId('id')};
      UPDATE tasks SET project_id = ${taskId('project_id')} WHERE project_id <> ${taskId('project_id')};
      UPDATE tasks SET tasklist_id = ${taskId('tasklist_id')} WHERE tasklist_id <> ${taskId('tasklist_id')};
      UPDATE tasks SET parent_task_id = ${taskId('parent_task_id')} WHERE parent_task_id <> ${taskId('parent_task_id')};

      ${mergeGroups('emails', missiveId('id'), MOVE_ATTACHMENTS)}
      UPDATE emails SET id = ${missiveId('id')} WHERE id <> ${missiveId('id')};
      UPDATE emails SET conversation_id = ${missiveId('conversation_id')} WHERE conversation_id <> ${missiveId('conversation_id')};
      UPDATE attachments SET email_id = ${missiveId('email_id')} WHERE email_id <> ${missiveId('email_id')};
      DELETE FROM attachments WHERE rowid IN (
        SELECT rowid FROM (
          SELECT rowid, row_number() OVER (PARTITION BY ${missiveId('id')} ORDER BY (id = ${missiveId('id')}) DESC, rowid DESC) AS rank FROM attachments
        ) WHERE rank > 1
      );
      UPDATE attachments SET id = ${missiveId('id')} WHERE id <> ${missiveId('id')};
    `;
}

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'canonical tables',
    sql: `
      CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        title TEXT,
        description TEXT,
        status TEXT,
        priority TEXT,
        progress REAL,
        project_id TEXT,
        project_name TEXT,
        tasklist_id TEXT,
        tasklist_name TEXT,
        parent_task_id TEXT,
        assignees TEXT NOT NULL DEFAULT '[]',
        tags TEXT NOT NULL DEFAULT '[]',
        start_date TEXT,
        due_date TEXT,
        estimate_minutes REAL,
        created_at TEXT,
        updated_at TEXT,
        completed_at TEXT,
        created_by TEXT,
        updated_by TEXT,
        url TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        deleted_at TEXT,
        raw TEXT,
        synced_at TEXT NOT NULL
      );
      CREATE INDEX tasks_updated_at ON tasks (updated_at);
      CREATE INDEX tasks_project_id ON tasks (project_id);

      CREATE TABLE emails (
        id TEXT PRIMARY KEY,
        conversation_id TEXT,
        subject TEXT,
        preview TEXT,
        from_name TEXT,
        from_address TEXT,
        "to" TEXT NOT NULL DEFAULT '[]',
        cc TEXT NOT NULL DEFAULT '[]',
        bcc TEXT NOT NULL DEFAULT '[]',
        reply_to TEXT NOT NULL DEFAULT '[]',
        body_html TEXT,
        body_text TEXT,
        delivered_at TEXT,
        created_at TEXT,
        updated_at TEXT,
        message_id_header TEXT,
        in_reply_to TEXT NOT NULL DEFAULT '[]',
        "references" TEXT NOT NULL DEFAULT '[]',
        labels TEXT NOT NULL DEFAULT '[]',
        assignees TEXT NOT NULL DEFAULT '[]',
        conversation_url TEXT,
        draft INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        deleted_at TEXT,
        raw TEXT,
        synced_at TEXT NOT NULL
      );
      CREATE INDEX emails_conversation_id ON emails (conversation_id);
      CREATE INDEX emails_delivered_at ON emails (delivered_at);

      CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        email_id TEXT NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
        filename TEXT,
        media_type TEXT,
        size INTEGER,
        url TEXT,
        stored_path TEXT,
        sha256 TEXT
      );
      CREATE INDEX attachments_email_id ON attachments (email_id);

      CREATE TABLE checkpoints (
        source TEXT PRIMARY KEY,
        last_event_time TEXT,
        last_cursor TEXT,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'canonical ids: merge rows stored under another spelling of the same id',
    sql: canonicalIdsSql(),
  },
];
