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
 * one, and brackets inside strings do not count (a `"` opens and closes a string unless an odd number
 * of backslashes precede it; the closing quote is found with a native indexOf, which makes the scan
 * about 1 µs for a 2 KB delivery, a quarter of a byte-by-byte loop). It stops as soon as the limit is
 * passed. It does not validate JSON — that is JSON.parse's job, afterwards — so for an invalid text the
 * number is only an upper bound of what a parser would build; for a valid text it is exact. Multi-byte UTF-8 sequences
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
      // Skip the string: to the next quote not escaped, found natively (strings are most of a body's
      // bytes); a quote is escaped when an odd number of backslashes precede it.
      let close = i + 1;
      for (;;) {
        close = bytes.indexOf(QUOTE, close);
        if (close < 0 || close >= end) return deepest; // an unterminated string: nothing after it counts
        let backslashes = 0;
        for (let k = close - 1; k > i && bytes[k] === BACKSLASH; k--) backslashes++;
        if ((backslashes & 1) === 0) break;
        close++;
      }
      i = close;
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
