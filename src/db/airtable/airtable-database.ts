/**
 * AirtableDatabase: canonical records in an Airtable base ("Tasks" and "Emails", see schema.ts),
 * written through our client (airtable-client.ts) with upserts keyed on "Task ID" / "Email ID".
 *
 * The stale-write rule is the one of every backend (rows.ts `isStale`): a record older than the stored
 * `updatedAt` (or `deletedAt`, once deleted) is skipped and counted in `stale`; equal times write.
 * Airtable cannot compare-and-set, so the guard needs each record's stored version before writing it.
 *
 * Requests of one `apply` (or `upsertTasks`, ...) per table:
 *   1. versions: the ids whose stored version this process does not know (see "Version cache") are
 *      read with as few list requests as possible: up to 100 ids per request (Airtable's page size),
 *      filterByFormula OR({Task ID}='a', {Task ID}='b', …) of at most MAX_FORMULA_LENGTH characters,
 *      returning only the version fields. Ids of upserts and of deletions are read together. An id
 *      already known costs nothing;
 *   2. writes: one upsert (PATCH with performUpsert on the key, typecast on) per 10 records that are not
 *      stale. The same id twice in a batch is decided in order, as the SQL backends do, and only the
 *      last record that won is sent.
 * A batch of 50 records never seen costs 1 read and 5 writes; the same 50 again costs 5 writes. At
 * our budget of 5 requests per 1.1 s per base that is about 38 and 45 records/s.
 *
 * Version cache (version-cache.ts): a bounded LRU of stored versions per table and key, default
 * 100,000 entries (at most about 20-30 MB). Reads (1.) fill it; after each successful upsert, the
 * entries of its records are replaced by what Airtable answered, which holds every field of each
 * record as stored, so an entry is exactly what a read right after our write would return.
 * Why it is right: this backend is the only writer of its tables (one worker process per base, and
 * within it the dispatcher never runs two events of one entity at once; see docs/airtable.md). Then a
 * record's stored version changes only through our own upserts, each of which refreshes the entry, so
 * an entry equals what a read would return. Where that premise fails, and what follows:
 * - Restart (or a new AirtableDatabase): the cache starts empty, so every id is read again before its
 *   first write; nothing is trusted that this process has not seen. `migrate()` clears it too.
 * - A write whose outcome is unknown (timeout, network error, 5xx after the retries, any refusal): its
 *   ids are dropped from the cache before the error is thrown, so they are read again next time.
 *   Otherwise a write that reached Airtable but whose answer was lost would leave the older version
 *   cached, and a version between the two could later overwrite the newer one.
 * - Someone edits a record by hand: the cache does not see it. Our next write of that record is
 *   decided against the version we last stored or read, so it overwrites the hand edit only when our
 *   record is not older by its vendor time, which is the contract anyway (hand edits are overwritten
 *   by the next sync, as the table descriptions say). A hand edit of "Updated At" itself goes unseen
 *   until a restart or the entry's eviction; a record deleted by hand is created again by its next
 *   newer version, not by a replay of an older one.
 * - A second process writing the same base (not a supported deployment): either process's cache may
 *   hold a version older than the other's write for as long as the entry lives, not just for one
 *   round trip, so an older record could overwrite a newer one. Run one worker process per base (two
 *   would share the 5 requests/s anyway).
 * Two lanes of this process writing the same id at once is excluded by the dispatcher; if it happened,
 * the race is the one without a cache (read, then write, with no compare-and-set).
 *
 * Other differences from the SQL backends, all because Airtable has no transactions:
 * - `apply` is not atomic: each chunk is atomic in Airtable, but a failure after the first chunk leaves
 *   the earlier chunks written. Retrying the whole batch is safe: upserts are idempotent and equal
 *   versions write again.
 * - Text over 100,000 characters is cut with a visible marker (schema.ts `cutText`).
 * - Checkpoints are files, not rows (file-checkpoints.ts); with a shared queue (QUEUE_BACKEND=redis or
 *   postgres, workers on several hosts) they live in the queue's engine instead (engine-checkpoints.ts).
 * - `counts()` pages through both tables (100 records per request): for a base of 10,000 records
 *   that is 100 requests, about 20 seconds at Airtable's rate. It is meant for doctor, not for a hot path.
 */
