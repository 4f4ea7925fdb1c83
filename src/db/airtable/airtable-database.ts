/**
 * AirtableDatabase: canonical records in an Airtable base ("Tasks" and "Emails", see schema.ts),
 * written through our client (airtable-client.ts) with upserts keyed on "Task ID" / "Email ID".
 *
 * A batch of records is written in chunks of at most 10 distinct ids (Airtable's limit per request).
 * Each chunk costs two requests:
 *   1. read: one list request, filterByFormula OR({Task ID}='a', {Task ID}='b', …), returning only the
 *      stored version fields ("Updated At", "Deleted", "Deleted At"; for emails also "Attachment
 *      Details");
 *   2. write: one upsert (PATCH with performUpsert on the key, typecast on) of the records that are not
 *      stale. The same id twice in a batch is decided in order, as the SQL backends do, and only the
 *      last record that won is sent.
 * The stale-write rule is the one of every backend (rows.ts `isStale`): a record older than the stored
 * `updatedAt` (or `deletedAt`, once deleted) is skipped and counted in `stale`; equal times write.
 *
 * The race this leaves: Airtable cannot compare-and-set, so between our read (1) and our write (2)
 * another writer could store a newer version, which our write would then overwrite with an older one.
 * That needs two writers of the same record within one round trip (a few hundred milliseconds). The
 * connector has one writer per record: the worker never runs two events for the same entity at once
 * (the dispatcher's `entityKey` rule), whatever its concurrency. So the guard is exact for the
 * deployment we support with Airtable, one worker process per base; several worker processes against
 * one base would weaken it to "newest wins, except within a round trip" (and would share Airtable's
 * 5 requests/s anyway, so they buy nothing). People editing the tables by hand are another writer:
 * their edits are overwritten by the next sync.
 *
 * Other differences from the SQL backends, all because Airtable has no transactions:
 * - `apply` is not atomic: each chunk is atomic in Airtable, but a failure after the first chunk leaves
 *   the earlier chunks written. Retrying the whole batch is safe: upserts are idempotent and equal
 *   versions write again.
 * - Text over 100,000 characters is cut with a visible marker (schema.ts `cutText`).
 * - Checkpoints are files, not rows (file-checkpoints.ts).
 * - `counts()` pages through both tables (100 records per request): for a base of 10,000 records
 *   that is 100 requests, about 20 seconds at Airtable's rate. It is meant for the dashboard and doctor,
 *   not for a hot path.
 */
import { pino } from 'pino';
import type { Config } from '../../config.ts';
import { ConnectorError } from '../../errors.ts';
import type { Clock } from '../../http/clock.ts';
import type { RateLimiter } from '../../http/rate-limiter.ts';
import type { Logger } from '../../log.ts';
import { SECOND } from '../../retry-policy.ts';
import type { Changes, Checkpoint, Deletion, Email, SourceName, Task } from '../../model.ts';
import type { Database, DatabaseCounts, DatabaseHealth, WriteResult } from '../database.ts';
import { isStale } from '../rows.ts';
import { AirtableClient, MAX_RECORDS_PER_REQUEST, formulaString, type AirtableRecord } from './airtable-client.ts';
import { toDatabaseError, type AirtableAction } from './airtable-errors.ts';
import { FileCheckpoints } from './file-checkpoints.ts';
import {
  EMAILS_TABLE,
  F,
  TASKS_TABLE,
  deletionFields,
  emailFields,
  emailFromFields,
  filesFingerprint,
  taskFields,
  taskFromFields,
  versionFromRecord,
  type StoredVersion,
  type TableDef,
} from './schema.ts';
import { ensureAirtableSchema, verifyThroughRecords } from './setup.ts';

export interface AirtableDatabaseOptions {
  /** Personal access token (AIRTABLE_TOKEN). */
  token: string;
  /** `app…` (AIRTABLE_BASE_ID). */
  baseId: string;
  /** Default https://api.airtable.com (AIRTABLE_BASE_URL). */
  baseUrl?: string;
  /** Where checkpoint files go: `${DATA_DIR}/checkpoints`. */
  checkpointDir: string;
  /** Default: silent. */
  log?: Logger;
  /** Our write time ("Synced At"). Default `new Date()`. */
  now?: () => Date;
  /** How long `health()` may take, ms. Default 10 s. */
  healthTimeoutMs?: number;
  /** Per-request timeout, ms. Default 30 s. */
  timeoutMs?: number;
  /** Attempts per request for network errors, timeouts, 429 and 5xx. Default 5. */
  maxAttempts?: number;
  /** How long a 429 pauses every request to the base, ms. Default 30 s (Airtable's lockout). */
  rateLimitPauseMs?: number;
  /** The base's shared budget. Default the process-wide limiter of the base (5 requests per 1.1 s). */
  limiter?: RateLimiter;
  clock?: Clock;
  fetch?: typeof fetch;
}

