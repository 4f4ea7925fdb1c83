/**
 * PostgreSQL schema, as numbered migrations applied once each, in order, and recorded in
 * `schema_migrations`. Never edit a migration that has shipped: add the next one. Tables and columns
 * are those of the SQLite backend (docs/schema.md), with PostgreSQL's own types: times are
 * `timestamptz`, lists and raw payloads `jsonb`, flags `boolean`.
 *
 * `start_date` and `due_date` stay `text` holding `YYYY-MM-DD`, as in every backend: they are calendar
 * days with no zone, and a `date` column would depend on the server's DateStyle to read them back and
 * would refuse a day the vendor got wrong (a whole batch lost to one 2026-02-30). Query them as dates
 * with `start_date::date`.
 *
 * Each migration is a function of the schema name, already quoted, so every statement names its
 * tables in full and never depends on the connection's search_path.
 */
export interface PostgresMigration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

/**
 * Whitespace trimmed from ids: space, tab, line feed, carriage return, and nothing else, exactly as
 * model.ts `trimIdSpace` (a test feeds both the same inputs). ASCII only on purpose: btrim() and
 * SQLite's trim() agree on these four whatever the database encoding, where a Unicode set (no-break
 * space, U+FEFF, ...) would depend on the encoding and on each side's Unicode tables.
 */
const WS = `' ' || chr(9) || chr(10) || chr(13)`;

/** model.ts `canonicalTaskId` in SQL: trimmed; a whole number without leading zeros. */
function taskId(column: string): string {
  const t = `btrim(${column}, ${WS})`;
  return `(CASE WHEN ${t} ~ '^[0-9]+$' THEN coalesce(nullif(ltrim(${t}, '0'), ''), '0') ELSE ${t} END)`;
}

/** model.ts `canonicalEmailId` in SQL: trimmed, UUIDs lower case. */
function missiveId(column: string): string {
  const t = `btrim(${column}, ${WS})`;
  return `(CASE WHEN ${t} ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN lower(${t}) ELSE ${t} END)`;
}

/** The SQL of model.ts's canonical id functions, for the test that holds both to one rule. */
export const POSTGRES_CANONICAL_ID = { task: taskId, email: missiveId };

/**
 * Merges each group of rows of `table` that share a canonical id into one row, as the live write path
 * would have had it written all of them under one id (statements.ts upsert and tombstone):
 * - The data comes whole from the newest version: the row with the latest updated_at; among rows
 *   without one (written before versions were required), a live one before a deleted one (a tombstone
 *   has no data), then the one already under the canonical id, then the latest synced.
 * - The group's newest deletion is applied on top of it when it is not older than that version
 *   (deleted, deleted_at); an older deletion is stale, as the tombstone statement would have found it.
 * - `beforeDelete` runs between the two, with `merge_rows` (id, keeper) naming each row of a group and
 *   the row its group keeps: the emails' attachments move to the kept row there.
 * The other rows are deleted; renaming the kept row to the canonical id is left to the caller.
 */
function mergeGroups(table: string, canonical: string, beforeDelete = ''): string {
  return `
      CREATE TEMP TABLE merge_rows ON COMMIT DROP AS
        SELECT id, keeper, deletion FROM (
          SELECT id,
            first_value(id) OVER (PARTITION BY c ORDER BY updated_at DESC NULLS LAST, deleted, raw IS NULL, id = c DESC, synced_at DESC, id) AS keeper,
            max(deleted_at) FILTER (WHERE deleted) OVER (PARTITION BY c) AS deletion,
            count(*) OVER (PARTITION BY c) AS n
          FROM (SELECT *, ${canonical} AS c FROM ${table}) r
        ) g WHERE n > 1;
      UPDATE ${table} x SET deleted = true, deleted_at = m.deletion
        FROM pg_temp.merge_rows m
        WHERE x.id = m.id AND m.id = m.keeper AND m.deletion IS NOT NULL AND (x.updated_at IS NULL OR m.deletion >= x.updated_at);
      ${beforeDelete}
      DELETE FROM ${table} WHERE id IN (SELECT id FROM pg_temp.merge_rows WHERE id <> keeper);
      DROP TABLE pg_temp.merge_rows;`;
}

/**
 * Before the emails a merge drops are deleted (which cascades to their attachments), their attachments
 * move to the kept email; one attachment is kept per canonical attachment id, the kept email's own
 * first.
 */
function moveAttachments(s: string): string {
  return `
      DELETE FROM ${s}.attachments x USING (
        SELECT a.id, row_number() OVER (
          PARTITION BY ${missiveId('a.id')}
          ORDER BY (m.id IS NULL OR m.id = m.keeper) DESC, (a.id = ${missiveId('a.id')}) DESC, a.id
        ) AS rank
        FROM ${s}.attachments a LEFT JOIN pg_temp.merge_rows m ON m.id = a.email_id
      ) r WHERE x.id = r.id AND r.rank > 1;
      UPDATE ${s}.attachments a SET email_id = m.keeper
        FROM pg_temp.merge_rows m WHERE a.email_id = m.id AND m.id <> m.keeper;`;
}

