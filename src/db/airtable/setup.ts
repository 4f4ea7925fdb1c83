/**
 * Creating the connector's Airtable tables and fields (`npm run airtable-setup`, and
 * AirtableDatabase.migrate()). Idempotent and additive, because the metadata API can neither delete
 * tables or fields nor change a field's type (stack.md §1.5):
 * - a missing table is created with all its fields (the key field first, so it is the primary field);
 * - a missing field is added;
 * - nothing is ever deleted or changed. A field that exists with another type, or with another
 *   spelling of its name, is reported as a problem for the operator to fix in Airtable.
 * Several processes may run it at once: when a create fails because another process just made the
 * same table or field, the schema is read again and the run goes on.
 *
 * `npm run airtable-setup` (not migrate()) then merges records stored under other spellings of one id
 * (mergeDuplicateIds): the one place where the connector deletes Airtable records, and only duplicates.
 *
 * Scopes: reading the schema needs schema.bases:read; creating needs schema.bases:write and the base
 * creator role. A token without schema.bases:read can still run the connector if the tables exist:
 * `verifyThroughRecords` checks them with one list request per table naming every field.
 */
import { ConnectorError } from '../../errors.ts';
import type { Config } from '../../config.ts';
import type { Logger } from '../../log.ts';
import { ApiError } from '../../http/http-client.ts';
import { canonicalEmailId, canonicalTaskId, type Attachment } from '../../model.ts';
import { AirtableClient, MAX_RECORDS_PER_REQUEST, airtableErrorOf, type AirtableClientOptions, type AirtableTable } from './airtable-client.ts';
import { SETUP_COMMAND, toDatabaseError } from './airtable-errors.ts';
import { AIRTABLE_TABLES, EMAILS_TABLE, F, TASKS_TABLE, filesFingerprint, versionFromRecord, type TableDef } from './schema.ts';

export interface SchemaReport {
  baseId: string;
  /** Connector table name -> the id to address it by (`tbl…`), or its name when the id is unknown. */
  tableIds: Record<string, string>;
  createdTables: string[];
  createdFields: Array<{ table: string; field: string }>;
  /** Fields with another type or spelling than the connector writes: for an operator to fix. */
  problems: string[];
  /** Records deleted or renamed by `airtable-setup` to leave one record per canonical id (mergeDuplicateIds). */
  mergedRecords?: number;
}

export interface SetupOptions {
  log: Logger;
  /** The tables to ensure. Default the connector's ("Tasks", "Emails"). */
  tables?: readonly TableDef[];
}

/** Creates what is missing and reports what differs. Throws a CONN_ERR_DB_* ConnectorError. */
export async function ensureAirtableSchema(client: AirtableClient, options: SetupOptions): Promise<SchemaReport> {
  const { log } = options;
  const defs = options.tables ?? AIRTABLE_TABLES;
  const report: SchemaReport = { baseId: client.baseId, tableIds: {}, createdTables: [], createdFields: [], problems: [] };
  const read = async (): Promise<AirtableTable[]> => {
    try {
      return await client.listTables();
    } catch (err) {
      throw toDatabaseError(err, { baseId: client.baseId, action: 'schema-read' });
    }
  };
  let tables = await read();

  for (const def of defs) {
    let table = findByName(tables, def.name);
    if (table === undefined) {
      try {
        table = await client.createTable({ name: def.name, description: def.description, fields: def.fields });
        report.createdTables.push(def.name);
        log.info({ table: def.name, tableId: table.id, fields: def.fields.length }, `created Airtable table ${def.name}`);
      } catch (err) {
        if (!isDuplicate(err)) throw schemaWriteError(err, client.baseId, def.name);
        tables = await read();
        table = findByName(tables, def.name);
        if (table === undefined) throw schemaWriteError(err, client.baseId, def.name);
      }
    }
    if (table.name !== def.name) report.problems.push(`table '${table.name}' should be named '${def.name}'`);
    report.tableIds[def.name] = table.id;

    for (const field of def.fields) {
      const exact = table.fields.find((f) => f.name === field.name);
      if (exact !== undefined) {
        if (exact.type !== field.type) report.problems.push(`field '${field.name}' in table ${def.name} is ${exact.type}; the connector writes ${field.type}`);
        continue;
      }
      const other = table.fields.find((f) => f.name.toLowerCase() === field.name.toLowerCase());
      if (other !== undefined) {
        report.problems.push(`field '${other.name}' in table ${def.name} should be named '${field.name}' (the API matches names exactly)`);
        continue;
      }
      try {
        const created = await client.createField(table.id, field);
        table.fields.push(created);
        report.createdFields.push({ table: def.name, field: field.name });
        log.info({ table: def.name, field: field.name, type: field.type }, `added field '${field.name}' to Airtable table ${def.name}`);
      } catch (err) {
        if (!isDuplicate(err)) throw schemaWriteError(err, client.baseId, def.name);
      }
    }
  }
  for (const problem of report.problems) log.warn({ baseId: client.baseId }, `Airtable schema: ${problem}`);
  return report;
}

