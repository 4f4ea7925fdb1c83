/**
 * How deeply a JSON text nests, read from its raw bytes before anything parses it.
 *
 * Why: V8's JSON.parse is iterative and takes any depth, but everything after it is recursive —
 * JSON.stringify (the queue stores events as JSON), zod (the handlers' payload schemas), structured
 * logging. A body of a few kilobytes nested thousands of levels deep parses fine and then throws
 * RangeError ("Maximum call stack size exceeded") wherever it is walked next: in the server that
 * became a 503 (retried by the vendor forever), in the worker an event that could be neither written,
 * retried nor dead-lettered. No vendor shape comes near the limit (Teamwork and Missive nest fewer than
 * ten levels), so a delivery deeper than MAX_JSON_DEPTH is refused at the door with 400.
 *
 * The scan is one pass over the bytes with no allocation: `{` and `[` open a level, `}` and `]` close
 * one, and brackets inside strings do not count (a `"` opens and closes a string; a backslash skips the
 * byte after it, so `\"` and `\\` are handled). It stops as soon as the limit is passed. It does not
 * validate JSON — that is JSON.parse's job, afterwards — so for an invalid text the number is only an
 * upper bound of what a parser would build; for a valid text it is exact. Multi-byte UTF-8 sequences
 * never contain bytes below 0x80, so the scan is correct on UTF-8 without decoding it.
 *
 * Vendor-agnostic: both sources call it from their parse step.
 */

/** Deepest nesting of objects and arrays accepted in a delivery body: `{}` is 1, `{"a":[1]}` is 2. */
export const MAX_JSON_DEPTH = 256;

const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACE = 0x7d; // }
const OPEN_BRACKET = 0x5b; // [
const CLOSE_BRACKET = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

/**
 * The deepest nesting of objects and arrays in the JSON text `bytes[start, end)`. Once it passes
 * `stopAbove` the scan stops and returns `stopAbove + 1` (so a caller that only asks "is it deeper than
 * N?" never reads the rest of a hostile body).
 */
export function jsonDepth(bytes: Uint8Array, stopAbove = Number.MAX_SAFE_INTEGER, start = 0, end = bytes.length): number {
  let depth = 0;
  let deepest = 0;
  let i = start;
  while (i < end) {
    const byte = bytes[i] as number;
    if (byte === QUOTE) {
      // Skip the string: to the next quote not escaped by a backslash.
      i++;
      while (i < end) {
        const c = bytes[i] as number;
        if (c === QUOTE) break;
        i += c === BACKSLASH ? 2 : 1;
      }
    } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > stopAbove) return stopAbove + 1;
      }
    } else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && depth > 0) {
      depth--;
    }
    i++;
  }
  return deepest;
}

/** Whether the JSON text in `bytes` nests deeper than `limit` (default MAX_JSON_DEPTH). */
export function jsonTooDeep(bytes: Uint8Array, limit = MAX_JSON_DEPTH): boolean {
  return jsonDepth(bytes, limit) > limit;
}

/** The message both sources refuse a too-deep body with (400, CONN_ERR_WEBHOOK_MALFORMED). */
export function tooDeepMessage(limit = MAX_JSON_DEPTH): string {
  return `Body nests JSON objects and arrays more than ${limit} levels deep; refused before parsing (no vendor payload comes close)`;
}
