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

/** Whitespace trimmed from ids: space, tab, line feed, carriage return. */
const WS = `' ' || char(9, 10, 13)`;
const UUID_GLOB = ['[0-9a-f]'.repeat(8), '[0-9a-f]'.repeat(4), '[0-9a-f]'.repeat(4), '[0-9a-f]'.repeat(4), '[0-9a-f]'.repeat(12)].join('-');

/** A Teamwork id's canonical text in SQL (payloads.ts `canonicalId`): a whole number without leading zeros. */
function taskId(column: string): string {
  const t = `trim(${column}, ${WS})`;
  return `(CASE WHEN ${t} <> '' AND ${t} NOT GLOB '*[^0-9]*' THEN coalesce(nullif(ltrim(${t}, '0'), ''), '0') ELSE ${column} END)`;
}

/** A Missive id's canonical text in SQL (missive/payloads.ts `canonicalId`): trimmed, UUIDs lower case. */
function missiveId(column: string): string {
  const t = `trim(${column}, ${WS})`;
  return `(CASE WHEN lower(${t}) GLOB '${UUID_GLOB}' THEN lower(${t}) ELSE ${t} END)`;
}

/**
 * Deletes every row of `table` but one per canonical id: the one with the newest version (the later of
 * updated_at and deleted_at; none is oldest), then the one already under the canonical id, then the
 * latest synced. Times are ISO-8601 text of one length, so text order is time order.
 */
function keepNewest(table: string, canonical: string): string {
  return `DELETE FROM ${table} WHERE rowid IN (
      SELECT rowid FROM (
        SELECT rowid, row_number() OVER (
          PARTITION BY ${canonical}
          ORDER BY max(coalesce(updated_at, ''), coalesce(deleted_at, '')) DESC, (id = ${canonical}) DESC, synced_at DESC
        ) AS rank FROM ${table}
      ) WHERE rank > 1
    );`;
}

/**
 * Version 2 (issue 14, item 4): ids used to be stored as the vendor spelled them, so `4343` and `04343`
 * (or a UUID in two cases) were two rows of one task or message. Each group of rows with one canonical
 * id is merged into one row under that id, keeping the newest version; the ids rows refer to (project,
 * tasklist, parent, conversation, attachments' message) are made canonical too. Foreign keys are
 * checked at commit, so a message can be renamed before its attachments follow.
 */
function canonicalIdsSql(): string {
  return `
      PRAGMA defer_foreign_keys = ON;
      ${keepNewest('tasks', taskId('id'))}
      UPDATE tasks SET id = ${taskId('id')} WHERE id <> ${taskId('id')};
      UPDATE tasks SET project_id = ${taskId('project_id')} WHERE project_id <> ${taskId('project_id')};
      UPDATE tasks SET tasklist_id = ${taskId('tasklist_id')} WHERE tasklist_id <> ${taskId('tasklist_id')};
      UPDATE tasks SET parent_task_id = ${taskId('parent_task_id')} WHERE parent_task_id <> ${taskId('parent_task_id')};

      ${keepNewest('emails', missiveId('id'))}
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