/** What differs between the two tables for the write path. */
interface Kind<T extends { id: string; updatedAt: Date | null; deleted: boolean; deletedAt: Date | null }> {
  def: TableDef;
  /** Fields the stale-write guard reads. */
  versionFields: readonly string[];
  fields(record: T, stored: StoredVersion | undefined, syncedAt: Date): Record<string, unknown>;
}

const TASKS: Kind<Task> = {
  def: TASKS_TABLE,
  versionFields: [F.taskId, F.updatedAt, F.deleted, F.deletedAt],
  fields: (task, _stored, syncedAt) => taskFields(task, syncedAt),
};

const EMAILS: Kind<Email> = {
  def: EMAILS_TABLE,
  versionFields: [F.emailId, F.updatedAt, F.deleted, F.deletedAt, F.attachmentDetails],
  fields: (email, stored, syncedAt) => emailFields(email, syncedAt, { sameFiles: stored !== undefined && stored.files === filesFingerprint(email.attachments) }),
};

/** The in-batch state of one id: what the stored version is after the writes decided so far. */
interface State {
  updatedAt: Date | null;
  deleted: boolean;
  deletedAt: Date | null;
}

export class AirtableDatabase implements Database {
  readonly backend = 'airtable' as const;
  private readonly client: AirtableClient;
  /** Single attempt, for health(): a health check reports, it does not wait out retries. */
  private readonly probe: AirtableClient;
  private readonly checkpoints: FileCheckpoints;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly healthTimeoutMs: number;
  /** How to address each table: its id after migrate(), its name before. */
  private tableIds: Record<string, string> = { [TASKS_TABLE.name]: TASKS_TABLE.name, [EMAILS_TABLE.name]: EMAILS_TABLE.name };