import { pino } from 'pino';
import type { Config } from '../../config.ts';
import { ConnectorError } from '../../errors.ts';
import type { Clock } from '../../http/clock.ts';
import type { RateLimiter } from '../../http/rate-limiter.ts';
import type { BudgetStore } from '../../budget/budget-store.ts';
import type { Logger } from '../../log.ts';
import { SECOND } from '../../retry-policy.ts';
import type { Changes, Checkpoint, Deletion, Email, SourceName, Task } from '../../model.ts';
import type { Database, DatabaseCounts, DatabaseHealth, WriteResult } from '../database.ts';
import { isStale } from '../rows.ts';
import { AirtableClient, MAX_PAGE_SIZE, MAX_RECORDS_PER_REQUEST, formulaString, type AirtableRecord, type UpsertAnswer } from './airtable-client.ts';
import { toDatabaseError, type AirtableAction } from './airtable-errors.ts';
import type { CheckpointRecords } from './engine-checkpoints.ts';
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
import { DEFAULT_VERSION_CACHE_SIZE, VersionCache } from './version-cache.ts';

/** Most ids one version read asks for: Airtable's largest page, so one read is one request. */
export const MAX_IDS_PER_READ = 100;
/**
 * Longest filterByFormula of one version read, in characters. Reads send it in a POST body, which has
 * no URL limit; the bound keeps each formula (evaluated by Airtable against every record of the table)
 * modest, and well under the 16,000-character URL limit should it ever travel in a URL.
 */
export const MAX_FORMULA_LENGTH = 10_000;

export interface AirtableDatabaseOptions {
  /** Personal access token (AIRTABLE_TOKEN). */
  token: string;
  /** `app…` (AIRTABLE_BASE_ID). */
  baseId: string;
  /** Default https://api.airtable.com (AIRTABLE_BASE_URL). */
  baseUrl?: string;
  /** Where checkpoint files go: `${DATA_DIR}/checkpoints`. */
  checkpointDir: string;
  /** Where checkpoints are kept instead of files (the queue's engine, with a shared queue). */
  checkpoints?: CheckpointRecords;
  /** Default: silent. */
  log?: Logger;
  /** Our write time ("Synced At"). Default `new Date()`. */
  now?: () => Date;
  /**
   * Most stored versions remembered for the stale-write guard, both tables together (see the header,
   * "Version cache"); about 200-300 bytes each. Default 100,000. 0 remembers none: every version is
   * read before every write.
   */
  versionCacheSize?: number;
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
  /** The budgets every worker process shares (QUEUE_BACKEND=redis or postgres), for the default limiter. */
  budgets?: BudgetStore | null;
  clock?: Clock;
  fetch?: typeof fetch;
}

/** What differs between the two tables for the write path. */
interface Kind<T extends { id: string; updatedAt: Date | null; deleted: boolean; deletedAt: Date | null }> {
  def: TableDef;
  fields(record: T, stored: StoredVersion | null, syncedAt: Date): Record<string, unknown>;
}

const TASKS: Kind<Task> = {
  def: TASKS_TABLE,
  fields: (task, _stored, syncedAt) => taskFields(task, syncedAt),
};

const EMAILS: Kind<Email> = {
  def: EMAILS_TABLE,
  fields: (email, stored, syncedAt) => emailFields(email, syncedAt, { sameFiles: stored !== null && stored.files === filesFingerprint(email.attachments) }),
};

/** Fields a version read returns: the key and what `versionFromRecord` looks at. */
const VERSION_FIELDS: Record<string, readonly string[]> = {
  [TASKS_TABLE.name]: [F.taskId, F.updatedAt, F.deleted, F.deletedAt],
  [EMAILS_TABLE.name]: [F.emailId, F.updatedAt, F.deleted, F.deletedAt, F.attachmentDetails],
};

