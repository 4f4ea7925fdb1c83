/**
 * Airtable field types as the simulator models them: which exist, which the metadata API can create
 * and with which options, which may be the primary field or a merge field, and how a written value
 * becomes a stored cell (with or without `typecast`) and a stored cell becomes the value the API
 * returns. Sources: stack.md §1.1, §1.3, §1.4, §1.5.
 *
 * Supported types: singleLineText, multilineText, richText, email, url, phoneNumber, number, percent,
 * currency, checkbox, singleSelect, multipleSelects, date, dateTime, multipleAttachments, and the
 * computed (read-only) formula, createdTime, lastModifiedTime and autoNumber. Computed fields cannot be
 * created through the API (as in Airtable); tests put them in place through the inspector. Formula
 * fields are not evaluated: they read as empty.
 */
import { randomBytes } from 'node:crypto';
import { errors } from './errors.ts';

/** Longest text a text cell accepts, in UTF-16 code units (Airtable: 100,000 characters). */
export const MAX_TEXT_LENGTH = 100_000;

export const TEXT_TYPES = new Set(['singleLineText', 'multilineText', 'richText', 'email', 'url', 'phoneNumber']);
/** Text types the 100,000-character limit applies to. */
const LIMITED_TEXT_TYPES = new Set(['singleLineText', 'multilineText', 'richText']);
const NUMBER_TYPES = new Set(['number', 'percent', 'currency']);
export const COMPUTED_TYPES = new Set(['formula', 'createdTime', 'lastModifiedTime', 'autoNumber']);
const WRITABLE_TYPES = new Set([...TEXT_TYPES, ...NUMBER_TYPES, 'checkbox', 'singleSelect', 'multipleSelects', 'date', 'dateTime', 'multipleAttachments']);
export const KNOWN_TYPES = new Set([...WRITABLE_TYPES, ...COMPUTED_TYPES]);
/** Types `performUpsert.fieldsToMergeOn` accepts: number, text, long text, single/multiple select, date. */
export const MERGE_TYPES = new Set(['singleLineText', 'multilineText', 'number', 'singleSelect', 'multipleSelects', 'date']);
/** Types that cannot be a table's first (primary) field. */
const NOT_PRIMARY_TYPES = new Set(['checkbox', 'singleSelect', 'multipleSelects', 'multipleAttachments']);

const DATE_FORMATS = new Set(['local', 'friendly', 'us', 'european', 'iso']);
const TIME_FORMATS = new Set(['12hour', '24hour']);

export interface Choice {
  id: string;
  name: string;
  color?: string;
}

export interface FieldModel {
  id: string;
  name: string;
  type: string;
  description?: string;
  options?: Record<string, unknown>;
}

/** A stored attachment. `url` is what the client sent; the API shows an Airtable-hosted URL instead. */
export interface StoredAttachment {
  id: string;
  url: string;
  filename: string;
}

/** What a cell holds. Empty cells are not stored. */
export type Cell = string | number | boolean | string[] | StoredAttachment[];