/**
 * Checks, with only data.records:read, that every table and field exists: one list request per table
 * naming every field (Airtable refuses unknown field names with 422, unknown tables with 403).
 */
export async function verifyThroughRecords(client: AirtableClient, defs: readonly TableDef[] = AIRTABLE_TABLES): Promise<SchemaReport> {
  const report: SchemaReport = { baseId: client.baseId, tableIds: {}, createdTables: [], createdFields: [], problems: [] };
  for (const def of defs) {
    try {
      await client.listRecords(def.name, { pageSize: 1, fields: def.fields.map((f) => f.name) });
    } catch (err) {
      throw toDatabaseError(err, { baseId: client.baseId, table: def.name, action: 'read' });
    }
    report.tableIds[def.name] = def.name;
  }
  return report;
}

/** Settings setup needs (a subset of Config, so the CLI and tests can pass just these). */
export type AirtableSettings = Pick<Config, 'AIRTABLE_TOKEN' | 'AIRTABLE_BASE_ID' | 'AIRTABLE_BASE_URL'>;

/**
 * `npm run airtable-setup`: creates the connector's tables and fields in AIRTABLE_BASE_ID and logs
 * what it did and what an operator should fix. Safe to run any number of times.
 */
export async function airtableSetup(
  config: AirtableSettings,
  options: { log: Logger } & Pick<AirtableClientOptions, 'fetch' | 'limiter' | 'maxAttempts' | 'rateLimitPauseMs'>,
): Promise<SchemaReport> {
  const { log, ...clientOptions } = options;
  if (config.AIRTABLE_TOKEN === undefined) throw new ConnectorError('CONN_ERR_CONFIG_INVALID', 'Invalid setting AIRTABLE_TOKEN: required for airtable-setup', { details: { variable: 'AIRTABLE_TOKEN' } });
  if (config.AIRTABLE_BASE_ID === undefined) throw new ConnectorError('CONN_ERR_CONFIG_INVALID', 'Invalid setting AIRTABLE_BASE_ID: required for airtable-setup', { details: { variable: 'AIRTABLE_BASE_ID' } });
  const client = new AirtableClient({ token: config.AIRTABLE_TOKEN, baseId: config.AIRTABLE_BASE_ID, baseUrl: config.AIRTABLE_BASE_URL, log, ...clientOptions });
  const report = await ensureAirtableSchema(client, { log });
  // A table created just now holds no record to merge: reading it would only spend the base's
  // 5 requests a second (a command run right after would meet Airtable's 30 s penalty).
  const existing = Object.fromEntries(Object.entries(report.tableIds).filter(([name]) => !report.createdTables.includes(name)));
  report.mergedRecords = await mergeDuplicateIds(client, existing, { log });
  const changed = report.createdTables.length + report.createdFields.length;
  log.info(
    { baseId: report.baseId, createdTables: report.createdTables, createdFields: report.createdFields.length, problems: report.problems.length, mergedRecords: report.mergedRecords },
    changed === 0 ? `Airtable base ${report.baseId} already has every table and field` : `Airtable base ${report.baseId}: created ${report.createdTables.length} tables and ${report.createdFields.length} fields`,
  );
  return report;
}

