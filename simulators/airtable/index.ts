/**
 * A faithful fake of the Airtable Web API for tests and the demo: records (list, get, create, update,
 * upsert, delete), the metadata API (tables and fields), personal access tokens with scopes, the
 * 5-requests-per-second-per-base limit with its 30-second lockout, Airtable's error bodies, and the
 * shared fault switches. The vendor facts it follows are in /work/shared/reference/stack.md §1; the
 * behaviour of each part is described at the top of its module:
 *   access.ts       tokens, base grants, scopes (401 / 403)
 *   rate-limit.ts   per-base limit and lockout (429)
 *   records-api.ts  records routes, upsert, list paging and filtering
 *   formula.ts      the filterByFormula subset
 *   fields.ts       field types, options, typecast, the 100,000-character cell limit
 *   meta-api.ts     metadata routes
 *   store.ts        in-memory bases, tables and records; all-or-nothing writes
 *
 * Order of checks per request (as the common harness runs them): token (401) -> base visible to the
 * token (403) -> scope for the route (403) -> per-base rate limit (429) -> faults (reset, latency,
 * 429 burst, 503) -> the route. A request that matches no route gets 404 {"error":"NOT_FOUND"}.
 *
 * Known simplifications: the 50 requests/s per-token limit is not modelled; formula fields read as
 * empty; attachments are recorded, never downloaded (the API shows an Airtable-style URL for each);
 * times without a zone are read as UTC whatever the field's time zone; a URL longer than Node's
 * 16 KB header limit gets Node's 431 rather than Airtable's 414.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { bearerToken, realClock, startServer, type FaultControl, type Faults, type RunningSimulator, type SimClock } from '../common.ts';
import { Tokens, type Scope, type TokenSpec } from './access.ts';
import { AirtableError, RATE_LIMIT_BODY, errors } from './errors.ts';
import { toCell, type Cell, type FieldModel, type StoredAttachment } from './fields.ts';
import { registerMetaApi } from './meta-api.ts';
import { BaseRateLimits, type RateLimitSettings } from './rate-limit.ts';
import { registerRecordsApi } from './records-api.ts';
import { AirtableStore, Staging, findField, type ApiRecord, type SimBase, type SimTable, type TableModel, type TableSpec } from './store.ts';

export { MAX_RECORDS_PER_REQUEST, MAX_PAGE_SIZE } from './records-api.ts';
export { MAX_TEXT_LENGTH } from './fields.ts';
export { RATE_LIMIT_BODY, MODEL_NOT_FOUND_MESSAGE } from './errors.ts';
export { SCOPES, type Scope, type TokenSpec } from './access.ts';
export type { RateLimitSettings } from './rate-limit.ts';
export type { ApiRecord, TableModel, TableSpec } from './store.ts';

export const DEFAULT_BASE_ID = 'appSIMULATOR00001';
export const DEFAULT_TOKEN = 'patSIMULATOR00001.0000000000000000000000000000000000000000000000000000000000000000';

export interface AirtableSimulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Time for record timestamps, the rate window and lockouts. Default real time. */
  clock?: SimClock;
  /** Source of chance for faults. Default Math.random. */
  random?: () => number;
  /** The base that exists from the start. Default `appSIMULATOR00001`. */
  baseId?: string;
  /** Default "Simulated base". */
  baseName?: string;
  /** A token with every scope on every base. Default `DEFAULT_TOKEN`. */
  token?: string;
  /** More tokens, e.g. one without schema.bases:write, or one granted another base only. */
  tokens?: readonly TokenSpec[];
  /** Tables put in the default base at start, bypassing the API (computed fields allowed). */
  tables?: readonly TableSpec[];
  /** Per-base rate limit; defaults 5 requests/s and a 30,000 ms lockout. */
  rateLimit?: Partial<RateLimitSettings>;
  /** Inactivity after which a list offset expires, ms. Default 300,000 (5 minutes). */
  iteratorTtlMs?: number;
}

/** Looking inside the simulator, and arranging state, without going through the API. */
export interface AirtableInspector {
  /** The tables of a base as GET /v0/meta/bases/{baseId}/tables shows them. */
  schema(baseId?: string): TableModel[];
  /** Creates a table directly; unlike the API, computed field types are allowed. */
  create(spec: TableSpec, baseId?: string): TableModel;
  /** A table's records in creation order, as the API shows them (empty fields left out). */
  records(table: string, baseId?: string): ApiRecord[];
  /** The attachments stored in a table's cells, with the URLs clients sent (Airtable would download them). */
  attachments(table: string, baseId?: string): Array<{ recordId: string; field: string; id: string; url: string; filename: string }>;
  /** Puts a record in a table through the same validation as the API (typecast on); returns it. */
  insert(table: string, fields: Record<string, unknown>, baseId?: string): ApiRecord;
  /** Removes every table of a base. */
  clear(baseId?: string): void;
}