export interface FieldSpec {
  name: string;
  type: string;
  description?: string;
  options?: Record<string, unknown>;
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** An Airtable-style id: a three-letter prefix and 14 letters or digits (e.g. `recA1b2C3d4E5f6G7`). */
export function newId(prefix: 'app' | 'tbl' | 'fld' | 'rec' | 'viw' | 'sel' | 'att' | 'itr'): string {
  const bytes = randomBytes(14);
  let out = prefix;
  for (const byte of bytes) out += ID_ALPHABET[byte % ID_ALPHABET.length];
  return out;
}

/**
 * Checks a field spec from the metadata API and returns the field model to store. `allowComputed`
 * lets the inspector create computed fields, which the API refuses.
 */
export function buildField(spec: unknown, options: { primary: boolean; allowComputed: boolean }): FieldModel {
  if (typeof spec !== 'object' || spec === null) throw errors.invalidRequest('a field must be an object');
  const { name, type, description } = spec as Record<string, unknown>;
  const given = (spec as { options?: unknown }).options;
  if (typeof name !== 'string' || name.trim() === '') throw errors.duplicateFieldName(String(name ?? ''));
  if (typeof type !== 'string' || !KNOWN_TYPES.has(type)) throw errors.invalidRequest(`unknown field type "${String(type)}"`);
  if (COMPUTED_TYPES.has(type) && !options.allowComputed) throw errors.unsupportedFieldType(type);
  if (options.primary && NOT_PRIMARY_TYPES.has(type)) throw errors.invalidPrimaryField(type);
  if (description !== undefined && typeof description !== 'string') throw errors.invalidRequest('description must be a string');
  if (given !== undefined && (typeof given !== 'object' || given === null || Array.isArray(given))) {
    throw errors.invalidFieldOptions(`options of field "${name}" must be an object`);
  }
  const field: FieldModel = { id: newId('fld'), name, type };
  if (description !== undefined) field.description = description;
  const fieldOptions = validateOptions(name, type, (given ?? undefined) as Record<string, unknown> | undefined, options.allowComputed);
  if (fieldOptions !== undefined) field.options = fieldOptions;
  return field;
}

function validateOptions(name: string, type: string, given: Record<string, unknown> | undefined, lenient: boolean): Record<string, unknown> | undefined {
  const fail = (why: string): never => {
    throw errors.invalidFieldOptions(`Invalid options for field "${name}" of type ${type}: ${why}`);
  };
  const need = (): Record<string, unknown> => given ?? fail('options are required');
  switch (type) {
    case 'singleLineText':
    case 'multilineText':
    case 'richText':
    case 'email':
    case 'url':
    case 'phoneNumber':
      if (given !== undefined && Object.keys(given).length > 0) fail('this type takes no options');
      return undefined;
    case 'number':
    case 'percent':
    case 'currency': {
      const o = need();
      if (!Number.isInteger(o.precision) || (o.precision as number) < 0 || (o.precision as number) > 8) fail('precision must be an integer from 0 to 8');
      if (type === 'currency' && typeof o.symbol !== 'string') fail('symbol is required');
      return { ...o };
    }
    case 'checkbox': {
      const o = need();
      if (typeof o.icon !== 'string' || typeof o.color !== 'string') fail('icon and color are required');
      return { ...o };
    }
    case 'singleSelect':
    case 'multipleSelects': {
      const o = need();
      if (!Array.isArray(o.choices)) fail('choices must be an array');
      const seen = new Set<string>();
      const choices: Choice[] = (o.choices as unknown[]).map((c) => {
        const choiceName = typeof c === 'object' && c !== null ? (c as { name?: unknown }).name : undefined;
        if (typeof choiceName !== 'string' || choiceName === '') return fail('every choice needs a name');
        if (seen.has(choiceName)) fail(`duplicate choice "${choiceName}"`);
        seen.add(choiceName);
        const color = (c as { color?: unknown }).color;
        return typeof color === 'string' ? { id: newId('sel'), name: choiceName, color } : { id: newId('sel'), name: choiceName };
      });
      return { choices };
    }
    case 'date': {
      const o = need();
      checkDateFormat(o.dateFormat, fail);
      return { dateFormat: { ...(o.dateFormat as object) } };
    }
    case 'dateTime': {
      const o = need();
      checkDateFormat(o.dateFormat, fail);
      const timeFormat = o.timeFormat as { name?: unknown } | undefined;
      if (typeof timeFormat !== 'object' || timeFormat === null || !TIME_FORMATS.has(String(timeFormat.name))) fail('timeFormat.name must be 12hour or 24hour');
      if (typeof o.timeZone !== 'string' || o.timeZone === '') fail('timeZone is required (e.g. "utc")');
      return { dateFormat: { ...(o.dateFormat as object) }, timeFormat: { ...(timeFormat as object) }, timeZone: o.timeZone };
    }
    case 'multipleAttachments':
      return given === undefined ? undefined : { ...given };
    default:
      // Computed types, created only through the inspector.
      return lenient && given !== undefined ? { ...given } : undefined;
  }
}

function checkDateFormat(value: unknown, fail: (why: string) => never): void {
  const name = typeof value === 'object' && value !== null ? (value as { name?: unknown }).name : undefined;
  if (!DATE_FORMATS.has(String(name))) fail('dateFormat.name must be one of local, friendly, us, european, iso');
}

export function isComputed(field: FieldModel): boolean {
  return COMPUTED_TYPES.has(field.type);
}

export function choicesOf(field: FieldModel): Choice[] {
  const choices = field.options?.choices;
  return Array.isArray(choices) ? (choices as Choice[]) : [];
}

/** What converting one written value needs to know besides the field. */
export interface CellContext {
  typecast: boolean;
  /** The cell's current value (to keep attachments referenced by id). */
  current: Cell | undefined;
  /** Select options created by earlier values in the same request (typecast); added to on demand. */
  pendingChoices: Map<string, Set<string>>;
}

/**
 * Turns a value a client wrote into the cell to store, or null for "empty". Throws the 422 Airtable
 * would give: INVALID_VALUE_FOR_COLUMN, INVALID_MULTIPLE_CHOICE_OPTIONS.
 */
export function toCell(field: FieldModel, value: unknown, ctx: CellContext): Cell | null {
  if (isComputed(field)) throw errors.invalidValue(field.name, 'cannot accept a value because the field is computed');
  if (value === null || value === undefined) return null;
  const bad = (): never => {
    throw errors.invalidValue(field.name);
  };
  const type = field.type;
  if (TEXT_TYPES.has(type)) {
    let text: string;
    if (typeof value === 'string') text = value;
    else if (ctx.typecast && (typeof value === 'number' || typeof value === 'boolean')) text = String(value);
    else return bad();
    if (LIMITED_TEXT_TYPES.has(type) && text.length > MAX_TEXT_LENGTH) {
      throw errors.invalidValue(field.name, `cannot accept a value longer than ${MAX_TEXT_LENGTH} characters (got ${text.length})`);
    }
    return text === '' ? null : text;
  }
  if (NUMBER_TYPES.has(type)) {
    if (typeof value === 'number' && Number.isFinite(value)) return value;
    if (ctx.typecast && typeof value === 'string') {
      if (value.trim() === '') return null;
      const parsed = Number(value.replace(/[,\s]/g, ''));
      if (Number.isFinite(parsed)) return parsed;
    }
    return bad();
  }
  switch (type) {
    case 'checkbox':
      if (typeof value === 'boolean') return value ? true : null;
      if (ctx.typecast && typeof value === 'string') return /^(true|checked|yes|1)$/i.test(value.trim()) ? true : null;
      if (ctx.typecast && typeof value === 'number') return value !== 0 ? true : null;
      return bad();
    case 'singleSelect': {
      const name = typeof value === 'string' ? value : ctx.typecast && typeof value === 'number' ? String(value) : bad();
      if (name === '') return null;
      return choose(field, name, ctx);
    }
    case 'multipleSelects': {
      let names: string[];
      if (Array.isArray(value) && value.every((v) => typeof v === 'string')) names = value as string[];
      else if (ctx.typecast && typeof value === 'string') names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
      else return bad();
      const out: string[] = [];
      for (const name of names) {
        if (name === '') return bad();
        const chosen = choose(field, name, ctx);
        if (!out.includes(chosen)) out.push(chosen);
      }
      return out.length === 0 ? null : out;
    }
    case 'date': {
      if (typeof value !== 'string') return bad();
      if (value === '') return null;
      if (/^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(`${value}T00:00:00Z`))) return value;
      const ms = parseInstant(value, ctx.typecast);
      return ms === null ? bad() : new Date(ms).toISOString().slice(0, 10);
    }
    case 'dateTime': {
      if (typeof value !== 'string') return bad();
      if (value === '') return null;
      const ms = parseInstant(value, ctx.typecast);
      return ms === null ? bad() : new Date(ms).toISOString();
    }
    case 'multipleAttachments':
      return toAttachments(field, value, ctx.current);
    default:
      return bad();
  }
}

