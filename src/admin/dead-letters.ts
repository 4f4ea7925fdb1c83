/**
 * Dead letters for operators: list them with filters, look at one, replay them (replay-dead-letters.ts,
 * reused as it is), discard them. The CLI (`replay-dlq`, `discard-dlq`) and the console's routes are
 * thin layers over these functions.
 *
 * A discard deletes for good: the request must say which dead letters (source, ids, or `all` alone),
 * as for a replay, and the caller asks for the operator's confirmation first (`--yes` on the command
 * line, `confirm: true` from the console). What is shown of a dead letter's payload is redacted
 * (redact.ts); the dead letter itself is never changed by looking at it.
 */
import type { ErrorRecord } from '../errors.ts';
import type { SourceName } from '../model.ts';
import type { DeadLetter, Queue } from '../queue/queue.ts';
import { eventSummary, type QueuedEventSummary } from './check-queue.ts';
import { redact } from './redact.ts';
import { replayFilter, type ReplayRequest } from './replay-dead-letters.ts';

/** One dead letter as a list shows it (no payload). */
export interface DeadLetterSummary extends QueuedEventSummary {
  attempts: number;
  firstAttemptAt: string | null;
  deadLetteredAt: string;
  error: ErrorRecord;
}

export interface DeadLetterDetail extends DeadLetterSummary {
  /** The event's payload, secrets redacted. */
  payload: unknown;
}

export interface DeadLetterQuery {
  source?: SourceName;
  /** Matches (case-insensitive, part of) the event id, entity key, type, or the error's code or message. */
  query?: string;
  /** At most this many, newest dead letter first. Default 200. */
  limit?: number;
}

export interface DeadLetterList {
  deadLetters: DeadLetterSummary[];
  /** How many match, before the limit. */
  total: number;
}

export const DEAD_LETTER_LIST_LIMIT = 200;

export function summarize(letter: DeadLetter): DeadLetterSummary {
  return {
    ...eventSummary(letter.event),
    attempts: letter.attempts,
    firstAttemptAt: letter.firstAttemptAt,
    deadLetteredAt: letter.deadLetteredAt,
    error: letter.error,
  };
}

export async function listDeadLetters(queue: Queue, query: DeadLetterQuery = {}): Promise<DeadLetterList> {
  const letters = await queue.listDeadLetters(query.source === undefined ? undefined : { source: query.source });
  const needle = query.query?.trim().toLowerCase() ?? '';
  const matching = letters.filter((d) => needle === '' || matchesQuery(d, needle));
  matching.sort((a, b) => b.deadLetteredAt.localeCompare(a.deadLetteredAt));
  const limit = query.limit ?? DEAD_LETTER_LIST_LIMIT;
  return { deadLetters: matching.slice(0, limit).map(summarize), total: matching.length };
}

function matchesQuery(letter: DeadLetter, needle: string): boolean {
  const { event, error } = letter;
  return [event.id, event.entityKey ?? '', event.type, error.code, error.message].some((text) => text.toLowerCase().includes(needle));
}

/** One dead letter by event id, its payload redacted; null when it is not a dead letter. */
export async function deadLetterDetail(queue: Queue, id: string): Promise<DeadLetterDetail | null> {
  const [letter] = await queue.listDeadLetters({ ids: [id] });
  if (letter === undefined) return null;
  return { ...summarize(letter), payload: redact(letter.event.payload) };
}

export type DiscardRequest = ReplayRequest;

export interface DiscardResult {
  dryRun: boolean;
  /** The dead letters discarded (or, with dryRun, that would be). */
  discarded: DeadLetter[];
  /** Requested ids that are not among the dead letters (already gone, or never dead). */
  missingIds: string[];
}

/**
 * Deletes the dead letters the request names. The filter rules are replay's (replayFilter: a UsageError
 * for none, or for `all` with a narrower one); the confirmation is the caller's to have asked.
 */
export async function discardDeadLetters(queue: Queue, request: DiscardRequest): Promise<DiscardResult> {
  const filter = replayFilter(request, 'discard');
  const dryRun = request.dryRun === true;
  const discarded = await queue.discardDeadLetters(filter, { dryRun });
  const found = new Set(discarded.map((d) => d.event.id));
  return { dryRun, discarded, missingIds: (filter.ids ?? []).filter((id) => !found.has(id)) };
}
