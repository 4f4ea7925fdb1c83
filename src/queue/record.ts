/**
 * The line format of the file queue's logs (`inbox.jsonl`, `dlq.jsonl`).
 *
 * Every line is one JSON object whose first member is a CRC-32 of the rest of the line:
 *
 *   {"crc":"8c0f3a1e","t":"e","seq":42,"id":"evt-1",...}\n
 *   ^^^^^^^^ 8 bytes  ^^^^^^^^ hex    ^ the checked bytes start here (byte 18) and run to the closing
 *                                       brace; the newline is not checked.
 *
 * The checksum sits at a fixed position, so a line is verified before anything parses it, and the line
 * stays plain JSON for `jq` and for operators. A torn write (no newline), stray bytes, a flipped bit or
 * a zero-filled block all fail the check; such a line is set aside, never half-read.
 *
 * Record types (`t`):
 * - `h`    header, the first line of every generation of `inbox.jsonl`: queue uid `q`, generation `gen`,
 *          and `next`, the sequence number the generation continues from (so compaction never reuses one).
 * - `e`    an event copy: `seq` (its identity, increasing in file order), the event's `id`, `src`, entity
 *          key `k` and receive time `r` (ms) copied out of the event so that indexing never parses the
 *          body, the attempt `a`, and when set: `nb` not-before (ms), `fa` first attempt (ms), `sup` the seq
 *          of the copy this one replaces (a retry: the new copy and the end of the old one are one line),
 *          `rep` the dead letter it was replayed from, `err` the previous attempt's error. The event body
 *          `ev` always follows the fixed fields and precedes `err`, so the head can be cut off at the
 *          first `,"ev":` (quotes inside JSON strings are escaped, so that text cannot occur earlier).
 * - `ack`  the copy `seq` (event `id`) is done.
 * - `dead` the copy `seq` (event `id`) was moved to `dlq.jsonl`.
 * - in `dlq.jsonl`, `dead` lines carry the whole dead letter (see dead-letters.ts).
 */
import { crc32 } from 'node:zlib';

/** Bytes before the checked part: `{"crc":"` + 8 hex digits + `",`. */
export const CHECKED_FROM = 18;
const CRC_OPEN = Buffer.from('{"crc":"');
const NEWLINE = 0x0a;
const CLOSE_BRACE = 0x7d;
const EV_MARKER = Buffer.from(',"ev":');
const TYPE_AT = Buffer.from('"t":"');

export interface HeaderRecord {
  t: 'h';
  v: 1;
  /** Queue uid: stays the same across compactions; a new inbox gets a new one. */
  q: string;
  gen: number;
  /** The first sequence number this generation may use. */
  next: number;
  at: string;
}

/** The fixed fields of an event copy (everything before `ev`). */
export interface EventHead {
  t: 'e';
  seq: number;
  id: string;
  src: string;
  k: string | null;
  /** The event's receivedAt, ms since the epoch. */
  r: number;
  /** Attempt this copy will be, from 1. */
  a: number;
  nb?: number;
  fa?: number;
  sup?: number;
  rep?: string;
}

export interface EventRecord extends EventHead {
  ev: Record<string, unknown>;
  err?: Record<string, unknown>;
}

export interface DoneRecord {
  t: 'ack' | 'dead';
  seq: number;
  id: string;
}

export type InboxRecord = HeaderRecord | EventHead | DoneRecord;

/** Why a line was set aside. */
export type LineFault = 'no checksum' | 'checksum mismatch' | 'not JSON' | 'unknown record' | 'torn (no newline)';

/**
 * Seals a record: `body` is the record's JSON without its opening brace (`"t":"e",...}`). Returns the
 * line with its checksum and newline.
 */
export function sealLine(body: string): Buffer {
  const line = Buffer.from(`{"crc":"00000000",${body}\n`);
  const sum = crc32(line.subarray(CHECKED_FROM, line.length - 1)) >>> 0;
  line.write(sum.toString(16).padStart(8, '0'), 8, 'latin1');
  return line;
}

/** Seals a plain object (a header, an ack, a dead letter). */
export function sealObject(record: Record<string, unknown>): Buffer {
  return sealLine(JSON.stringify(record).slice(1));
}

/** What an event copy needs besides its sequence number, prepared before the write lock is taken. */
export interface EventDraft {
  id: string;
  src: string;
  k: string | null;
  r: number;
  a: number;
  nb?: number;
  fa?: number;
  sup?: number;
  rep?: string;
  /** The event, as JSON. */
  evJson: string;
  /** The previous attempt's error, as JSON. */
  errJson?: string;
}