/**
 * The stored versions one call works with, by id: a version, null for "no such record in Airtable",
 * or no entry for "not known yet" (to be read). Private to one call, so the cache's evictions cannot
 * take a version away in the middle of a batch.
 */
type Versions = Map<string, StoredVersion | null>;

/** The in-batch state of one id: what the stored version is after the writes decided so far. */
interface State {
  updatedAt: Date | null;
  deleted: boolean;
  deletedAt: Date | null;
}

const toState = (v: StoredVersion): State => ({
  updatedAt: v.updatedAt === null ? null : new Date(v.updatedAt),
  deleted: v.deleted,
  deletedAt: v.deletedAt === null ? null : new Date(v.deletedAt),
});

export class AirtableDatabase implements Database {
  readonly backend = 'airtable' as const;
  private readonly client: AirtableClient;
  /** Single attempt, for health(): a health check reports, it does not wait out retries. */
  private readonly probe: AirtableClient;
  private readonly checkpoints: CheckpointRecords;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly healthTimeoutMs: number;
  /** Stored versions this process knows (see the header, "Version cache"). */
  private readonly versions: VersionCache;
  /** How to address each table: its id after migrate(), its name before. */
  private tableIds: Record<string, string> = { [TASKS_TABLE.name]: TASKS_TABLE.name, [EMAILS_TABLE.name]: EMAILS_TABLE.name };