export interface RateLimitControl {
  /** Current settings. */
  readonly settings: Readonly<RateLimitSettings>;
  /** Shorthand for `settings.lockoutMs`; assignable. */
  lockoutMs: number;
  /** Changes settings at run time. */
  set(change: Partial<RateLimitSettings>): void;
  /** Clock ms until which a base refuses every request, or undefined. */
  lockedUntil(baseId?: string): number | undefined;
  /** Ends lockouts and forgets counted requests (one base, or all). */
  unlock(baseId?: string): void;
}

export interface AirtableSimulator extends RunningSimulator {
  /** A token with every scope on every base. */
  token: string;
  /** The base that exists from the start. */
  baseId: string;
  tables: AirtableInspector;
  rateLimit: RateLimitControl;
  addToken(spec: TokenSpec): void;
  removeToken(token: string): void;
  /** Adds an empty base (no-op when it exists). */
  addBase(id: string, name?: string): void;
}

export async function startAirtableSimulator(options: AirtableSimulatorOptions = {}): Promise<AirtableSimulator> {
  const clock: SimClock = options.clock ?? realClock;
  const store = new AirtableStore(clock);
  const tokens = new Tokens();
  const limits = new BaseRateLimits(clock, options.rateLimit);
  const baseId = options.baseId ?? DEFAULT_BASE_ID;
  const token = options.token ?? DEFAULT_TOKEN;
  store.addBase(baseId, options.baseName ?? 'Simulated base');
  tokens.add({ token });
  for (const spec of options.tokens ?? []) tokens.add(spec);
  for (const spec of options.tables ?? []) store.createTable(store.base(baseId) as SimBase, spec, { allowComputed: true });

  const gate = (request: FastifyRequest, reply: FastifyReply): FastifyReply | void => {
    const path = request.url.split('?')[0] ?? '';
    if (!path.startsWith('/v0/')) return;
    const presented = bearerToken(request.headers.authorization);
    if (presented === null || !tokens.known(presented)) return send(reply, errors.authenticationRequired());
    const target = routeTarget(request.method, path);
    if (target === null) return;
    if (target.baseId !== null && (!tokens.canSee(presented, target.baseId) || store.base(target.baseId) === undefined)) {
      return send(reply, errors.modelNotFound());
    }
    if (!tokens.has(presented, target.scope)) return send(reply, errors.modelNotFound());
    if (target.baseId !== null && !limits.admit(target.baseId)) return send(reply, errors.rateLimited());
  };

  const running = await startServer(
    (app, { faults }) => {
      app.setErrorHandler((err: FastifyError | AirtableError, _request, reply) => {
        if (err instanceof AirtableError) return reply.code(err.status).send(err.body);
        if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError) {
          return send(reply, errors.invalidJson());
        }
        if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
          return reply.code(415).send({ error: { type: 'INVALID_REQUEST_UNKNOWN', message: 'Request bodies must be JSON (Content-Type: application/json)' } });
        }
        if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
          return reply.code(413).send({ error: { type: 'REQUEST_TOO_LARGE', message: 'Request body is too large' } });
        }
        return reply.code(500).send({ error: { type: 'SERVER_ERROR', message: err.message } });
      });
      app.setNotFoundHandler((_request, reply) => reply.code(404).send({ error: 'NOT_FOUND' }));
      registerRecordsApi(app, { store, clock, iteratorTtlMs: options.iteratorTtlMs ?? 300_000 });
      registerMetaApi(app, { store, tokens });
      registerControl(app, faults, limits, () => snapshot(store));
    },
    {
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.random === undefined ? {} : { random: options.random }),
      clock,
      gate,
      rateLimitReply: (_request, reply) => reply.code(429).send(structuredClone(RATE_LIMIT_BODY)),
    },
  );

  const baseOrFail = (id: string | undefined): SimBase => {
    const base = store.base(id ?? baseId);
    if (base === undefined) throw new Error(`Airtable simulator: no base ${id}`);
    return base;
  };
  const tableOrFail = (name: string, id: string | undefined): SimTable => {
    const table = store.table(baseOrFail(id), name);
    if (table === undefined) throw new Error(`Airtable simulator: no table ${name}`);
    return table;
  };

  const tables: AirtableInspector = {
    schema: (id) => baseOrFail(id).tables.map((t) => store.tableModel(t)),
    create: (spec, id) => store.tableModel(store.createTable(baseOrFail(id), spec, { allowComputed: true })),
    records: (name, id) => {
      const table = tableOrFail(name, id);
      return [...table.records.values()].map((r) => store.view(table, r));
    },
    attachments: (name, id) => {
      const table = tableOrFail(name, id);
      const out: Array<{ recordId: string; field: string; id: string; url: string; filename: string }> = [];
      for (const record of table.records.values()) {
        for (const field of table.fields) {
          if (field.type !== 'multipleAttachments') continue;
          for (const a of (record.cells.get(field.id) as StoredAttachment[] | undefined) ?? []) out.push({ recordId: record.id, field: field.name, ...a });
        }
      }
      return out;
    },
    insert: (name, fields, id) => {
      const table = tableOrFail(name, id);
      for (const key of Object.keys(fields)) if (findField(table, key) === undefined) throw new Error(`Airtable simulator: no field ${key} in ${name}`);
      return insertRecord(store, clock, table, fields);
    },
    clear: (id) => {
      baseOrFail(id).tables.length = 0;
    },
  };

  const rateLimit: RateLimitControl = {
    get settings() {
      return limits.current;
    },
    get lockoutMs() {
      return limits.current.lockoutMs;
    },
    set lockoutMs(ms: number) {
      limits.set({ lockoutMs: ms });
    },
    set: (change) => limits.set(change),
    lockedUntil: (id) => limits.lockedUntil(id ?? baseId),
    unlock: (id) => limits.unlock(id),
  };

  return {
    url: running.url,
    requests: running.requests,
    faults: running.faults,
    stop: running.stop,
    token,
    baseId,
    tables,
    rateLimit,
    addToken: (spec) => tokens.add(spec),
    removeToken: (t) => tokens.remove(t),
    addBase: (id, name) => {
      store.addBase(id, name);
    },
  };
}

