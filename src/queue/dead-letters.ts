/**
 * `dlq.jsonl`: one sealed line per dead letter (see record.ts for the checksum envelope):
 *
 *   {"crc":"…","t":"dead","q":"<queue uid>","seq":42,"id":"evt-1","src":"teamwork","attempts":3,
 *    "firstAttemptAt":"…","deadLetteredAt":"…","error":{…},"event":{…}}
 *
 * `q` + `seq` name the inbox copy that was dead-lettered (its "key"), which is how a dead letter whose
 * inbox `dead` record was lost in a crash is recognised on open, and how a replay that crashed halfway
 * is finished. Lines are appended under the queue's write lock and fsynced; a replay rewrites the file
 * whole (temp file, fsync, rename, directory fsync), keeping the other lines byte for byte.
 */
import { open } from 'node:fs/promises';
import type { ErrorRecord } from '../errors.ts';
import { QueueEvent } from '../model.ts';
import type { DeadLetter, DeadLetterFilter } from './queue.ts';
import { readLines } from './line-reader.ts';
import { checkLine, cutMember, lineType, parseLine, sealLine, type LineFault } from './record.ts';

export interface DeadLetterDraft {
  q: string;
  seq: number;
  id: string;
  src: string;
  attempts: number;
  error: ErrorRecord;
  firstAttemptAt: string | null;
  deadLetteredAt: string;
  /** The event as it was stored (plain JSON). */
  event: Record<string, unknown>;
}

/** What sealDeadLetter needs: the event and the error as JSON text already (see the file queue's deadLetter). */
export interface DeadLetterSeal extends Omit<DeadLetterDraft, 'event' | 'error'> {
  errorJson: string;
  eventJson: string;
}

/** A dead letter as read back, with its exact line. */
export interface StoredDeadLetter extends DeadLetterDraft {
  key: string;
  line: Buffer;
}

export function deadLetterKey(q: string, seq: number): string {
  return `${q}:${seq}`;
}

/**
 * A dead letter's line. The error and the event come as JSON text, made by the caller in a way that
 * cannot fail (the event as its inbox line stored it), so that no event's content can stop its own
 * dead-lettering. The members keep their order: the event last.
 */
export function sealDeadLetter(d: DeadLetterSeal): Buffer {
  const head = JSON.stringify({
    t: 'dead',
    q: d.q,
    seq: d.seq,
    id: d.id,
    src: d.src,
    attempts: d.attempts,
    firstAttemptAt: d.firstAttemptAt,
    deadLetteredAt: d.deadLetteredAt,
  });
  return sealLine(`${head.slice(1, -1)},"error":${d.errorJson},"event":${d.eventJson}}`);
}

export interface UnreadableLine {
  offset: number;
  length: number;
  fault: LineFault;
  bytes: Buffer;
}

/**
 * Reads every dead letter in `file` (none when it does not exist). Unreadable lines, and bytes after
 * the last newline, are reported to `onFault` and skipped.
 */
export async function readDeadLetterFile(file: string, onFault: (line: UnreadableLine) => void = () => {}): Promise<StoredDeadLetter[]> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const size = (await handle.stat()).size;
    const entries: StoredDeadLetter[] = [];
    const end = await readLines(handle, 0, size, (buf, start, stop, offset, length) => {
      const fault = checkLine(buf, start, stop) ?? (lineType(buf, start, stop) === 'dead' ? null : 'unknown record');
      if (fault !== null) {
        onFault({ offset, length, fault, bytes: Buffer.from(buf.subarray(start, start + length)) });
        return;
      }
      try {
        const record = parseLine<DeadLetterDraft>(buf, start, stop);
        entries.push({ ...record, key: deadLetterKey(record.q, record.seq), line: Buffer.from(buf.subarray(start, start + length)) });
      } catch {
        onFault({ offset, length, fault: 'not JSON', bytes: Buffer.from(buf.subarray(start, start + length)) });
      }
    });
    if (end < size) {
      const tail = Buffer.alloc(size - end);
      await handle.read(tail, 0, tail.length, end);
      onFault({ offset: end, length: tail.length, fault: 'torn (no newline)', bytes: tail });
    }
    return entries;
  } finally {
    await handle.close();
  }
}

/**
 * The event of a stored dead letter as JSON text for its replay: serialised again, or, when that cannot
 * be done (JSON.stringify cannot write everything JSON.parse reads: a payload nested thousands of levels,
 * from a queue written before the door's depth limit), the event's text exactly as its line holds it.
 * The line is `...,"error":<error>,"event":<event>}`: the cut starts after the error written again, so
 * that an `"event"` key inside the error's details cannot mislead it (record.ts cutMember).
 */
export function deadLetterEventJson(stored: StoredDeadLetter): string {
  try {
    return JSON.stringify(stored.event);
  } catch (err) {
    const text = cutMember(stored.line, `,"error":${JSON.stringify(stored.error)},"event":`, '');
    if (text === null) throw err;
    return text;
  }
}

/** The first of each dead letter that dlq.jsonl holds more than once (same queue and seq). */
export function uniqueByKey(stored: readonly StoredDeadLetter[]): StoredDeadLetter[] {
  const seen = new Set<string>();
  return stored.filter((d) => !seen.has(d.key) && seen.add(d.key) !== undefined);
}

/** The contract's view of a stored dead letter. */
export function toDeadLetter(stored: StoredDeadLetter): DeadLetter {
  return {
    event: QueueEvent.parse(stored.event),
    attempts: stored.attempts,
    error: stored.error,
    firstAttemptAt: stored.firstAttemptAt,
    deadLetteredAt: stored.deadLetteredAt,
  };
}

/**
 * Whether a dead letter matches `filter`. `source` and `ids` narrow; `all: true` is needed to match
 * with neither. An empty filter matches nothing (so a replay never moves everything by accident).
 */
export function matchesFilter(stored: StoredDeadLetter, filter: DeadLetterFilter): boolean {
  const narrowed = filter.source !== undefined || filter.ids !== undefined;
  if (!narrowed) return filter.all === true;
  if (filter.source !== undefined && stored.src !== filter.source) return false;
  if (filter.ids !== undefined && !filter.ids.includes(stored.id)) return false;
  return true;
}
