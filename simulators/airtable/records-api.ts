/**
 * The records API (stack.md §1.1, §1.3, §1.7):
 *   GET    /v0/{baseId}/{tableIdOrName}                 list (pageSize ≤ 100, offset, filterByFormula,
 *                                                       fields[], sort[n][field|direction], maxRecords, view)
 *   POST   /v0/{baseId}/{tableIdOrName}/listRecords     the same parameters in a JSON body
 *   GET    /v0/{baseId}/{tableIdOrName}/{recordId}      one record (404 {"error":"NOT_FOUND"} if unknown)
 *   POST   /v0/{baseId}/{tableIdOrName}                 create ({records:[…]} ≤ 10, or {fields})
 *   PATCH  /v0/{baseId}/{tableIdOrName}                 update ≤ 10 by id, or upsert with performUpsert
 *   PUT    /v0/{baseId}/{tableIdOrName}                 the same, clearing every field not sent
 *   PATCH|PUT /v0/{baseId}/{tableIdOrName}/{recordId}   update one record
 *   DELETE /v0/{baseId}/{tableIdOrName}/{recordId}      delete one -> {id, deleted: true}
 *   DELETE /v0/{baseId}/{tableIdOrName}?records[]=…     delete ≤ 10 -> {records:[{id, deleted: true}]}
 *
 * Upsert (`performUpsert.fieldsToMergeOn`, 1–3 fields of a merge type): records are taken in order;
 * one with an `id` is a plain update; otherwise the records whose merge fields equal the written
 * values are found (records created earlier in the same request included): none -> create, one ->
 * update, more -> the whole request fails with 422 and nothing is written. Every record must carry a
 * value for every merge field. The answer adds `createdRecords` and `updatedRecords` (record ids).
 *
 * List offsets are iterators: the first page fixes the matching records and their order; later pages
 * walk that list (skipping records deleted meanwhile, showing current values). An offset unused for
 * `iteratorTtlMs` expires with 422 LIST_RECORDS_ITERATOR_NOT_AVAILABLE.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SimClock } from '../common.ts';
import { errors } from './errors.ts';
import { formulaValue, MERGE_TYPES, newId, toCell, type Cell, type FieldModel } from './fields.ts';
import { Formula, type FormulaValue } from './formula.ts';
import { findField, Staging, type AirtableStore, type ApiRecord, type SimBase, type SimRecord, type SimTable } from './store.ts';

/** Most records one create, update, upsert or delete request may carry. */
export const MAX_RECORDS_PER_REQUEST = 10;
/** Largest `pageSize`; also the default. */
export const MAX_PAGE_SIZE = 100;

export interface RecordsApiContext {
  store: AirtableStore;
  clock: SimClock;
  /** Inactivity after which a list offset expires, ms. */
  iteratorTtlMs: number;
}

interface ListParams {
  pageSize: number;
  maxRecords: number | undefined;
  offset: string | undefined;
  filterByFormula: string | undefined;
  fields: string[] | undefined;
  sort: Array<{ field: string; direction: 'asc' | 'desc' }>;
  view: string | undefined;
  returnFieldsByFieldId: boolean;
}

interface Iterator {
  tableId: string;
  ids: string[];
  next: number;
  lastUsed: number;
  fields: string[] | undefined;
  byFieldId: boolean;
  pageSize: number;
}

/** Most live list iterators kept; the least recently used go first. */
const MAX_ITERATORS = 10_000;

