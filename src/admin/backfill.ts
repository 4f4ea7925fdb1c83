/**
 * `backfill`: asks each source's API for what changed and puts it on the queue, through the same
 * runBackfill as start-up and periodic reconciliation (checkpoint minus overlap, or `since`, or
 * everything with `full`). It only enqueues: the worker (a running `start`, or the next one) processes
 * the events, so it is safe, and useful, while the connector runs. Sources run one after another; one
 * that fails does not stop the next, and its checkpoint stays where its last completed page left it.
 *
 * With a shared queue (`lease` given), each source's backfill holds that source's run lease
 * (`backfill:<source>`, src/sync/leases.ts), as the leader worker's reconciliation does: while a
 * reconciliation of the source runs (or another operator's backfill), this one says who holds it
 * (`onWaiting`) and waits for it to end, so that the two never overlap; a reconciliation that comes due
 * meanwhile waits for this one in turn.
 */
import { toErrorRecord, type ErrorRecord } from '../errors.ts';
import type { SourceName } from '../model.ts';
import type { Source } from '../sources/source.ts';
import { backfillStart, runBackfill, type BackfillDeps, type BackfillProgress, type BackfillResult } from '../sync/backfill.ts';
import { holdLease } from '../sync/leadership.ts';
import { backfillLease, type Leases } from '../sync/leases.ts';
import { SOURCE_API_SETTINGS } from './source-settings.ts';
import { UsageError } from './usage-error.ts';

export interface BackfillCommand {
  /** Sources to backfill. Default: every source whose API is configured (the others are skipped). */
  sources?: readonly SourceName[];
  /** Start here instead of at the checkpoint minus the overlap. */
  since?: Date;
  /** Everything the vendor has. */
  full?: boolean;
  /** Stops the run between requests; the source in hand reports `failed` with the abort. */
  signal?: AbortSignal;
  /** A source starts, from `since`. */
  onStart?: (source: SourceName, since: Date) => void;
  /** A page of a source was enqueued (and its checkpoint moved). */
  onPage?: (progress: BackfillProgress, since: Date) => void;
  /** A source's backfill completed: its whole window is covered. */
  onDone?: (source: SourceName) => void;
  /** With a shared queue: the engine's leases, this process's holder id, and the lease time (ms). */
  lease?: { leases: Leases; holder: string; ttlMs: number };
  /** Another process holds the source's run lease (`holder`; null between two holders): this one waits. */
  onWaiting?: (source: SourceName, holder: string | null) => void;
}

export type SourceBackfillOutcome =
  | { source: SourceName; status: 'done'; result: BackfillResult }
  | { source: SourceName; status: 'failed'; since: Date; progress: BackfillProgress | null; error: ErrorRecord }
  | { source: SourceName; status: 'skipped'; reason: string };

export interface BackfillReport {
  outcomes: SourceBackfillOutcome[];
  /** Events enqueued across all sources. */
  events: number;
  /** True when the signal stopped the run. */
  aborted: boolean;
}

/**
 * Checks the request against the sources (throwing UsageError) and returns the sources to run, in
 * order, and those skipped for want of credentials.
 */
export function chooseBackfillSources(sources: readonly Source[], command: Pick<BackfillCommand, 'sources' | 'since' | 'full'>, now: Date = new Date()): { run: Source[]; skipped: Source[] } {
  if (command.since !== undefined && command.full === true) throw new UsageError('--since and --full contradict each other: use one');
  if (command.since !== undefined && Number.isNaN(command.since.getTime())) throw new UsageError('--since is not a valid time (use ISO 8601, e.g. 2025-01-31T00:00:00Z)');
  if (command.since !== undefined && command.since.getTime() > now.getTime()) throw new UsageError(`--since ${command.since.toISOString()} is in the future`);
  if (command.sources !== undefined && command.sources.length > 0) {
    const run: Source[] = [];
    for (const name of new Set(command.sources)) {
      const source = sources.find((s) => s.name === name);
      if (source === undefined) throw new UsageError(`unknown source "${name}"; known: ${sources.map((s) => s.name).join(', ')}`);
      if (!source.apiConfigured || source.backfill === undefined) throw new UsageError(`${name}: backfill needs its API; set ${SOURCE_API_SETTINGS[name]}`);
      run.push(source);
    }
    return { run, skipped: [] };
  }
  const run = sources.filter((s) => s.apiConfigured && s.backfill !== undefined);
  if (run.length === 0) {
    throw new UsageError(`no source has API credentials, so there is nothing to backfill; set ${sources.map((s) => SOURCE_API_SETTINGS[s.name]).join(', or ')}`);
  }
  return { run, skipped: sources.filter((s) => !run.includes(s)) };
}

export async function backfillSources(sources: readonly Source[], deps: BackfillDeps, command: BackfillCommand = {}): Promise<BackfillReport> {
  const { run, skipped } = chooseBackfillSources(sources, command, (deps.now ?? (() => new Date()))());
  const report: BackfillReport = { outcomes: [], events: 0, aborted: false };
  for (const source of skipped) {
    report.outcomes.push({ source: source.name, status: 'skipped', reason: `API credentials not set (${SOURCE_API_SETTINGS[source.name]})` });
  }
  for (const source of run) {
    if (aborted(command.signal)) {
      report.aborted = true;
      report.outcomes.push({ source: source.name, status: 'skipped', reason: 'interrupted before it started' });
      continue;
    }
    // Resolve the start once, so that what onStart reports is exactly where runBackfill begins; with a
    // lease, once it is held (a reconciliation waited for may have moved the checkpoint).
    let since: Date | null = null;
    let last: BackfillProgress | null = null;
    const run = async (signal: AbortSignal | undefined): Promise<BackfillResult> => {
      const from = await backfillStart(source.name, deps, { since: command.since, full: command.full });
      since = from;
      command.onStart?.(source.name, from);
      return runBackfill(source, deps, {
        since: from,
        signal,
        onPage: (progress) => {
          last = progress;
          command.onPage?.(progress, from);
        },
      });
    };
    try {
      let result: BackfillResult;
      if (command.lease === undefined) {
        result = await run(command.signal);
      } else {
        let holder: string | null = null;
        const onWaiting = (h: string | null) => {
          holder = h;
          command.onWaiting?.(source.name, h);
        };
        const held = await holdLease({ ...command.lease, name: backfillLease(source.name), wait: true, signal: command.signal, onWaiting }, run);
        if (!held.ran) {
          report.aborted = true;
          report.outcomes.push({ source: source.name, status: 'skipped', reason: `interrupted while waiting for ${holder ?? 'another process'} to finish backfilling ${source.name}` });
          continue;
        }
        result = held.value;
      }
      report.events += result.events;
      report.outcomes.push({ source: source.name, status: 'done', result });
      command.onDone?.(source.name);
    } catch (err) {
      const progress = last as BackfillProgress | null;
      report.events += progress?.events ?? 0;
      if (aborted(command.signal)) report.aborted = true;
      const from = (since as Date | null) ?? (await backfillStart(source.name, deps, { since: command.since, full: command.full }).catch(() => new Date(0)));
      report.outcomes.push({ source: source.name, status: 'failed', since: from, progress, error: toErrorRecord(err) });
    }
  }
  return report;
}

/** A function, not an inline test: TypeScript would keep `aborted` narrowed across the awaits between. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