/**
 * Version 2 (issue 14, item 4): ids used to be stored as the vendor spelled them, so `4343` and `04343`
 * (or a UUID in two cases) were two rows of one task or message. Each group of rows with one canonical
 * id is merged into one row under that id (mergeGroups); the ids rows refer to (project, tasklist,
 * parent, conversation, attachments' message) are made canonical too. The attachments' foreign key
 * now cascades updates, so a message renamed here (or by hand) keeps its attachments.
 */
function canonicalIdsSql(s: string): string {
  return `
      ALTER TABLE ${s}.attachments DROP CONSTRAINT IF EXISTS attachments_email_id_fkey;
      ALTER TABLE ${s}.attachments ADD CONSTRAINT attachments_email_id_fkey FOREIGN KEY (email_id) REFERENCES ${s}.emails (id) ON DELETE CASCADE ON UPDATE CASCADE;

      ${mergeGroups(`${s}.tasks`, taskId('id'))}
      UPDATE ${s}.tasks SET id = ${taskId('id')} WHERE id <> ${taskId('id')};
      UPDATE ${s}.tasks SET project_id = ${taskId('project_id')} WHERE project_id <> ${taskId('project_id')};
      UPDATE ${s}.tasks SET tasklist_id = ${taskId('tasklist_id')} WHERE tasklist_id <> ${taskId('tasklist_id')};
      UPDATE ${s}.tasks SET parent_task_id = ${taskId('parent_task_id')} WHERE parent_task_id <> ${taskId('parent_task_id')};

      ${mergeGroups(`${s}.emails`, missiveId('id'), moveAttachments(s))}
      UPDATE ${s}.emails SET id = ${missiveId('id')} WHERE id <> ${missiveId('id')};
      UPDATE ${s}.emails SET conversation_id = ${missiveId('conversation_id')} WHERE conversation_id <> ${missiveId('conversation_id')};
      DELETE FROM ${s}.attachments x USING (
        SELECT id, row_number() OVER (PARTITION BY ${missiveId('id')} ORDER BY (id = ${missiveId('id')}) DESC, id) AS rank FROM ${s}.attachments
      ) r WHERE x.id = r.id AND r.rank > 1;
      UPDATE ${s}.attachments SET id = ${missiveId('id')} WHERE id <> ${missiveId('id')};
    `;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'canonical tables',
    sql: (s) => `
      CREATE TABLE ${s}.tasks (
        id text PRIMARY KEY,
        title text,
        description text,
        status text,
        priority text,
        progress double precision,
        project_id text,
        project_name text,
        tasklist_id text,
        tasklist_name text,
        parent_task_id text,
        assignees jsonb NOT NULL DEFAULT '[]',
        tags jsonb NOT NULL DEFAULT '[]',
        start_date text,
        due_date text,
        estimate_minutes double precision,
        created_at timestamptz,
        updated_at timestamptz,
        completed_at timestamptz,
        created_by jsonb,
        updated_by jsonb,
        url text,
        deleted boolean NOT NULL DEFAULT false,
        deleted_at timestamptz,
        raw jsonb,
        synced_at timestamptz NOT NULL
      );
      CREATE INDEX tasks_updated_at ON ${s}.tasks (updated_at);
      CREATE INDEX tasks_project_id ON ${s}.tasks (project_id);

      CREATE TABLE ${s}.emails (
        id text PRIMARY KEY,
        conversation_id text,
        subject text,
        preview text,
        from_name text,
        from_address text,
        "to" jsonb NOT NULL DEFAULT '[]',
        cc jsonb NOT NULL DEFAULT '[]',
        bcc jsonb NOT NULL DEFAULT '[]',
        reply_to jsonb NOT NULL DEFAULT '[]',
        body_html text,
        body_text text,
        delivered_at timestamptz,
        created_at timestamptz,
        updated_at timestamptz,
        message_id_header text,
        in_reply_to jsonb NOT NULL DEFAULT '[]',
        "references" jsonb NOT NULL DEFAULT '[]',
        labels jsonb NOT NULL DEFAULT '[]',
        assignees jsonb NOT NULL DEFAULT '[]',
        conversation_url text,
        draft boolean NOT NULL DEFAULT false,
        deleted boolean NOT NULL DEFAULT false,
        deleted_at timestamptz,
        raw jsonb,
        synced_at timestamptz NOT NULL
      );
      CREATE INDEX emails_conversation_id ON ${s}.emails (conversation_id);
      CREATE INDEX emails_delivered_at ON ${s}.emails (delivered_at);

      -- position: the attachment's place in its message's list, so a message reads back in the
      -- vendor's order (SQLite keeps insertion order by rowid; PostgreSQL has no such order).
      CREATE TABLE ${s}.attachments (
        id text PRIMARY KEY,
        email_id text NOT NULL REFERENCES ${s}.emails (id) ON DELETE CASCADE,
        filename text,
        media_type text,
        size bigint,
        url text,
        stored_path text,
        sha256 text,
        position integer NOT NULL DEFAULT 0
      );
      CREATE INDEX attachments_email_id ON ${s}.attachments (email_id);

      CREATE TABLE ${s}.checkpoints (
        source text PRIMARY KEY,
        last_event_time timestamptz,
        last_cursor text,
        updated_at timestamptz NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'canonical ids: merge rows stored under another spelling of the same id',
    sql: (s) => canonicalIdsSql(s),
  },
];