  constructor(options: AirtableDatabaseOptions) {
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'db', backend: 'airtable' });
    this.now = options.now ?? (() => new Date());
    this.healthTimeoutMs = options.healthTimeoutMs ?? 10 * SECOND;
    const shared = {
      token: options.token,
      baseId: options.baseId,
      log: this.log,
      ...(options.baseUrl === undefined ? {} : { baseUrl: options.baseUrl }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.rateLimitPauseMs === undefined ? {} : { rateLimitPauseMs: options.rateLimitPauseMs }),
      ...(options.limiter === undefined ? {} : { limiter: options.limiter }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    };
    this.client = new AirtableClient({ ...shared, ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }) });
    // Same limiter as the writer: health checks count against the base's budget too.
    this.probe = new AirtableClient({ ...shared, limiter: this.client.limiter, maxAttempts: 1 });
    this.checkpoints = new FileCheckpoints(options.checkpointDir);
  }

  get baseId(): string {
    return this.client.baseId;
  }

  /**
   * Creates missing tables and fields (see setup.ts). With a token that may not read the schema, checks
   * the tables through the records API instead and leaves creating them to `npm run airtable-setup`.
   */
  async migrate(): Promise<void> {
    try {
      const report = await ensureAirtableSchema(this.client, { log: this.log });
      this.tableIds = report.tableIds;
    } catch (err) {
      if (!(err instanceof ConnectorError) || err.status !== 403 || err.details?.action !== 'schema-read') throw err;
      this.log.warn({ baseId: this.baseId }, 'the Airtable token cannot read the base schema (scope schema.bases:read); checking the tables through the records API instead');
      await verifyThroughRecords(this.client);
      this.tableIds = { [TASKS_TABLE.name]: TASKS_TABLE.name, [EMAILS_TABLE.name]: EMAILS_TABLE.name };
    }
  }

  upsertTask(task: Task): Promise<WriteResult> {
    return this.upsertTasks([task]);
  }

  upsertTasks(tasks: readonly Task[]): Promise<WriteResult> {
    return this.write(TASKS, tasks);
  }

  upsertEmail(email: Email): Promise<WriteResult> {
    return this.upsertEmails([email]);
  }

  upsertEmails(emails: readonly Email[]): Promise<WriteResult> {
    return this.write(EMAILS, emails);
  }

  markTaskDeleted(id: string, at: Date): Promise<WriteResult> {
    return this.markDeleted(TASKS_TABLE, [{ id, at }]);
  }

  markEmailDeleted(id: string, at: Date): Promise<WriteResult> {
    return this.markDeleted(EMAILS_TABLE, [{ id, at }]);
  }

  async apply(changes: Changes): Promise<WriteResult> {
    const total: WriteResult = { written: 0, stale: 0 };
    const add = (r: WriteResult) => {
      total.written += r.written;
      total.stale += r.stale;
    };
    if (changes.tasks.length > 0) add(await this.write(TASKS, changes.tasks));
    if (changes.emails.length > 0) add(await this.write(EMAILS, changes.emails));
    if (changes.deletedTasks.length > 0) add(await this.markDeleted(TASKS_TABLE, changes.deletedTasks));
    if (changes.deletedEmails.length > 0) add(await this.markDeleted(EMAILS_TABLE, changes.deletedEmails));
    return total;
  }

  async getTask(id: string): Promise<Task | null> {
    const record = await this.findOne(TASKS_TABLE, id);
    return record === null ? null : taskFromFields(record.fields);
  }

  async getEmail(id: string): Promise<Email | null> {
    const record = await this.findOne(EMAILS_TABLE, id);
    return record === null ? null : emailFromFields(record.fields);
  }

  getCheckpoint(source: SourceName): Promise<Checkpoint | null> {
    return this.checkpoints.get(source);
  }

  setCheckpoint(checkpoint: Checkpoint): Promise<void> {
    return this.checkpoints.set(checkpoint, this.now());
  }

  /** One list request for one record of Tasks, within `healthTimeoutMs`. */
  async health(): Promise<DatabaseHealth> {
    const signal = AbortSignal.timeout(this.healthTimeoutMs);
    try {
      await this.probe.listRecords(this.table(TASKS_TABLE), { pageSize: 1, fields: [TASKS_TABLE.key], signal });
      return { ok: true, backend: this.backend };
    } catch (err) {
      if (signal.aborted) {
        const paused = this.client.limiter.stats().pausedUntil;
        const why = paused === undefined ? '' : ' (requests to this base are paused after Airtable answered 429)';
        return { ok: false, backend: this.backend, detail: `Airtable base ${this.baseId} did not answer within ${this.healthTimeoutMs} ms${why}` };
      }
      return { ok: false, backend: this.backend, detail: toDatabaseError(err, { baseId: this.baseId, table: TASKS_TABLE.name, action: 'read' }).message };
    }
  }

  async counts(): Promise<DatabaseCounts> {
    const counts: DatabaseCounts = { tasks: 0, emails: 0, attachments: 0 };
    await this.call(TASKS_TABLE, 'read', async () => {
      for await (const page of this.client.listAll(this.table(TASKS_TABLE), { fields: [TASKS_TABLE.key] })) counts.tasks += page.length;
    });
    await this.call(EMAILS_TABLE, 'read', async () => {
      for await (const page of this.client.listAll(this.table(EMAILS_TABLE), { fields: [EMAILS_TABLE.key, F.attachmentCount] })) {
        counts.emails += page.length;
        for (const record of page) {
          const n = record.fields[F.attachmentCount];
          if (typeof n === 'number') counts.attachments += n;
        }
      }
    });
    return counts;
  }

  async close(): Promise<void> {
    // Nothing to release: requests use fetch's shared keep-alive pool, and the base's rate limiter is
    // shared with the rest of the process.
  }

  /** Upserts records in chunks of distinct ids, skipping stale ones (see the header). */
  private async write<T extends { id: string; updatedAt: Date | null; deleted: boolean; deletedAt: Date | null }>(kind: Kind<T>, records: readonly T[]): Promise<WriteResult> {
    const result: WriteResult = { written: 0, stale: 0 };
    const byId = groupById(records);
    const syncedAt = this.now();
    for (const ids of chunks([...byId.keys()], MAX_RECORDS_PER_REQUEST)) {
      const stored = await this.readVersions(kind.def, kind.versionFields, ids);
      const writes: Array<{ fields: Record<string, unknown> }> = [];
      for (const id of ids) {
        const before = stored.get(id);
        let state: State | undefined = before;
        let winner: T | undefined;
        for (const record of byId.get(id) as T[]) {
          if (state !== undefined && isStale(record.updatedAt, state.updatedAt, state.deletedAt)) {
            result.stale += 1;
            continue;
          }
          result.written += 1;
          winner = record;
          state = { updatedAt: record.updatedAt, deleted: record.deleted, deletedAt: record.deletedAt };
        }
        if (winner !== undefined) writes.push({ fields: kind.fields(winner, before, syncedAt) });
      }
      await this.upsert(kind.def, writes);
    }
    return result;
  }

  /**
   * Marks records deleted, or stores a tombstone for an id never seen. A record already deleted is left
   * as it is (not counted); a deletion older than the stored update is stale.
   */
  private async markDeleted(def: TableDef, deletions: readonly Deletion[]): Promise<WriteResult> {
    const result: WriteResult = { written: 0, stale: 0 };
    const byId = groupById(deletions);
    const syncedAt = this.now();
    for (const ids of chunks([...byId.keys()], MAX_RECORDS_PER_REQUEST)) {
      const stored = await this.readVersions(def, [def.key, F.updatedAt, F.deleted, F.deletedAt], ids);
      const writes: Array<{ fields: Record<string, unknown> }> = [];
      for (const id of ids) {
        let state: State | undefined = stored.get(id);
        let winner: Deletion | undefined;
        for (const deletion of byId.get(id) as Deletion[]) {
          if (state !== undefined && state.deleted && state.deletedAt !== null) continue;
          if (state !== undefined && isStale(deletion.at, state.updatedAt, null)) {
            result.stale += 1;
            continue;
          }
          result.written += 1;
          winner = deletion;
          state = { updatedAt: state?.updatedAt ?? null, deleted: true, deletedAt: deletion.at };
        }
        if (winner !== undefined) writes.push({ fields: deletionFields(def.key, id, winner.at, syncedAt) });
      }
      await this.upsert(def, writes);
    }
    return result;
  }

  /** The stored versions of `ids` (at most 10), by id, in one list request. */
  private async readVersions(def: TableDef, fields: readonly string[], ids: readonly string[]): Promise<Map<string, StoredVersion>> {
    const versions = new Map<string, StoredVersion>();
    await this.call(def, 'read', async () => {
      for await (const page of this.client.listAll(this.table(def), { filterByFormula: keyFormula(def.key, ids), fields })) {
        for (const record of page) {
          const id = String(record.fields[def.key] ?? '');
          if (versions.has(id)) {
            throw new ConnectorError(
              'CONN_ERR_DB_REJECTED',
              `Airtable table ${def.name} has more than one record with ${def.key} '${id}'; upserts need the key to be unique. Delete the duplicates in Airtable`,
              { details: { baseId: this.baseId, table: def.name, id } },
            );
          }
          versions.set(id, versionFromRecord(record.id, record.fields));
        }
      }
    });
    return versions;
  }

  private async upsert(def: TableDef, writes: ReadonlyArray<{ fields: Record<string, unknown> }>): Promise<void> {
    if (writes.length === 0) return;
    const answer = await this.call(def, 'write', () => this.client.upsertRecords(this.table(def), writes, [def.key]));
    this.log.debug({ table: def.name, created: answer.createdRecords.length, updated: answer.updatedRecords.length }, 'airtable upsert');
  }

  private async findOne(def: TableDef, id: string): Promise<AirtableRecord | null> {
    const page = await this.call(def, 'read', () => this.client.listRecords(this.table(def), { filterByFormula: keyFormula(def.key, [id]), pageSize: 1 }));
    return page.records[0] ?? null;
  }

  private table(def: TableDef): string {
    return this.tableIds[def.name] ?? def.name;
  }

  /** Runs one client call, turning its failure into a Database error that names the table. */
  private async call<R>(def: TableDef, action: AirtableAction, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      throw toDatabaseError(err, { baseId: this.baseId, table: def.name, action });
    }
  }
}

