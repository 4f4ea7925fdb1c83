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
];