  constructor(options: AirtableDatabaseOptions) {
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'db', backend: 'airtable' });
    this.now = options.now ?? (() => new Date());
    this.healthTimeoutMs = options.healthTimeoutMs ?? 10 * SECOND;
    this.versions = new VersionCache(options.versionCacheSize ?? DEFAULT_VERSION_CACHE_SIZE);
    const shared = {
      token: options.token,
      baseId: options.baseId,
      log: this.log,
      ...(options.baseUrl === undefined ? {} : { baseUrl: options.baseUrl }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.rateLimitPauseMs === undefined ? {} : { rateLimitPauseMs: options.rateLimitPauseMs }),
      ...(options.limiter === undefined ? {} : { limiter: options.limiter }),
      ...(options.budgets == null ? {} : { budgets: options.budgets }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    };
    this.client = new AirtableClient({ ...shared, ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }) });
    // Same limiter as the writer: health checks count against the base's budget too.
    this.probe = new AirtableClient({ ...shared, limiter: this.client.limiter, maxAttempts: 1 });
    this.checkpoints = options.checkpoints ?? new FileCheckpoints(options.checkpointDir);
  }

  get baseId(): string {
    return this.client.baseId;
  }

  /**
   * Creates missing tables and fields (see setup.ts). With a token that may not read the schema, checks
   * the tables through the records API instead and leaves creating them to `npm run airtable-setup`.
   */
  async migrate(): Promise<void> {
    // The tables may be other tables now (recreated, or another base's): forget what we knew.
    this.versions.clear();
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

  /** Upserts, then deletions; the versions of each table's ids, upserted or deleted, read together. */
  async apply(changes: Changes): Promise<WriteResult> {
    const total: WriteResult = { written: 0, stale: 0 };
    const add = (r: WriteResult) => {
      total.written += r.written;
      total.stale += r.stale;
    };
    const tasks: Versions = new Map();
    const emails: Versions = new Map();
    await this.know(TASKS_TABLE, [...changes.tasks, ...changes.deletedTasks].map((r) => r.id), tasks);
    await this.know(EMAILS_TABLE, [...changes.emails, ...changes.deletedEmails].map((r) => r.id), emails);
    if (changes.tasks.length > 0) add(await this.write(TASKS, changes.tasks, tasks));
    if (changes.emails.length > 0) add(await this.write(EMAILS, changes.emails, emails));
    if (changes.deletedTasks.length > 0) add(await this.markDeleted(TASKS_TABLE, changes.deletedTasks, tasks));
    if (changes.deletedEmails.length > 0) add(await this.markDeleted(EMAILS_TABLE, changes.deletedEmails, emails));
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
    // Requests use fetch's shared keep-alive pool, and the base's rate limiter is shared with the rest
    // of the process: only the engine's checkpoints (if used) hold a connection.
    await this.checkpoints.close?.();
  }

  /** Upserts records in chunks of distinct ids, skipping stale ones (see the header). */
  private async write<T extends { id: string; updatedAt: Date | null; deleted: boolean; deletedAt: Date | null }>(
    kind: Kind<T>,
    records: readonly T[],
    versions: Versions = new Map(),
  ): Promise<WriteResult> {
    const result: WriteResult = { written: 0, stale: 0 };
    const byId = groupById(records);
    await this.know(kind.def, [...byId.keys()], versions);
    const syncedAt = this.now();
    for (const ids of chunks([...byId.keys()], MAX_RECORDS_PER_REQUEST)) {
      const writes: Array<{ id: string; fields: Record<string, unknown> }> = [];
      for (const id of ids) {
        const before = versions.get(id) ?? null;
        let state: State | null = before === null ? null : toState(before);
        let winner: T | undefined;
        for (const record of byId.get(id) as T[]) {
          if (state !== null && isStale(record.updatedAt, state.updatedAt, state.deletedAt)) {
            result.stale += 1;
            continue;
          }
          result.written += 1;
          winner = record;
          state = { updatedAt: record.updatedAt, deleted: record.deleted, deletedAt: record.deletedAt };
        }
        if (winner !== undefined) writes.push({ id, fields: kind.fields(winner, before, syncedAt) });
      }
      await this.upsert(kind.def, writes, versions);
    }
    return result;
  }

  /**
   * Marks records deleted, or stores a tombstone for an id never seen. A record already deleted is left
   * as it is (not counted); a deletion older than the stored update is stale.
   */
  private async markDeleted(def: TableDef, deletions: readonly Deletion[], versions: Versions = new Map()): Promise<WriteResult> {
    const result: WriteResult = { written: 0, stale: 0 };
    const byId = groupById(deletions);
    await this.know(def, [...byId.keys()], versions);
    const syncedAt = this.now();
    for (const ids of chunks([...byId.keys()], MAX_RECORDS_PER_REQUEST)) {
      const writes: Array<{ id: string; fields: Record<string, unknown> }> = [];
      for (const id of ids) {
        const before = versions.get(id) ?? null;
        let state: State | null = before === null ? null : toState(before);
        let winner: Deletion | undefined;
        for (const deletion of byId.get(id) as Deletion[]) {
          if (state !== null && state.deleted && state.deletedAt !== null) continue;
          if (state !== null && isStale(deletion.at, state.updatedAt, null)) {
            result.stale += 1;
            continue;
          }
          result.written += 1;
          winner = deletion;
          state = { updatedAt: state?.updatedAt ?? null, deleted: true, deletedAt: deletion.at };
        }
        if (winner !== undefined) writes.push({ id, fields: deletionFields(def.key, id, winner.at, syncedAt) });
      }
      await this.upsert(def, writes, versions);
    }
    return result;
  }

  /**
   * Makes `versions` hold the stored version of every id in `ids`: from `versions` itself, else from
   * the cache, else read from Airtable, MAX_IDS_PER_READ ids per list request. Reads fill the cache.
   */
  private async know(def: TableDef, ids: readonly string[], versions: Versions): Promise<void> {
    const missing: string[] = [];
    for (const id of new Set(ids)) {
      if (versions.has(id)) continue;
      const cached = this.versions.get(def.name, id);
      if (cached === undefined) missing.push(id);
      else versions.set(id, cached);
    }
    for (const group of keyGroups(def.key, missing)) {
      const found = await this.readVersions(def, group);
      for (const id of group) {
        const version = found.get(id);
        if (version === undefined) {
          versions.set(id, null);
        } else {
          versions.set(id, version);
          this.versions.set(def.name, id, version);
        }
      }
    }
  }

  /** The stored versions of `ids`, by id (absent: no such record), in one list request. */
  private async readVersions(def: TableDef, ids: readonly string[]): Promise<Map<string, StoredVersion>> {
    const found = new Map<string, StoredVersion>();
    const fields = VERSION_FIELDS[def.name] ?? [def.key, F.updatedAt, F.deleted, F.deletedAt];
    await this.call(def, 'read', async () => {
      for await (const page of this.client.listAll(this.table(def), { filterByFormula: keyFormula(def.key, ids), fields, pageSize: MAX_PAGE_SIZE })) {
        for (const record of page) {
          const id = String(record.fields[def.key] ?? '');
          if (found.has(id)) {
            throw new ConnectorError(
              'CONN_ERR_DB_REJECTED',
              `Airtable table ${def.name} has more than one record with ${def.key} '${id}'; upserts need the key to be unique. Delete the duplicates in Airtable`,
              { details: { baseId: this.baseId, table: def.name, id } },
            );
          }
          found.set(id, versionFromRecord(record.fields));
        }
      }
    });
    return found;
  }

  /**
   * One upsert of at most 10 records, then their versions from Airtable's answer, in `versions` and
   * the cache. If the upsert fails, it may still have been applied: its ids are forgotten, so that
   * they are read again before their next write.
   */
  private async upsert(def: TableDef, writes: ReadonlyArray<{ id: string; fields: Record<string, unknown> }>, versions: Versions): Promise<void> {
    if (writes.length === 0) return;
    let answer: UpsertAnswer;
    try {
      answer = await this.call(def, 'write', () => this.client.upsertRecords(this.table(def), writes, [def.key]));
    } catch (err) {
      for (const { id } of writes) {
        versions.delete(id);
        this.versions.delete(def.name, id);
      }
      throw err;
    }
    const stored = new Map<string, StoredVersion>();
    for (const record of answer.records) stored.set(String(record.fields[def.key] ?? ''), versionFromRecord(record.fields));
    for (const { id } of writes) {
      const version = stored.get(id);
      if (version === undefined) {
        // Not in the answer (never seen from Airtable or the simulator): read it again when needed.
        versions.delete(id);
        this.versions.delete(def.name, id);
      } else {
        versions.set(id, version);
        this.versions.set(def.name, id, version);
      }
    }
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
export function createAirtableDatabase(config: Config, options: { log?: Logger; checkpoints?: CheckpointRecords; budgets?: BudgetStore | null } = {}): AirtableDatabase {
  if (config.AIRTABLE_TOKEN === undefined || config.AIRTABLE_BASE_ID === undefined) {
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', 'Invalid setting AIRTABLE_TOKEN / AIRTABLE_BASE_ID: required when DB_BACKEND=airtable');
  }
  return new AirtableDatabase({
    token: config.AIRTABLE_TOKEN,
    baseId: config.AIRTABLE_BASE_ID,
    baseUrl: config.AIRTABLE_BASE_URL,
    checkpointDir: config.checkpointDir,
    ...(options.log === undefined ? {} : { log: options.log }),
    ...(options.checkpoints === undefined ? {} : { checkpoints: options.checkpoints }),
    ...(options.budgets == null ? {} : { budgets: options.budgets }),
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

/**
 * `ids` in groups for version reads: at most MAX_IDS_PER_READ ids each, and at most MAX_FORMULA_LENGTH
 * characters of `keyFormula` (an id too long for that alone still gets a group of its own).
 */
export function keyGroups(key: string, ids: readonly string[]): string[][] {
  const groups: string[][] = [];
  let group: string[] = [];
  let length = 'OR()'.length;
  for (const id of ids) {
    const term = `{${key}}=${formulaString(id)}`.length + 1;
    if (group.length > 0 && (group.length >= MAX_IDS_PER_READ || length + term > MAX_FORMULA_LENGTH)) {
      groups.push(group);
      group = [];
      length = 'OR()'.length;
    }
    group.push(id);
    length += term;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