export function registerRecordsApi(app: FastifyInstance, ctx: RecordsApiContext): void {
  const iterators = new Map<string, Iterator>();

  const locate = (request: FastifyRequest): { base: SimBase; table: SimTable } => {
    const { baseId, table: tableName } = request.params as { baseId: string; table: string };
    const base = ctx.store.base(baseId);
    const table = base === undefined ? undefined : ctx.store.table(base, tableName);
    if (base === undefined || table === undefined) throw errors.modelNotFound();
    return { base, table };
  };

  const list = (table: SimTable, params: ListParams) => {
    const now = ctx.clock.now();
    let iterator: Iterator;
    let iteratorId: string;
    if (params.offset !== undefined) {
      iteratorId = params.offset.split('/')[0] ?? '';
      const found = iterators.get(iteratorId);
      if (found === undefined || found.tableId !== table.id || now - found.lastUsed > ctx.iteratorTtlMs) {
        iterators.delete(iteratorId);
        throw errors.iteratorNotAvailable();
      }
      iterator = found;
      iterators.delete(iteratorId);
    } else {
      iteratorId = newId('itr');
      iterator = {
        tableId: table.id,
        ids: matching(table, params),
        next: 0,
        lastUsed: now,
        fields: params.fields,
        byFieldId: params.returnFieldsByFieldId,
        pageSize: params.pageSize,
      };
    }
    const page: ApiRecord[] = [];
    while (page.length < params.pageSize && iterator.next < iterator.ids.length) {
      const record = table.records.get(iterator.ids[iterator.next++] as string);
      if (record !== undefined) page.push(project(ctx.store, table, record, iterator.fields, iterator.byFieldId));
    }
    const result: { records: ApiRecord[]; offset?: string } = { records: page };
    if (iterator.next < iterator.ids.length) {
      iterator.lastUsed = now;
      iterators.set(iteratorId, iterator);
      if (iterators.size > MAX_ITERATORS) iterators.delete(iterators.keys().next().value as string);
      result.offset = `${iteratorId}/${iterator.ids[iterator.next]}`;
    }
    return result;
  };

  const matching = (table: SimTable, params: ListParams): string[] => {
    if (params.view !== undefined && !table.views.some((v) => v.id === params.view || v.name === params.view)) throw errors.viewNotFound(params.view);
    for (const name of params.fields ?? []) if (findField(table, name) === undefined) throw errors.unknownField(name);
    let records = [...table.records.values()];
    if (params.filterByFormula !== undefined && params.filterByFormula.trim() !== '') {
      const formula = Formula.parse(params.filterByFormula, new Set(table.fields.map((f) => f.name)));
      const fields = new Map<string, FieldModel>();
      for (const name of formula.fieldNames) fields.set(name, findField(table, name) as FieldModel);
      const lookup = formula.equalityLookup();
      const lookupField = lookup === null ? undefined : fields.get(lookup.field);
      if (lookup !== null && lookupField !== undefined && (lookupField.type === 'singleLineText' || lookupField.type === 'multilineText')) {
        // A key lookup on a text field: compare one cell per record, the same answer as evaluating.
        records = records.filter((record) => {
          const cell = record.cells.get(lookupField.id);
          return typeof cell === 'string' && lookup.values.has(cell);
        });
      } else {
        records = records.filter((record) => formula.keeps(new RecordScope(ctx.store, table, record, fields)));
      }
    }
    if (params.sort.length > 0) {
      const keys = params.sort.map((s) => {
        const field = findField(table, s.field);
        if (field === undefined) throw errors.unknownField(s.field);
        return { field, sign: s.direction === 'desc' ? -1 : 1 };
      });
      records.sort((a, b) => {
        for (const { field, sign } of keys) {
          const x = sortable(ctx.store.read(table, a, field));
          const y = sortable(ctx.store.read(table, b, field));
          if (x !== y) return (x < y ? -1 : 1) * sign;
        }
        return 0;
      });
    }
    const ids = records.map((r) => r.id);
    return params.maxRecords === undefined ? ids : ids.slice(0, params.maxRecords);
  };

  app.get('/v0/:baseId/:table', async (request) => {
    const { table } = locate(request);
    return list(table, listParamsFromQuery(request.url));
  });

  app.post('/v0/:baseId/:table/listRecords', async (request) => {
    const { table } = locate(request);
    return list(table, listParamsFromBody(request.body));
  });

  app.get('/v0/:baseId/:table/:recordId', async (request, reply) => {
    const { table } = locate(request);
    const record = table.records.get((request.params as { recordId: string }).recordId);
    if (record === undefined) return reply.code(404).send({ error: 'NOT_FOUND' });
    return ctx.store.view(table, record, flag(new URLSearchParams(queryOf(request.url)).get('returnFieldsByFieldId')));
  });

  app.post('/v0/:baseId/:table', async (request) => {
    const { table } = locate(request);
    const body = objectBody(request.body, ['records', 'fields', 'typecast', 'returnFieldsByFieldId']);
    const typecast = booleanOption(body, 'typecast');
    const byFieldId = booleanOption(body, 'returnFieldsByFieldId');
    const single = body.records === undefined;
    if (single && body.fields === undefined) throw errors.invalidRequest('send "records" (an array) or "fields"');
    if (!single && body.fields !== undefined) throw errors.invalidRequest('send either "records" or "fields", not both');
    const items = single ? [{ fields: body.fields }] : recordItems(body.records, 'created', false);
    const staging = new Staging(table, ctx.clock.now());
    const ids = items.map((item) => staging.create(nonEmpty(prepareCells(staging, item.fields, typecast, undefined))).id);
    staging.commit();
    const records = ids.map((id) => ctx.store.view(table, table.records.get(id) as SimRecord, byFieldId));
    return single ? records[0] : { records };
  });

  const updateMany = async (request: FastifyRequest, destructive: boolean) => {
    const { table } = locate(request);
    const body = objectBody(request.body, ['records', 'typecast', 'performUpsert', 'returnFieldsByFieldId']);
    const typecast = booleanOption(body, 'typecast');
    const byFieldId = booleanOption(body, 'returnFieldsByFieldId');
    const mergeFields = body.performUpsert === undefined ? null : mergeFieldsOf(table, body.performUpsert);
    const items = recordItems(body.records, 'updated', mergeFields === null);
    const staging = new Staging(table, ctx.clock.now());
    const ids: string[] = [];
    // Records by their merge-field values, built once per request (not a scan per upserted record),
    // dropped whenever an update by id could have changed a merge value.
    let index: MergeIndex | null = null;
    for (const item of items) {
      if (item.id !== undefined) {
        const current = staging.records.get(item.id);
        if (current === undefined) throw errors.rowDoesNotExist(item.id);
        ids.push(staging.update(item.id, prepareCells(staging, item.fields, typecast, current), destructive).id);
        index = null;
        continue;
      }
      const fields = mergeFields as FieldModel[];
      const keys = fields.map((field) => ({ field, cell: mergeValue(staging, item.fields, field, typecast) }));
      index ??= new MergeIndex(staging.records, fields);
      const matches = index.find(staging.records, keys.map((k) => k.cell));
      if (matches.length > 1) {
        throw errors.invalidRequest(
          `cannot upsert: ${matches.length} records match ${keys.map(({ field, cell }) => `${field.name} = ${JSON.stringify(cell)}`).join(' and ')}; fieldsToMergeOn must identify at most one record`,
        );
      }
      const match = matches[0];
      if (match === undefined) {
        const created = staging.create(nonEmpty(prepareCells(staging, item.fields, typecast, undefined)));
        index.add(created);
        ids.push(created.id);
      }
      else ids.push(staging.update(match.id, prepareCells(staging, item.fields, typecast, match), destructive).id);
    }
    staging.commit();
    const records = ids.map((id) => ctx.store.view(table, table.records.get(id) as SimRecord, byFieldId));
    if (mergeFields === null) return { records };
    return { records, createdRecords: [...staging.created], updatedRecords: [...staging.updated] };
  };

  app.patch('/v0/:baseId/:table', async (request) => updateMany(request, false));
  app.put('/v0/:baseId/:table', async (request) => updateMany(request, true));

  const updateOne = async (request: FastifyRequest, destructive: boolean) => {
    const { table } = locate(request);
    const { recordId } = request.params as { recordId: string };
    const body = objectBody(request.body, ['fields', 'typecast', 'returnFieldsByFieldId']);
    const current = table.records.get(recordId);
    if (current === undefined) throw errors.rowDoesNotExist(recordId);
    const staging = new Staging(table, ctx.clock.now());
    staging.update(recordId, prepareCells(staging, body.fields ?? {}, booleanOption(body, 'typecast'), current), destructive);
    staging.commit();
    return ctx.store.view(table, table.records.get(recordId) as SimRecord, booleanOption(body, 'returnFieldsByFieldId'));
  };

  app.patch('/v0/:baseId/:table/:recordId', async (request) => updateOne(request, false));
  app.put('/v0/:baseId/:table/:recordId', async (request) => updateOne(request, true));

  app.delete('/v0/:baseId/:table/:recordId', async (request, reply) => {
    const { table } = locate(request);
    const { recordId } = request.params as { recordId: string };
    if (!table.records.delete(recordId)) return reply.code(404).send({ error: 'NOT_FOUND' });
    return { id: recordId, deleted: true };
  });

  app.delete('/v0/:baseId/:table', async (request, reply) => {
    const { table } = locate(request);
    const query = new URLSearchParams(queryOf(request.url));
    const ids = [...query.getAll('records[]'), ...query.getAll('records')];
    if (ids.length === 0 || ids.length > MAX_RECORDS_PER_REQUEST) {
      throw errors.invalidRecords(`"records" must be an array of up to ${MAX_RECORDS_PER_REQUEST} record IDs.`);
    }
    if (ids.some((id) => !table.records.has(id))) return reply.code(404).send({ error: 'NOT_FOUND' });
    for (const id of ids) table.records.delete(id);
    return { records: ids.map((id) => ({ id, deleted: true })) };
  });
}