function send(reply: FastifyReply, err: AirtableError): FastifyReply {
  return reply.code(err.status).send(err.body);
}

/** The base a request is about (null for whoami and the base list) and the scope its route needs. */
function routeTarget(method: string, path: string): { baseId: string | null; scope: Scope } | null {
  const parts = path.split('/').filter((p) => p !== '');
  if (parts[0] !== 'v0' || parts.length < 2) return null;
  if (parts[1] === 'meta') {
    if (parts[2] === 'whoami') return null;
    if (parts[2] !== 'bases') return null;
    const read = method === 'GET';
    return { baseId: parts[3] === undefined ? null : decode(parts[3]), scope: read ? 'schema.bases:read' : 'schema.bases:write' };
  }
  if (parts.length < 3) return null;
  const read = method === 'GET' || (method === 'POST' && parts[3] === 'listRecords');
  return { baseId: decode(parts[1] as string), scope: read ? 'data.records:read' : 'data.records:write' };
}

/** A path segment, percent-decoded; a malformed one stays as sent (and matches no base). */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Used by the inspector: one record created with typecast on, through the API's own conversion. */
function insertRecord(store: AirtableStore, clock: SimClock, table: SimTable, fields: Record<string, unknown>): ApiRecord {
  const staging = new Staging(table, clock.now());
  const cells = new Map<string, Cell>();
  for (const [key, value] of Object.entries(fields)) {
    const field = findField(table, key) as FieldModel;
    const cell = toCell(field, value, { typecast: true, current: undefined, pendingChoices: staging.pendingChoices });
    if (cell !== null) cells.set(field.id, cell);
  }
  const record = staging.create(cells);
  staging.commit();
  return store.view(table, record);
}

/**
 * Control routes for `npm run sim` and other processes (never authenticated, limited or faulted):
 *   GET /__sim/faults, POST /__sim/faults {..}, DELETE /__sim/faults   the fault switches
 *   GET /__sim/rate-limit, POST /__sim/rate-limit {lockoutMs, requestsPerSecond, enabled}
 *   DELETE /__sim/rate-limit                                          end every lockout
 *   GET /__sim/data                                                   every base, table and record
 */
function registerControl(app: FastifyInstance, faults: FaultControl, limits: BaseRateLimits, data: () => unknown): void {
  app.get('/__sim/faults', async () => faults.get());
  app.post('/__sim/faults', async (request) => {
    faults.set((request.body ?? {}) as Partial<Faults>);
    return faults.get();
  });
  app.delete('/__sim/faults', async () => {
    faults.reset();
    return faults.get();
  });
  app.get('/__sim/rate-limit', async () => limits.current);
  app.post('/__sim/rate-limit', async (request) => {
    limits.set((request.body ?? {}) as Partial<RateLimitSettings>);
    return limits.current;
  });
  app.delete('/__sim/rate-limit', async () => {
    limits.unlock();
    return limits.current;
  });
  app.get('/__sim/data', async () => data());
}

function snapshot(store: AirtableStore): unknown {
  return {
    bases: [...store.bases.values()].map((base) => ({
      id: base.id,
      name: base.name,
      tables: base.tables.map((table) => ({ ...store.tableModel(table), records: [...table.records.values()].map((r) => store.view(table, r)) })),
    })),
  };
}
