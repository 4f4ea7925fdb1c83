/**
 * Rows to and from PostgreSQL. A batch travels as ONE json parameter (an array of row objects keyed by
 * column name) that the statement expands with `json_populate_recordset`, so a batch of any size is one
 * statement with one parameter, and the server converts each field to its column's type (ISO strings
 * to timestamptz, nested values to jsonb).
 *
 * PostgreSQL cannot store two things JavaScript strings can hold:
 * - NUL (U+0000): `text` values cannot contain it, and `json`/`jsonb` reject the `\u0000` escape
 *   ("unsupported Unicode escape sequence"). One NUL anywhere would make the whole batch fail forever,
 *   so NULs are removed from every string and every object key before sending. Vendors send them
 *   rarely (a pasted binary fragment); dropping them loses nothing a reader could see.
 * - A lone UTF-16 surrogate: the driver sends `text` as UTF-8, where a lone surrogate becomes U+FFFD,
 *   but in JSON it is the escape `\ud800`, which the server rejects. We replace lone surrogates with
 *   U+FFFD ourselves so that both paths store the same thing.
 */
import { Json, type CellDecoder, type Row } from '../rows.ts';

const NUL = '\u0000';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const ANY_SURROGATE = /[\uD800-\uDFFF]/;

/** `text` as PostgreSQL can store it: NULs removed, lone surrogates replaced by U+FFFD. */
export function storableText(text: string): string {
  const withoutNul = text.includes(NUL) ? text.replaceAll(NUL, '') : text;
  return ANY_SURROGATE.test(withoutNul) ? withoutNul.replace(LONE_SURROGATE, '\uFFFD') : withoutNul;
}

/** JSON.stringify replacer applying `storableText` to every string value and object key. */
function storable(_key: string, value: unknown): unknown {
  if (typeof value === 'string') return storableText(value);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.some((k) => storableText(k) !== k)) {
      return Object.fromEntries(keys.map((k) => [storableText(k), (value as Record<string, unknown>)[k]]));
    }
  }
  return value;
}

/** The JSON text of `value`, safe to send as a `json` parameter. Dates become ISO-8601 UTC strings. */
export function toJsonParam(value: unknown): string {
  return JSON.stringify(value, storable);
}

/** A neutral row (rows.ts) as a plain object for `toJsonParam`: Json wrappers unwrapped. */
export function plainRow(row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) out[column] = value instanceof Json ? (value.value ?? null) : value;
  return out;
}

// Reading: the driver already gives Dates for timestamptz, parsed values for jsonb, and booleans;
// bigint (attachments.size) arrives as a string (rows.ts turns it into a number).
export const POSTGRES_CELLS: CellDecoder = {
  date: (value) => (value instanceof Date ? value : value === null || value === undefined ? null : new Date(String(value))),
  json: <T>(value: unknown, fallback: T): T => (value === null || value === undefined ? fallback : (value as T)),
  bool: (value) => value === true,
};