/**
 * An ISO-8601 instant as epoch ms. A string without a zone is read as UTC (the simulator's fields
 * are all in UTC; Airtable would use the field's time zone). With typecast, anything Date.parse reads.
 */
function parseInstant(value: string, typecast: boolean): number | null {
  const iso = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$/i.exec(value.trim());
  if (iso) {
    const zoned = iso[1] !== undefined || !/[T ]/.test(value) ? value.trim() : `${value.trim()}Z`;
    const ms = Date.parse(zoned.replace(' ', 'T'));
    return Number.isNaN(ms) ? null : ms;
  }
  if (!typecast) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

function choose(field: FieldModel, name: string, ctx: CellContext): string {
  if (choicesOf(field).some((c) => c.name === name)) return name;
  let pending = ctx.pendingChoices.get(field.id);
  if (pending?.has(name)) return name;
  if (!ctx.typecast) throw errors.invalidChoice(name);
  if (pending === undefined) {
    pending = new Set();
    ctx.pendingChoices.set(field.id, pending);
  }
  pending.add(name);
  return name;
}

function toAttachments(field: FieldModel, value: unknown, current: Cell | undefined): StoredAttachment[] | null {
  if (!Array.isArray(value)) throw errors.invalidValue(field.name);
  const existing = Array.isArray(current) ? (current as StoredAttachment[]) : [];
  const out: StoredAttachment[] = [];
  for (const item of value) {
    if (typeof item !== 'object' || item === null) throw errors.invalidValue(field.name);
    const { id, url, filename } = item as { id?: unknown; url?: unknown; filename?: unknown };
    if (typeof id === 'string') {
      const kept = existing.find((a) => a.id === id);
      if (kept === undefined) throw errors.invalidValue(field.name, `cannot keep attachment ${id}: it is not in this cell`);
      out.push(kept);
      continue;
    }
    if (typeof url !== 'string' || !/^https?:\/\/[^\s]+$/i.test(url)) throw errors.invalidValue(field.name, 'needs attachment objects with an http(s) url');
    if (filename !== undefined && typeof filename !== 'string') throw errors.invalidValue(field.name);
    out.push({ id: newId('att'), url, filename: filename ?? defaultFilename(url) });
  }
  return out.length === 0 ? null : out;
}

function defaultFilename(url: string): string {
  try {
    const last = new URL(url).pathname.split('/').filter((s) => s !== '').pop();
    return last === undefined ? 'file' : decodeURIComponent(last);
  } catch {
    return 'file';
  }
}

/** The value the API returns for a stored cell. */
export function fromCell(field: FieldModel, cell: Cell): unknown {
  if (field.type === 'multipleAttachments') {
    return (cell as StoredAttachment[]).map((a) => ({
      id: a.id,
      // Airtable serves its own copy from an expiring URL, never the URL the client sent.
      url: `https://v5.airtableusercontent.com/sim/${a.id}/${encodeURIComponent(a.filename)}`,
      filename: a.filename,
    }));
  }
  return Array.isArray(cell) ? [...cell] : cell;
}

/** Field values as formulas see them: text, number, boolean, or null for an empty cell. */
export function formulaValue(field: FieldModel, cell: Cell | undefined): string | number | boolean | null {
  if (cell === undefined) return null;
  if (field.type === 'multipleAttachments') return (cell as StoredAttachment[]).map((a) => `${a.filename} (${a.url})`).join(', ');
  if (Array.isArray(cell)) return cell.join(', ');
  return cell;
}