/** The canonical spelling of each table's key (model.ts), and the version fields the merge compares. */
const CANONICAL_KEYS: Array<{ def: TableDef; canonical: (id: string) => string }> = [
  { def: TASKS_TABLE, canonical: canonicalTaskId },
  { def: EMAILS_TABLE, canonical: canonicalEmailId },
];

/** What the merge knows of one stored record. */
interface Stored {
  recordId: string;
  key: string;
  updatedAt: number | null;
  deleted: boolean;
  deletedAt: number | null;
  syncedAt: number;
  /** Whether it has data: a tombstone (a deletion of an id never seen) has no Raw. */
  hasRaw: boolean;
  /** Emails: the parsed Attachment Details. */
  attachments: Attachment[];
}

/**
 * The kept record first, by the order of the SQL migrations (version 2, mergeGroups): the newest
 * Updated At (none last), a live record before a deleted one, one with data before a tombstone, the
 * one already spelled canonically, the latest synced.
 */
function keeperOrder(id: string): (a: Stored, b: Stored) => number {
  return (a, b) =>
    (b.updatedAt ?? -Infinity) - (a.updatedAt ?? -Infinity) ||
    Number(a.deleted) - Number(b.deleted) ||
    Number(b.hasRaw) - Number(a.hasRaw) ||
    Number(b.key === id) - Number(a.key === id) ||
    b.syncedAt - a.syncedAt;
}

/**
 * One record per canonical id (issue 14, item 4): records written before ids were canonical (`04343`
 * beside `4343`, a UUID in two cases) are merged, as the live write path would have had it written
 * them all under one id (the SQL migrations do the same):
 * - the data comes whole from the newest version (keeperOrder), which gets the canonical key;
 * - the group's newest deletion is applied on top (Deleted, Deleted At) when it is not older than
 *   that version; an older one is stale;
 * - an email keeps the attachments of every record of its group, one per canonical attachment id,
 *   its own first;
 * - the other records are deleted.
 * Run by `airtable-setup` only, not by every start: it reads every record of both tables (one request
 * per 100 records). New writes need nothing: sources hand the backend canonical ids. Returns how many
 * records it deleted or changed.
 */
export async function mergeDuplicateIds(client: AirtableClient, tableIds: Record<string, string>, options: { log: Logger }): Promise<number> {
  let changed = 0;
  for (const { def, canonical } of CANONICAL_KEYS) {
    const table = tableIds[def.name];
    if (table === undefined) continue; // not there before this run: nothing to merge
    const isEmails = def === EMAILS_TABLE;
    const groups = new Map<string, Stored[]>();
    try {
      const fields = [def.key, F.updatedAt, F.deleted, F.deletedAt, F.syncedAt, 'Raw', ...(isEmails ? [F.attachmentDetails] : [])];
      for await (const page of client.listAll(table, { fields })) {
        for (const record of page) {
          const key = record.fields[def.key];
          if (typeof key !== 'string' || key === '') continue;
          const { updatedAt, deleted, deletedAt } = versionFromRecord(record.fields);
          const details = isEmails ? parseList(record.fields[F.attachmentDetails]) : [];
          const syncedAt = Date.parse(String(record.fields[F.syncedAt] ?? ''));
          const stored: Stored = { recordId: record.id, key, updatedAt, deleted, deletedAt, syncedAt: Number.isNaN(syncedAt) ? -Infinity : syncedAt, hasRaw: typeof record.fields.Raw === 'string' && record.fields.Raw !== '', attachments: details };
          const id = canonical(key);
          const group = groups.get(id) ?? [];
          group.push(stored);
          groups.set(id, group);
        }
      }
      const doomed: string[] = [];
      const updates: Array<{ id: string; fields: Record<string, unknown> }> = [];
      for (const [id, group] of groups) {
        if (group.length === 1 && group[0]?.key === id) continue;
        group.sort(keeperOrder(id));
        const [keep, ...others] = group as [Stored, ...Stored[]];
        const fields: Record<string, unknown> = {};
        if (keep.key !== id) fields[def.key] = id;
        const deletion = Math.max(...group.map((r) => (r.deleted && r.deletedAt !== null ? r.deletedAt : -Infinity)));
        if (deletion !== -Infinity && (keep.updatedAt === null || deletion >= keep.updatedAt) && !(keep.deleted && keep.deletedAt === deletion)) {
          fields[F.deleted] = true;
          fields[F.deletedAt] = new Date(deletion).toISOString();
        }
        const merged = isEmails ? mergeAttachments(id, group) : [];
        if (JSON.stringify(merged) !== JSON.stringify(keep.attachments)) {
          fields[F.attachmentDetails] = JSON.stringify(merged);
          fields[F.attachmentCount] = merged.length;
          // The files are written again (by URL, as emailFields does) only when they change.
          if (filesFingerprint(merged) !== filesFingerprint(keep.attachments)) fields[F.attachments] = attachmentFiles(merged);
        }
        doomed.push(...others.map((r) => r.recordId));
        if (Object.keys(fields).length > 0) updates.push({ id: keep.recordId, fields });
        options.log.info({ table: def.name, id, kept: keep.key, deleted: others.map((r) => r.key) }, `merged Airtable records of ${def.key} ${id} into one`);
      }
      // Deletions first, so that no two records ever share the canonical key.
      for (let i = 0; i < doomed.length; i += MAX_RECORDS_PER_REQUEST) await client.deleteRecords(table, doomed.slice(i, i + MAX_RECORDS_PER_REQUEST));
      for (let i = 0; i < updates.length; i += MAX_RECORDS_PER_REQUEST) await client.updateRecords(table, updates.slice(i, i + MAX_RECORDS_PER_REQUEST));
      changed += doomed.length + updates.length;
    } catch (err) {
      throw toDatabaseError(err, { baseId: client.baseId, table: def.name, action: 'write' });
    }
  }
  return changed;
}

