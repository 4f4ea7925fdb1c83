/**
 * Our thin Airtable Web API client, on the shared HTTP core (src/http/). It is the only module that
 * knows Airtable's URLs, auth header, paging and error bodies (stack.md §1). One method per endpoint:
 *
 *   listRecords   POST /v0/{base}/{table}/listRecords   (parameters in the body: no URL-length limit)
 *   listAll       every page of listRecords, following `offset`
 *   upsertRecords PATCH /v0/{base}/{table} with performUpsert, typecast; at most 10 records
 *   listTables    GET  /v0/meta/bases/{base}/tables
 *   createTable   POST /v0/meta/bases/{base}/tables
 *   createField   POST /v0/meta/bases/{base}/tables/{tableId}/fields
 *
 * Rate limit: Airtable allows 5 requests per second per base, and after a 429 refuses the base for
 * 30 seconds. Every client of one base in this process shares one RateLimiter (`limiterForBase`), so
 * the worker, health checks and counts together stay under the limit; with the shared queue that
 * limiter also reserves from the budget `airtable:<base id>` in the queue's engine, so every worker
 * process together does (src/budget/budget-store.ts). A 429 pauses that limiter (and every process's)
 * for `rateLimitPauseMs` (30 s), so every caller waits it out, not just the one that was refused.
 *
 * Retries (by the HTTP core): network errors, timeouts, 429 and 5xx. Upserts and list calls are
 * marked idempotent, so they are repeated even after they may have reached Airtable: an upsert keyed
 * on a merge field gives the same result twice. Creating tables and fields is not repeated blindly;
 * setup re-reads the schema instead.
 */
import { z } from 'zod';
import type { BudgetStore } from '../../budget/budget-store.ts';
import type { Logger } from '../../log.ts';
import { HttpClient } from '../../http/http-client.ts';
import { RateLimiter, type RateWindow } from '../../http/rate-limiter.ts';
import { systemClock, type Clock } from '../../http/clock.ts';
import { SECOND } from '../../retry-policy.ts';

/** Most records one write request may carry. */
export const MAX_RECORDS_PER_REQUEST = 10;
/** Largest page Airtable returns. */
export const MAX_PAGE_SIZE = 100;
/**
 * The budget per base: Airtable's 5 requests per second, counted by us over 1.1 s. The margin covers
 * requests that leave spaced out but arrive bunched (one delayed by the network, the next not).
 */
export const DEFAULT_BASE_WINDOW: RateWindow = { limit: 5, intervalMs: 1_100 };
/** How long a 429 pauses the base: Airtable says to wait 30 seconds. */
export const DEFAULT_RATE_LIMIT_PAUSE_MS = 30 * SECOND;

export const AirtableRecordSchema = z.object({
  id: z.string(),
  createdTime: z.string(),
  fields: z.record(z.string(), z.unknown()),
});
export type AirtableRecord = z.infer<typeof AirtableRecordSchema>;

const ListPageSchema = z.object({ records: z.array(AirtableRecordSchema), offset: z.string().optional() });
export type ListPage = z.infer<typeof ListPageSchema>;

const UpsertAnswerSchema = z.object({
  records: z.array(AirtableRecordSchema),
  createdRecords: z.array(z.string()).default([]),
  updatedRecords: z.array(z.string()).default([]),
});
export type UpsertAnswer = z.infer<typeof UpsertAnswerSchema>;

export const AirtableFieldSchema = z.object({
  id: z.string(),
  name: z.string(),
  type: z.string(),
  description: z.string().optional(),
  options: z.record(z.string(), z.unknown()).optional(),
});
export type AirtableField = z.infer<typeof AirtableFieldSchema>;

export const AirtableTableSchema = z.object({
  id: z.string(),
  name: z.string(),
  primaryFieldId: z.string(),
  description: z.string().optional(),
  fields: z.array(AirtableFieldSchema),
});
export type AirtableTable = z.infer<typeof AirtableTableSchema>;

const TablesSchema = z.object({ tables: z.array(AirtableTableSchema) });

/** A field to create: name, Airtable type and, where the type needs them, options. */
export interface FieldSpec {
  name: string;
  type: string;
  description?: string;
  options?: Record<string, unknown>;
}

export interface ListParams {
  filterByFormula?: string;
  /** Only these fields are returned (and must exist: an unknown name is a 422). */
  fields?: readonly string[];
  /** 1..100; default 100. */
  pageSize?: number;
  maxRecords?: number;
  offset?: string;
  signal?: AbortSignal;
}

