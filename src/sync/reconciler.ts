/**
 * Periodic reconciliation: runs a backfill of every source whose API is configured at start-up (when
 * asked) and then every `intervalMs`, so a webhook lost while running (vendor outage, deactivated hook,
 * network) is caught within one interval. Runs never overlap per source; a failed run is logged and the
 * next one tries again from the unchanged checkpoint. `stop()` aborts runs in progress and waits.
 * Only one worker makes them (src/main.ts), so that two processes never repeat each other's vendor
 * requests: with the file queue, the one holding the queue's consumer lock (a standby on the same
 * DATA_DIR runs no backfill); with a shared queue, the one holding the `reconciler` lease in the engine
 * (src/sync/leases.ts), whose Reconciler is created when it takes the lease and stopped when it loses
 * it. There, each run also holds its source's run lease (`backfill:<source>`), which an operator's
 * `connector backfill` takes too: a run whose source is being backfilled elsewhere (by hand, or by a
 * former leader that died mid-run, until its lease expires) waits for it to end (one INFO line), and a
 * run whose lease is lost is aborted (CONN_ERR_LEASE_LOST).
 */
import type { Logger } from '../log.ts';
import type { Source } from '../sources/source.ts';
import { runBackfill, type BackfillDeps } from './backfill.ts';
import { holdLease } from './leadership.ts';
import { backfillLease, type Leases } from './leases.ts';

export interface ReconcilerOptions {
  sources: readonly Source[];
  deps: BackfillDeps;
  log: Logger;
  /** Milliseconds between runs; 0 runs only at start-up (if `onStart`). */
  intervalMs: number;
  /** Run once right away. */
  onStart: boolean;
  /** With a shared queue: each run holds its source's run lease (see the header). */
  runLease?: { leases: Leases; holder: string; ttlMs: number };
}

export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private readonly running = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();
  private stopped = false;

  constructor(private readonly options: ReconcilerOptions) {}

  start(): void {
    const sources = this.options.sources.filter((s) => s.backfill !== undefined);
    if (sources.length === 0) return;
    if (this.options.onStart) this.runAll();
    if (this.options.intervalMs > 0) {
      this.timer = setInterval(() => this.runAll(), this.options.intervalMs);
      this.timer.unref();
    }
  }

  /** Starts a run for every source not already running one; resolves when those runs end. */
  runAll(): Promise<void> {
    const runs: Promise<void>[] = [];
    for (const source of this.options.sources) {
      if (source.backfill === undefined || this.stopped) continue;
      const current = this.running.get(source.name);
      if (current !== undefined) {
        runs.push(current);
        continue;
      }
      const run = this.runOne(source)
        .catch((err: unknown) => {
          if (!this.abort.signal.aborted) this.options.log.warn({ err, source: source.name }, `${source.name} reconciliation failed; the next run retries from the checkpoint`);
        })
        .finally(() => this.running.delete(source.name));
      this.running.set(source.name, run);
      runs.push(run);
    }
    return Promise.all(runs).then(() => undefined);
  }

  private async runOne(source: Source): Promise<void> {
    const lease = this.options.runLease;
    if (lease === undefined) {
      await runBackfill(source, this.options.deps, { signal: this.abort.signal });
      return;
    }
    const name = backfillLease(source.name);
    await holdLease({ ...lease, name, signal: this.abort.signal, wait: true, onWaiting: (holder) => this.waiting(source, name, holder) }, (signal) => runBackfill(source, this.options.deps, { signal }));
  }

  private waiting(source: Source, name: string, holder: string | null): void {
    if (holder === null) return;
    const seconds = Math.ceil((this.options.runLease?.ttlMs ?? 0) / 1000);
    const who = holder.startsWith('backfill@') ? `an operator's \`connector backfill\` (${holder})` : `${holder}, a worker that stopped reconciling (its lease expires within ${seconds} s)`;
    this.options.log.info({ source: source.name, holder, lease: name }, `${source.name} reconciliation waits: ${name} is held by ${who}; it runs as soon as that ends`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.abort.abort();
    await Promise.all(this.running.values());
  }
}
