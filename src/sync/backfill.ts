/**
 * Backfill orchestration, the same for every source: ask the source for everything changed since the
 * checkpoint minus the overlap window (first run: the last BACKFILL_INITIAL_HOURS), put each page's
 * events on the queue, and move the checkpoint only once that page is durably enqueued. A page that
 * failed stops the run with the checkpoint where the last completed page left it, so the next run
 * starts there again: a gap is impossible, a repeat is harmless (upserts).
 */
import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';
import { toErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { SourceName } from '../model.ts';
import type { Queue } from '../queue/queue.ts';
import { HOUR, SECOND } from '../retry-policy.ts';
import type { Source } from '../sources/source.ts';
import { CheckpointStore } from './checkpoints.ts';
import { MissedWebhooks } from './missed-webhooks.ts';

export interface BackfillDeps {
  queue: Queue;
  checkpoints: CheckpointStore;
  lifecycle: Lifecycle;
  log: Logger;
  /** BACKFILL_OVERLAP_SECONDS */
  overlapSeconds: number;
  /** BACKFILL_INITIAL_HOURS */
  initialHours: number;
  /** Judges, on a run from the checkpoint, which changes no webhook had delivered (none: not judged). */
  missedWebhooks?: MissedWebhooks;
  now?: () => Date;
}

/**
 * A backfill's needs from the settings, the same for the worker's reconciliation, the CLI's `backfill`
 * and the console's: checkpoints in `db` (mirrored under DATA_DIR/checkpoints), the overlap and first
 * window, and missed-webhook judging unless POLLING_ONLY (then every change comes by backfill).
 */
export function backfillDeps(
  config: Pick<Config, 'checkpointDir' | 'BACKFILL_OVERLAP_SECONDS' | 'BACKFILL_INITIAL_HOURS' | 'POLLING_ONLY' | 'MISSED_WEBHOOKS_GRACE_SECONDS'>,
  parts: { db: Database; queue: Queue; lifecycle: Lifecycle; log: Logger },
): BackfillDeps {
  const { db, queue, lifecycle, log } = parts;
  return {
    queue,
    checkpoints: new CheckpointStore(db, config.checkpointDir),
    lifecycle,
    log,
    overlapSeconds: config.BACKFILL_OVERLAP_SECONDS,
    initialHours: config.BACKFILL_INITIAL_HOURS,
    ...(config.POLLING_ONLY ? {} : { missedWebhooks: new MissedWebhooks({ db, queue, lifecycle, log, graceMs: config.MISSED_WEBHOOKS_GRACE_SECONDS * SECOND }) }),
  };
}

export interface BackfillRequest {
  /** Start here instead of at the checkpoint. */
  since?: Date;
  /** Everything the vendor has (since the epoch; the source clamps to what its API accepts). */
  full?: boolean;
  signal?: AbortSignal;
  /** Called after each page is enqueued. */
  onPage?: (progress: BackfillProgress) => void;
}

export interface BackfillProgress {
  source: SourceName;
  pages: number;
  events: number;
  newestUpdate: Date | null;
  startedAt: number;
}

export interface BackfillResult extends BackfillProgress {
  since: Date;
  durationMs: number;
  /** Changes found that no webhook had delivered; null when the run was not judged (src/sync/missed-webhooks.ts). */
  missed: number | null;
}

/** Where a backfill starts: explicit, full, checkpoint minus overlap, or the initial window. */
export async function backfillStart(source: SourceName, deps: BackfillDeps, request: BackfillRequest): Promise<Date> {
  if (request.since !== undefined) return request.since;
  if (request.full === true) return new Date(0);
  const now = (deps.now ?? (() => new Date()))();
  const checkpoint = await deps.checkpoints.get(source);
  if (checkpoint?.lastEventTime) return new Date(checkpoint.lastEventTime.getTime() - deps.overlapSeconds * SECOND);
  return new Date(now.getTime() - deps.initialHours * HOUR);
}

/**
 * Where a page may move the checkpoint: to its newest vendor time, but never past when this run
 * started, and not at all for a time that is not one. Checkpoints never move back, so one item whose
 * time lies in the future (a vendor's bad data, a clock far ahead) would otherwise make every later run
 * start after it and miss everything changed until then; a vendor clock a little ahead costs only
 * seconds, which the overlap window covers.
 */
export function checkpointTime(newest: Date | null, startedAt: Date, log: Logger): Date | null {
  if (newest === null) return null;
  if (Number.isNaN(newest.getTime())) {
    log.warn('a backfill page reported an invalid newest time; the checkpoint stays where it is');
    return null;
  }
  if (newest.getTime() <= startedAt.getTime()) return newest;
  log.warn({ newest: newest.toISOString(), startedAt: startedAt.toISOString() }, 'a backfill page reported a time later than the run started; the checkpoint moves only to the start');
  return startedAt;
}

export async function runBackfill(source: Source, deps: BackfillDeps, request: BackfillRequest = {}): Promise<BackfillResult> {
  if (source.backfill === undefined) throw new Error(`${source.name}: backfill needs the vendor API; set its credentials`);
  const log = deps.log.child({ source: source.name, component: 'backfill' });
  const since = await backfillStart(source.name, deps, request);
  // Only a run from the checkpoint is judged: before the first one, or from an operator's date, every
  // change is new to the database whether or not webhooks work.
  const judge = deps.missedWebhooks !== undefined && request.since === undefined && request.full !== true && (await deps.checkpoints.get(source.name)) !== null ? deps.missedWebhooks : null;
  let missed: number | null = null;
  const progress: BackfillProgress = { source: source.name, pages: 0, events: 0, newestUpdate: null, startedAt: Date.now() };
  const startedAt = (deps.now ?? (() => new Date()))();
  log.info({ since: since.toISOString() }, 'backfill started');
  try {
    for await (const page of source.backfill({ since, log, signal: request.signal })) {
      // Judged before the events are enqueued: once the worker has written them, every row is there.
      const judgement = judge === null ? null : await judge.judge(source, page.events, since);
      if (judgement !== null) missed = (missed ?? 0) + judgement.missed;
      if (page.events.length > 0) await deps.queue.enqueue(page.events);
      const newest = checkpointTime(page.newestUpdate, startedAt, log);
      if (newest !== null) await deps.checkpoints.advance(source.name, newest, page.cursor);
      progress.pages += 1;
      progress.events += page.events.length;
      if (newest !== null) progress.newestUpdate = newest;
      deps.lifecycle.emit('backfill:page', { source: source.name, events: page.events.length, newestUpdate: newest?.toISOString() ?? null });
      request.onPage?.({ ...progress });
    }
  } catch (err) {
    deps.lifecycle.emit('backfill:failed', { source: source.name, error: toErrorRecord(err) });
    log.warn({ err, pages: progress.pages, events: progress.events }, 'backfill stopped; the checkpoint stays at the last completed page');
    throw err;
  }
  // A complete run that found nothing newer still proves the window up to now: record its start on the
  // first run, so the next run does not fall back to the initial window again.
  if (progress.newestUpdate === null && (await deps.checkpoints.get(source.name)) === null) await deps.checkpoints.advance(source.name, since, null);
  const durationMs = Date.now() - progress.startedAt;
  deps.lifecycle.emit('backfill:done', { source: source.name, events: progress.events, pages: progress.pages, durationMs, missed });
  log.info({ pages: progress.pages, events: progress.events, durationMs, ...(missed !== null ? { missedWebhooks: missed } : {}) }, 'backfill done');
  return { ...progress, since, durationMs, missed };
}