export interface AirtableClientOptions {
  /** A personal access token. Sent as `Authorization: Bearer …`, never logged. */
  token: string;
  /** `app…` */
  baseId: string;
  /** Default https://api.airtable.com (AIRTABLE_BASE_URL). */
  baseUrl?: string;
  /** Per-attempt timeout, ms. Default 30 s. */
  timeoutMs?: number;
  /** Attempts for network errors, timeouts, 429 and 5xx, the first included. Default 5. */
  maxAttempts?: number;
  /** How long a 429 pauses every request to the base, ms. Default 30 s. */
  rateLimitPauseMs?: number;
  /** The base's shared budget. Default `limiterForBase(baseUrl, baseId, budgets)`. */
  limiter?: RateLimiter;
  /** The budgets every worker process shares (QUEUE_BACKEND=redis or postgres). Default: this process's own. */
  budgets?: BudgetStore | null;
  clock?: Clock;
  fetch?: typeof fetch;
  log?: Logger;
}

const limiters = new Map<string, RateLimiter>();

/**
 * The one RateLimiter of a base in this process (created on first use with `DEFAULT_BASE_WINDOW`),
 * reserving from `budgets` (as `airtable:<base id>`) when given. Keyed by API URL, base id and store,
 * so that tests against different simulators do not share a budget.
 */
export function limiterForBase(baseUrl: string, baseId: string, budgets: BudgetStore | null = null): RateLimiter {
  const key = `${baseUrl.replace(/\/+$/, '')}|${baseId}|${budgets?.id ?? ''}`;
  let limiter = limiters.get(key);
  if (limiter === undefined) {
    limiter = new RateLimiter({ windows: [DEFAULT_BASE_WINDOW], clock: systemClock, ...(budgets !== null ? { shared: { store: budgets, name: `airtable:${baseId}` } } : {}) });
    limiters.set(key, limiter);
  }
  return limiter;
}

export class AirtableClient {
  readonly baseId: string;
  readonly baseUrl: string;
  readonly limiter: RateLimiter;
  private readonly http: HttpClient;

  constructor(options: AirtableClientOptions) {
    this.baseId = options.baseId;
    this.baseUrl = (options.baseUrl ?? 'https://api.airtable.com').replace(/\/+$/, '');
    this.limiter = options.limiter ?? limiterForBase(this.baseUrl, options.baseId, options.budgets ?? null);
    this.http = new HttpClient({
      vendor: 'airtable',
      baseUrl: this.baseUrl,
      headers: { authorization: `Bearer ${options.token}` },
      limiter: this.limiter,
      defaultRateLimitPauseMs: options.rateLimitPauseMs ?? DEFAULT_RATE_LIMIT_PAUSE_MS,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
      ...(options.log === undefined ? {} : { log: options.log }),
    });
  }

  /** One page of a table's records. */
  async listRecords(table: string, params: ListParams = {}): Promise<ListPage> {
    const body: Record<string, unknown> = { pageSize: params.pageSize ?? MAX_PAGE_SIZE };
    if (params.filterByFormula !== undefined) body.filterByFormula = params.filterByFormula;
    if (params.fields !== undefined) body.fields = [...params.fields];
    if (params.maxRecords !== undefined) body.maxRecords = params.maxRecords;
    if (params.offset !== undefined) body.offset = params.offset;
    const answer = await this.http.request('POST', `${this.recordsPath(table)}/listRecords`, {
      body,
      schema: ListPageSchema,
      idempotent: true,
      ...(params.signal === undefined ? {} : { signal: params.signal }),
    });
    return answer.data;
  }

  /** Every page of a table's records, one page at a time. */
  async *listAll(table: string, params: Omit<ListParams, 'offset'> = {}): AsyncGenerator<AirtableRecord[]> {
    let offset: string | undefined;
    do {
      const page = await this.listRecords(table, offset === undefined ? params : { ...params, offset });
      yield page.records;
      offset = page.offset;
    } while (offset !== undefined);
  }