export function sealEvent(seq: number, d: EventDraft): Buffer {
  let body = `"t":"e","seq":${seq},"id":${JSON.stringify(d.id)},"src":${JSON.stringify(d.src)},"k":${JSON.stringify(d.k)},"r":${d.r},"a":${d.a}`;
  if (d.nb !== undefined) body += `,"nb":${d.nb}`;
  if (d.fa !== undefined) body += `,"fa":${d.fa}`;
  if (d.sup !== undefined) body += `,"sup":${d.sup}`;
  if (d.rep !== undefined) body += `,"rep":${JSON.stringify(d.rep)}`;
  body += `,"ev":${d.evJson}`;
  if (d.errJson !== undefined) body += `,"err":${d.errJson}`;
  return sealLine(`${body}}`);
}

/**
 * Checks the line `buf[start, end)` (without its newline). Returns null when it is sound, else the
 * fault.
 */
export function checkLine(buf: Buffer, start: number, end: number): LineFault | null {
  if (end - start < CHECKED_FROM + 1 || buf.compare(CRC_OPEN, 0, CRC_OPEN.length, start, start + CRC_OPEN.length) !== 0) return 'no checksum';
  if (buf[start + 16] !== 0x22 || buf[start + 17] !== 0x2c || buf[end - 1] !== CLOSE_BRACE) return 'no checksum';
  const hex = buf.toString('latin1', start + 8, start + 16);
  if (!/^[0-9a-f]{8}$/.test(hex)) return 'no checksum';
  const sum = crc32(buf.subarray(start + CHECKED_FROM, end)) >>> 0;
  return sum === parseInt(hex, 16) ? null : 'checksum mismatch';
}

/** The record type of a sound line, read without parsing it. */
export function lineType(buf: Buffer, start: number, end: number): string | null {
  const at = start + CHECKED_FROM;
  if (buf.compare(TYPE_AT, 0, TYPE_AT.length, at, at + TYPE_AT.length) !== 0) return null;
  const close = buf.indexOf(0x22, at + TYPE_AT.length);
  if (close < 0 || close >= end) return null;
  return buf.toString('latin1', at + TYPE_AT.length, close);
}

/** The fixed fields of a sound event line, parsed without touching the event body. */
export function parseEventHead(buf: Buffer, start: number, end: number): EventHead {
  const marker = buf.indexOf(EV_MARKER, start + CHECKED_FROM);
  if (marker < 0 || marker >= end) throw new SyntaxError('event line without "ev"');
  return JSON.parse(`{${buf.toString('utf8', start + CHECKED_FROM, marker)}}`) as EventHead;
}

/**
 * The text of a sealed line between the first `prefix` (searched from the checked part on) and a
 * `suffix` that closes the record (followed only by its closing brace and newline). Null when the line
 * does not have that shape. Used to carry a member's JSON on byte for byte instead of serialising it
 * again, which JSON.stringify cannot do for everything JSON.parse read (a payload nested thousands of
 * levels deep). A prefix or suffix made with JSON.stringify of what JSON.parse read from a line
 * JSON.stringify wrote is the same text; and quotes inside JSON strings are escaped, so a prefix that
 * starts with `,"name":` cannot match inside an earlier string.
 */
export function cutMember(line: Buffer, prefix: string, suffix: string): string | null {
  let end = line.length;
  if (line[end - 1] === NEWLINE) end--;
  if (line[end - 1] !== CLOSE_BRACE) return null;
  end--;
  const tail = Buffer.from(suffix);
  if (end - tail.length < CHECKED_FROM || line.compare(tail, 0, tail.length, end - tail.length, end) !== 0) return null;
  end -= tail.length;
  const head = Buffer.from(prefix);
  const at = line.indexOf(head, CHECKED_FROM);
  if (at < 0 || at + head.length >= end) return null;
  return line.toString('utf8', at + head.length, end);
}

/**
 * The event's JSON text exactly as a sound event line stores it (`,"ev":<event>` then, when the copy
 * carries the previous attempt's error, `,"err":<err>`), given the line's parsed `err`, so that a retry
 * or a dead letter carries the event on without serialising it again (see cutMember). Null when the
 * line does not end as expected; the caller then falls back.
 */
export function storedEventJson(line: Buffer, err: unknown): string | null {
  let suffix = '';
  if (err !== undefined) {
    try {
      suffix = `,"err":${JSON.stringify(err)}`;
    } catch {
      return null;
    }
  }
  return cutMember(line, ',"ev":', suffix);
}

/** A whole sound line as JSON (without its `crc` member's meaning). */
export function parseLine<T>(buf: Buffer, start: number, end: number): T {
  return JSON.parse(buf.toString('utf8', start, end)) as T;
}

export function isNewline(byte: number | undefined): boolean {
  return byte === NEWLINE;
}

/**
 * A 32-bit FNV-1a hash of an entity key, never 0 (0 stands for "no key"). The index keeps this
 * instead of the key; a match is confirmed against the event itself.
 */
export function hashKey(key: string | null): number {
  if (key === null) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h === 0 ? 1 : h | 0;
}
