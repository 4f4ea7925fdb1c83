/**
 * Backfills started from the console, run in this process through the same function as
 * `connector backfill` (backfillSources, src/admin/backfill.ts), with their progress kept for the page
 * to poll.
 *
 * A job's states: `running` (from start until backfillSources returns; `waitingFor` names another
 * process holding the source's run lease while this one waits for it) -> `done` (the window is
 * covered) or `failed` (the source's backfill threw, or the job was stopped: `error` says which).
 * One job per source runs at a time (start refuses a second with BackfillRunningError); jobs of
 * different sources run side by side. The newest KEEP_FINISHED finished jobs are kept for the list;
 * nothing survives a restart (a backfill's progress that matters, its checkpoint, is in the database).
 */
import { randomUUID } from 'node:crypto';
import { ConnectorError, toErrorRecord, type ErrorRecord } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { SourceName } from '../model.ts';
import type { Source } from '../sources/source.ts';
import type { BackfillDeps } from '../sync/backfill.ts';
import type { Leases } from '../sync/leases.ts';
import { backfillSources, chooseBackfillSources } from './backfill.ts';
import { coveredFraction } from './progress.ts';

/** Finished jobs kept for the list, newest first. */
const KEEP_FINISHED = 20;

export interface BackfillJob {
  id: string;
  source: SourceName;
  state: 'running' | 'done' | 'failed';
  /** What was asked: a start time (ISO-8601), or everything (`full`), or neither (the checkpoint minus the overlap). */
  request: { since: string | null; full: boolean };
  /** Where the backfill starts (ISO-8601), once resolved; null before. */
  since: string | null;
  startedAt: string;
  finishedAt: string | null;
  pages: number;
  events: number;
  /** The newest update the pages reached (ISO-8601), or null. */
  newestUpdate: string | null;
  /** The share of the window from `since` to the start covered, 0..1 (1 when done), or null when unknown. */
  fraction: number | null;
  /** Another process's lease this job waits for (with a shared queue), or null. */
  waitingFor: string | null;
  error: ErrorRecord | null;
}

export interface BackfillJobRequest {
  source: SourceName;
  since?: Date;
  full?: boolean;
}

export interface BackfillJobsOptions {
  sources: readonly Source[];
  /**
   * What a backfill writes to: the queue, the checkpoints (so the database), the lifecycle. A function
   * when the database comes later (a worker waiting for it): null until then, and a start is refused
   * with CONN_ERR_DB_UNAVAILABLE.
   */
  deps: BackfillDeps | (() => BackfillDeps | null);
  /** With a shared queue: the engine's leases, this process's holder id and the lease time (ms), as for the CLI. */
  lease?: { leases: Leases; holder: string; ttlMs: number };
  log: Logger;
  now?: () => Date;
}

/** A backfill of the source is already running in this process. */
export class BackfillRunningError extends ConnectorError {
  constructor(readonly job: BackfillJob) {
    super('CONN_ERR_BACKFILL_RUNNING', `a backfill of ${job.source} is already running (job ${job.id}, started ${job.startedAt}); wait for it to end`);
  }
}

interface Running {
  job: BackfillJob;
  /** When the source's window was resolved (ms), for the fraction. */
  windowEnd: number;
  controller: AbortController;
  done: Promise<void>;
}

export class BackfillJobs {
  private readonly running = new Map<SourceName, Running>();
  private finished: BackfillJob[] = [];
  private readonly now: () => Date;