/** The backend for this process's settings (DB_BACKEND=airtable). */
export function createAirtableDatabase(config: Config, options: { log?: Logger } = {}): AirtableDatabase {
  if (config.AIRTABLE_TOKEN === undefined || config.AIRTABLE_BASE_ID === undefined) {
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', 'Invalid setting AIRTABLE_TOKEN / AIRTABLE_BASE_ID: required when DB_BACKEND=airtable');
  }
  return new AirtableDatabase({
    token: config.AIRTABLE_TOKEN,
    baseId: config.AIRTABLE_BASE_ID,
    baseUrl: config.AIRTABLE_BASE_URL,
    checkpointDir: config.checkpointDir,
    ...(options.log === undefined ? {} : { log: options.log }),
  });
}

/** `{Key}='a'` for one id, `OR({Key}='a',{Key}='b',…)` for several. */
export function keyFormula(key: string, ids: readonly string[]): string {
  const terms = ids.map((id) => `{${key}}=${formulaString(id)}`);
  return terms.length === 1 ? (terms[0] as string) : `OR(${terms.join(',')})`;
}

function groupById<T extends { id: string }>(items: readonly T[]): Map<string, T[]> {
  const byId = new Map<string, T[]>();
  for (const item of items) {
    const list = byId.get(item.id);
    if (list === undefined) byId.set(item.id, [item]);
    else list.push(item);
  }
  return byId;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