function queryOf(url: string): string {
  const at = url.indexOf('?');
  return at === -1 ? '' : url.slice(at + 1);
}

function flag(value: string | null | undefined): boolean {
  return value === 'true' || value === '1';
}

function intParam(name: string, raw: unknown, min: number, max: number): number {
  const value = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw errors.invalidRequest(`${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function listParamsFromQuery(url: string): ListParams {
  const q = new URLSearchParams(queryOf(url));
  const sort: ListParams['sort'] = [];
  for (let i = 0; q.has(`sort[${i}][field]`); i++) {
    sort.push({ field: q.get(`sort[${i}][field]`) as string, direction: direction(q.get(`sort[${i}][direction]`)) });
  }
  const fields = [...q.getAll('fields[]'), ...q.getAll('fields')];
  return {
    pageSize: q.has('pageSize') ? intParam('pageSize', q.get('pageSize'), 1, MAX_PAGE_SIZE) : MAX_PAGE_SIZE,
    maxRecords: q.has('maxRecords') ? intParam('maxRecords', q.get('maxRecords'), 1, Number.MAX_SAFE_INTEGER) : undefined,
    offset: q.get('offset') ?? undefined,
    filterByFormula: q.get('filterByFormula') ?? undefined,
    fields: fields.length > 0 ? fields : undefined,
    sort,
    view: q.get('view') ?? undefined,
    returnFieldsByFieldId: flag(q.get('returnFieldsByFieldId')),
  };
}

function listParamsFromBody(raw: unknown): ListParams {
  const body = objectBody(raw ?? {}, ['pageSize', 'maxRecords', 'offset', 'filterByFormula', 'fields', 'sort', 'view', 'returnFieldsByFieldId', 'cellFormat', 'timeZone', 'userLocale']);
  const str = (name: string): string | undefined => {
    const v = body[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw errors.invalidRequest(`${name} must be a string`);
    return v;
  };
  if (body.fields !== undefined && (!Array.isArray(body.fields) || !body.fields.every((f) => typeof f === 'string'))) throw errors.invalidRequest('fields must be an array of field names');
  if (body.sort !== undefined && !Array.isArray(body.sort)) throw errors.invalidRequest('sort must be an array');
  const sort = ((body.sort as unknown[] | undefined) ?? []).map((s) => {
    const field = typeof s === 'object' && s !== null ? (s as { field?: unknown }).field : undefined;
    if (typeof field !== 'string') throw errors.invalidRequest('every sort needs a field');
    return { field, direction: direction((s as { direction?: unknown }).direction) };
  });
  return {
    pageSize: body.pageSize === undefined ? MAX_PAGE_SIZE : intParam('pageSize', body.pageSize, 1, MAX_PAGE_SIZE),
    maxRecords: body.maxRecords === undefined ? undefined : intParam('maxRecords', body.maxRecords, 1, Number.MAX_SAFE_INTEGER),
    offset: str('offset'),
    filterByFormula: str('filterByFormula'),
    fields: body.fields as string[] | undefined,
    sort,
    view: str('view'),
    returnFieldsByFieldId: body.returnFieldsByFieldId === true,
  };
}

function direction(value: unknown): 'asc' | 'desc' {
  if (value === undefined || value === null || value === 'asc') return 'asc';
  if (value === 'desc') return 'desc';
  throw errors.invalidRequest('sort direction must be asc or desc');
}

/** The JSON body as an object whose keys are all in `allowed` (Airtable refuses unknown parameters). */
function objectBody(raw: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw errors.invalidRequest('the body must be a JSON object');
  for (const key of Object.keys(raw)) if (!allowed.includes(key)) throw errors.invalidRequest(`unknown parameter "${key}"`);
  return raw as Record<string, unknown>;
}

function booleanOption(body: Record<string, unknown>, name: string): boolean {
  const value = body[name];
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw errors.invalidRequest(`${name} must be true or false`);
  return value;
}

interface RecordItem {
  id?: string;
  fields: unknown;
}

function recordItems(raw: unknown, verb: 'created' | 'updated', needIds: boolean): RecordItem[] {
  if (!Array.isArray(raw) || raw.length === 0) throw errors.invalidRecords('"records" must be a non-empty array');
  if (raw.length > MAX_RECORDS_PER_REQUEST) {
    throw errors.invalidRecords(`A maximum of ${MAX_RECORDS_PER_REQUEST} records can be ${verb} per request but you have provided ${raw.length}.`);
  }
  return raw.map((item) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw errors.invalidRecords('every record must be an object');
    for (const key of Object.keys(item)) if (key !== 'id' && key !== 'fields') throw errors.invalidRecords(`unknown record property "${key}"`);
    const { id, fields } = item as { id?: unknown; fields?: unknown };
    if (id !== undefined && typeof id !== 'string') throw errors.invalidRecords('a record id must be a string');
    if (needIds && id === undefined) throw errors.invalidRecords('every record needs an "id" (or send performUpsert)');
    if (verb === 'updated' && fields === undefined) throw errors.invalidRecords('every record needs "fields"');
    return id === undefined ? { fields } : { id, fields };
  });
}

function mergeFieldsOf(table: SimTable, performUpsert: unknown): FieldModel[] {
  const names = typeof performUpsert === 'object' && performUpsert !== null ? (performUpsert as { fieldsToMergeOn?: unknown }).fieldsToMergeOn : undefined;
  if (!Array.isArray(names) || names.length < 1 || names.length > 3 || !names.every((n) => typeof n === 'string')) {
    throw errors.invalidRequest('performUpsert.fieldsToMergeOn must be an array of 1 to 3 field names or ids');
  }
  return (names as string[]).map((name) => {
    const field = findField(table, name);
    if (field === undefined) throw errors.unknownField(name);
    if (!MERGE_TYPES.has(field.type)) {
      throw errors.invalidRequest(`field "${field.name}" (${field.type}) cannot be used in fieldsToMergeOn: only number, text, long text, single select, multiple select and date fields can`);
    }
    return field;
  });
}

/** Converts a written `fields` object to cells, by field id. Unknown names fail the request. */
function prepareCells(staging: Staging, fields: unknown, typecast: boolean, current: SimRecord | undefined): Map<string, Cell | null> {
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw errors.invalidRecords('"fields" must be an object');
  const cells = new Map<string, Cell | null>();
  for (const [key, value] of Object.entries(fields)) {
    const field = findField(staging.table, key);
    if (field === undefined) throw errors.unknownField(key);
    cells.set(field.id, toCell(field, value, { typecast, current: current?.cells.get(field.id), pendingChoices: staging.pendingChoices }));
  }
  return cells;
}

function nonEmpty(cells: Map<string, Cell | null>): Map<string, Cell> {
  const out = new Map<string, Cell>();
  for (const [id, cell] of cells) if (cell !== null) out.set(id, cell);
  return out;
}

function mergeValue(staging: Staging, fields: unknown, field: FieldModel, typecast: boolean): Cell {
  const written = typeof fields === 'object' && fields !== null ? ((fields as Record<string, unknown>)[field.name] ?? (fields as Record<string, unknown>)[field.id]) : undefined;
  const cell = written === undefined ? null : toCell(field, written, { typecast, current: undefined, pendingChoices: staging.pendingChoices });
  if (cell === null) throw errors.invalidRequest(`every record must have a value for the merge field "${field.name}"`);
  return cell;
}

/** A map key for merge cells: cheap for the usual single text or number key, JSON otherwise. */
function keyOf(cells: readonly Cell[]): string {
  const only = cells.length === 1 ? cells[0] : undefined;
  if (typeof only === 'string') return `s${only}`;
  if (typeof only === 'number') return `n${only}`;
  return `j${JSON.stringify(cells)}`;
}

/**
 * Records by the values of the merge fields of one upsert request. A record missing any merge cell is
 * never a match (as a cell-by-cell comparison would say).
 */
class MergeIndex {
  private readonly ids = new Map<string, string[]>();

  constructor(
    records: ReadonlyMap<string, SimRecord>,
    private readonly fields: readonly FieldModel[],
  ) {
    for (const record of records.values()) this.add(record);
  }

  add(record: SimRecord): void {
    const cells: Cell[] = [];
    for (const field of this.fields) {
      const cell = record.cells.get(field.id);
      if (cell === undefined) return;
      cells.push(cell);
    }
    const key = keyOf(cells);
    const list = this.ids.get(key);
    if (list === undefined) this.ids.set(key, [record.id]);
    else list.push(record.id);
  }

  /** The current versions of the records whose merge cells equal `cells`. */
  find(records: ReadonlyMap<string, SimRecord>, cells: readonly Cell[]): SimRecord[] {
    const found: SimRecord[] = [];
    for (const id of this.ids.get(keyOf(cells)) ?? []) {
      const record = records.get(id);
      if (record !== undefined) found.push(record);
    }
    return found;
  }
}

/**
 * A record as a formula sees it. A class, not closures per record: a lookup like
 * OR({Task ID}='a', {Task ID}='b', ...) over a whole table must stay cheap, so each cell is read once.
 */
class RecordScope {
  readonly recordId: string;
  private readonly values = new Map<string, FormulaValue>();

  constructor(
    private readonly store: AirtableStore,
    private readonly table: SimTable,
    private readonly record: SimRecord,
    private readonly fields: ReadonlyMap<string, FieldModel>,
  ) {
    this.recordId = record.id;
  }

  field(name: string): FormulaValue {
    if (this.values.has(name)) return this.values.get(name) as FormulaValue;
    const field = this.fields.get(name) as FieldModel;
    const value = formulaValue(field, cellForFormula(this.store, this.table, this.record, field));
    this.values.set(name, value);
    return value;
  }
}

function cellForFormula(store: AirtableStore, table: SimTable, record: SimRecord, field: FieldModel): Cell | undefined {
  const value = record.cells.get(field.id);
  if (value !== undefined) return value;
  const computed = store.read(table, record, field);
  return typeof computed === 'string' || typeof computed === 'number' ? computed : undefined;
}

function sortable(value: unknown): string | number {
  if (value === undefined || value === null) return '';
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

function project(store: AirtableStore, table: SimTable, record: SimRecord, fields: string[] | undefined, byFieldId: boolean): ApiRecord {
  const full = store.view(table, record, byFieldId);
  if (fields === undefined) return full;
  const wanted = new Set(fields.map((name) => findField(table, name) as FieldModel).map((f) => (byFieldId ? f.id : f.name)));
  return { ...full, fields: Object.fromEntries(Object.entries(full.fields).filter(([key]) => wanted.has(key))) };
}