  constructor(private readonly options: BackfillJobsOptions) {
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Starts a backfill of one source and returns its job at once. Throws UsageError for a request the
   * CLI would refuse (an unknown source, one without its API, since in the future, since with full),
   * and BackfillRunningError while the source's previous job runs.
   */
  start(request: BackfillJobRequest): BackfillJob {
    const command = { sources: [request.source], since: request.since, full: request.full };
    chooseBackfillSources(this.options.sources, command, this.now());
    const busy = this.running.get(request.source);
    if (busy !== undefined) throw new BackfillRunningError(snapshot(busy));
    const deps = typeof this.options.deps === 'function' ? this.options.deps() : this.options.deps;
    if (deps === null) throw new ConnectorError('CONN_ERR_DB_UNAVAILABLE', 'a backfill needs the database (its checkpoints are kept there), which is not available yet; try again when /health shows it');
    const startedAt = this.now();
    const job: BackfillJob = {
      id: randomUUID(),
      source: request.source,
      state: 'running',
      request: { since: request.since?.toISOString() ?? null, full: request.full === true },
      since: null,
      startedAt: startedAt.toISOString(),
      finishedAt: null,
      pages: 0,
      events: 0,
      newestUpdate: null,
      fraction: null,
      waitingFor: null,
      error: null,
    };
    const controller = new AbortController();
    const entry: Running = { job, windowEnd: startedAt.getTime(), controller, done: Promise.resolve() };
    const log = this.options.log.child({ component: 'backfill', source: request.source, job: job.id });
    entry.done = backfillSources(this.options.sources, deps, {
      ...command,
      signal: controller.signal,
      ...(this.options.lease === undefined ? {} : { lease: this.options.lease }),
      onWaiting: (_source, holder) => {
        job.waitingFor = holder;
      },
      onStart: (_source, since) => {
        job.waitingFor = null;
        job.since = since.toISOString();
        entry.windowEnd = this.now().getTime();
      },
      onPage: (progress) => {
        job.pages = progress.pages;
        job.events = progress.events;
        job.newestUpdate = progress.newestUpdate?.toISOString() ?? null;
      },
    }).then(
      (report) => {
        const outcome = report.outcomes.find((o) => o.source === request.source);
        if (outcome?.status === 'done') {
          job.state = 'done';
          job.pages = outcome.result.pages;
          job.events = outcome.result.events;
          job.newestUpdate = outcome.result.newestUpdate?.toISOString() ?? job.newestUpdate;
        } else {
          job.state = 'failed';
          job.error = outcome?.status === 'failed' ? outcome.error : { code: 'CONN_ERR_INTERNAL', message: outcome?.reason ?? 'the backfill did not run', retryable: true };
        }
      },
      (err: unknown) => {
        job.state = 'failed';
        job.error = toErrorRecord(err);
      },
    ).then(() => {
      job.finishedAt = this.now().toISOString();
      job.waitingFor = null;
      this.running.delete(request.source);
      this.finished = [snapshot(entry), ...this.finished].slice(0, KEEP_FINISHED);
      if (job.state === 'done') log.info({ pages: job.pages, events: job.events }, `backfill of ${job.source} done: ${job.events} event(s) enqueued`);
      else log.warn({ err: job.error }, `backfill of ${job.source} failed: ${job.error?.message ?? 'unknown'}`);
    });
    this.running.set(request.source, entry);
    log.info({ since: job.request.since, full: job.request.full }, `backfill of ${job.source} started`);
    return snapshot(entry);
  }

  /** Running jobs first, then finished ones, newest first; each a copy with its progress now. */
  list(): BackfillJob[] {
    const running = [...this.running.values()].map(snapshot).sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    return [...running, ...this.finished.map((j) => ({ ...j }))];
  }

  /** Stops the running jobs (between two requests; their checkpoints stay at the last page) and waits for them. */
  async stop(): Promise<void> {
    const entries = [...this.running.values()];
    for (const entry of entries) entry.controller.abort(new Error('the connector is stopping'));
    await Promise.all(entries.map((e) => e.done));
  }
}

function snapshot(entry: Running): BackfillJob {
  const { job } = entry;
  const fraction = job.state === 'done' ? 1 : coveredFraction(job.since === null ? null : new Date(job.since), entry.windowEnd, job.newestUpdate === null ? null : new Date(job.newestUpdate));
  return { ...job, request: { ...job.request }, fraction };
}
