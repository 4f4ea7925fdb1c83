/**
 * `replay-dlq`: moves dead letters back to the queue as fresh events (attempts reset), after the cause
 * was fixed. Refuses a request without a filter, so that "replay everything" is always said out loud
 * (`all`). Safe while the connector runs: the file queue lets a second process replay, and the running
 * worker picks the replayed events up.
 */
import type { SourceName } from '../model.ts';
import type { DeadLetter, DeadLetterFilter, Queue } from '../queue/queue.ts';
import { UsageError } from './usage-error.ts';

export interface ReplayRequest {
  /** Only this source's dead letters. */
  source?: SourceName;
  /** Only these event ids. */
  ids?: readonly string[];
  /** Every dead letter; must be alone. */
  all?: boolean;
  /** Change nothing; report what would move. */
  dryRun?: boolean;
}

export interface ReplayResult {
  dryRun: boolean;
  /** The dead letters replayed (or, with dryRun, that would be). */
  replayed: DeadLetter[];
  /** Requested ids that are not among the dead letters (already replayed, or never dead). */
  missingIds: string[];
}

/**
 * The queue filter for a request; throws UsageError for none, or for `all` mixed with a narrower one.
 * `action` names what the request is for (a discard uses the same rules), in the message.
 */
export function replayFilter(request: ReplayRequest, action: 'replay' | 'discard' = 'replay'): DeadLetterFilter {
  const ids = request.ids?.map((id) => id.trim()).filter((id) => id !== '');
  const narrowed = request.source !== undefined || (ids !== undefined && ids.length > 0);
  if (request.all === true && narrowed) throw new UsageError(`--all ${action}s every dead letter: use it alone, or narrow with --source and/or --id instead`);
  if (request.all === true) return { all: true };
  if (!narrowed) throw new UsageError(`say which dead letters to ${action}: --source <name>, --id <id...>, or --all for every one (add --dry-run to only list them)`);
  const filter: DeadLetterFilter = {};
  if (request.source !== undefined) filter.source = request.source;
  if (ids !== undefined && ids.length > 0) filter.ids = ids;
  return filter;
}

export async function replayDeadLetters(queue: Queue, request: ReplayRequest): Promise<ReplayResult> {
  const filter = replayFilter(request);
  const dryRun = request.dryRun === true;
  const replayed = await queue.replayDeadLetters(filter, { dryRun });
  const found = new Set(replayed.map((d) => d.event.id));
  return { dryRun, replayed, missingIds: (filter.ids ?? []).filter((id) => !found.has(id)) };
}