/** The attachments of every record of a group (the kept one first), one per canonical id, under `emailId`. */
function mergeAttachments(emailId: string, group: readonly Stored[]): Attachment[] {
  const byId = new Map<string, Attachment>();
  for (const record of group) {
    for (const attachment of record.attachments) {
      const id = canonicalEmailId(String(attachment.id));
      if (!byId.has(id)) byId.set(id, { ...attachment, id, emailId });
    }
  }
  return [...byId.values()];
}

/** As schema.ts emailFields writes them: the files with an http(s) URL, by URL. */
function attachmentFiles(attachments: readonly Attachment[]): Array<{ url: string; filename?: string }> | null {
  const files = attachments
    .filter((a) => a.url !== null && /^https?:\/\//i.test(a.url))
    .map((a) => (a.filename === null ? { url: a.url as string } : { url: a.url as string, filename: a.filename }));
  return files.length === 0 ? null : files;
}

function parseList(value: unknown): Attachment[] {
  if (typeof value !== 'string' || value === '') return [];
  try {
    const list: unknown = JSON.parse(value);
    return Array.isArray(list) ? list.filter((a): a is Attachment => typeof a === 'object' && a !== null && typeof (a as { id?: unknown }).id === 'string') : [];
  } catch {
    return [];
  }
}

function findByName(tables: readonly AirtableTable[], name: string): AirtableTable | undefined {
  return tables.find((t) => t.name === name) ?? tables.find((t) => t.name.toLowerCase() === name.toLowerCase());
}

/** Another process created the same table or field a moment ago. */
function isDuplicate(err: unknown): boolean {
  if (!(err instanceof ApiError) || err.status !== 422) return false;
  const { type } = airtableErrorOf(err.body);
  return type === 'DUPLICATE_TABLE_NAME' || type === 'DUPLICATE_OR_EMPTY_FIELD_NAME';
}

function schemaWriteError(err: unknown, baseId: string, table: string): ConnectorError {
  const converted = toDatabaseError(err, { baseId, table, action: 'schema-write' });
  if (converted.status !== 403) return converted;
  return new ConnectorError(
    'CONN_ERR_DB_REJECTED',
    `Airtable refused to create table ${table} or its fields in base ${baseId} (403): the token needs scope schema.bases:write and the creator role on the base. ` +
      `Run \`${SETUP_COMMAND}\` with such a token, or add the missing tables and fields by hand`,
    { cause: err, status: 403, details: converted.details },
  );
}