  /**
   * Creates or updates up to 10 records, matched on `fieldsToMergeOn`, with typecast on (strings are
   * converted to the field's type; new select options are created).
   */
  async upsertRecords(table: string, records: ReadonlyArray<{ fields: Record<string, unknown> }>, fieldsToMergeOn: readonly string[]): Promise<UpsertAnswer> {
    if (records.length === 0) return { records: [], createdRecords: [], updatedRecords: [] };
    if (records.length > MAX_RECORDS_PER_REQUEST) {
      throw new RangeError(`Airtable takes at most ${MAX_RECORDS_PER_REQUEST} records per request, got ${records.length}`);
    }
    const answer = await this.http.request('PATCH', this.recordsPath(table), {
      body: { performUpsert: { fieldsToMergeOn: [...fieldsToMergeOn] }, records: records.map((r) => ({ fields: r.fields })), typecast: true },
      schema: UpsertAnswerSchema,
      idempotent: true,
    });
    return answer.data;
  }

  /** Changes fields of up to 10 records, addressed by record id (`rec…`), with typecast on. */
  async updateRecords(table: string, records: ReadonlyArray<{ id: string; fields: Record<string, unknown> }>): Promise<void> {
    if (records.length === 0) return;
    if (records.length > MAX_RECORDS_PER_REQUEST) throw new RangeError(`Airtable takes at most ${MAX_RECORDS_PER_REQUEST} records per request, got ${records.length}`);
    await this.http.request('PATCH', this.recordsPath(table), { body: { records: records.map((r) => ({ id: r.id, fields: r.fields })), typecast: true }, idempotent: true });
  }

  /** Deletes up to 10 records by record id (`rec…`). Deleting one already gone fails with 404. */
  async deleteRecords(table: string, recordIds: readonly string[]): Promise<void> {
    if (recordIds.length === 0) return;
    if (recordIds.length > MAX_RECORDS_PER_REQUEST) throw new RangeError(`Airtable takes at most ${MAX_RECORDS_PER_REQUEST} records per request, got ${recordIds.length}`);
    const query = recordIds.map((id) => `records[]=${encodeURIComponent(id)}`).join('&');
    await this.http.request('DELETE', `${this.recordsPath(table)}?${query}`, { idempotent: true });
  }

  async listTables(signal?: AbortSignal): Promise<AirtableTable[]> {
    const answer = await this.http.get(`/v0/meta/bases/${encodeURIComponent(this.baseId)}/tables`, {
      schema: TablesSchema,
      ...(signal === undefined ? {} : { signal }),
    });
    return answer.data.tables;
  }

  /** Creates a table; the first field becomes its primary field. */
  async createTable(spec: { name: string; description?: string; fields: readonly FieldSpec[] }): Promise<AirtableTable> {
    const answer = await this.http.request('POST', `/v0/meta/bases/${encodeURIComponent(this.baseId)}/tables`, {
      body: { ...spec, fields: [...spec.fields] },
      schema: AirtableTableSchema,
    });
    return answer.data;
  }

  async createField(tableId: string, spec: FieldSpec): Promise<AirtableField> {
    const answer = await this.http.request('POST', `/v0/meta/bases/${encodeURIComponent(this.baseId)}/tables/${encodeURIComponent(tableId)}/fields`, {
      body: spec,
      schema: AirtableFieldSchema,
    });
    return answer.data;
  }

  private recordsPath(table: string): string {
    return `/v0/${encodeURIComponent(this.baseId)}/${encodeURIComponent(table)}`;
  }
}

/** Airtable's error type and message from an error body, whatever its shape (stack.md §1.6). */
export function airtableErrorOf(body: unknown): { type: string | undefined; message: string | undefined } {
  if (typeof body !== 'object' || body === null) return { type: undefined, message: undefined };
  const error = (body as { error?: unknown }).error;
  if (typeof error === 'string') return { type: error, message: undefined };
  if (typeof error === 'object' && error !== null) {
    const { type, message } = error as { type?: unknown; message?: unknown };
    return { type: typeof type === 'string' ? type : undefined, message: typeof message === 'string' ? message : undefined };
  }
  const first = Array.isArray((body as { errors?: unknown }).errors) ? ((body as { errors: unknown[] }).errors[0] as { error?: unknown; message?: unknown } | undefined) : undefined;
  if (first !== undefined) {
    return { type: typeof first.error === 'string' ? first.error : undefined, message: typeof first.message === 'string' ? first.message : undefined };
  }
  return { type: undefined, message: undefined };
}

/** A formula string literal: single quotes, with backslashes and quotes escaped. */
export function formulaString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
