/**
 * Periodic reconciliation: runs a backfill of every source whose API is configured at start-up (when
 * asked) and then every `intervalMs`, so a webhook lost while running (vendor outage, deactivated hook,
 * network) is caught within one interval. Runs never overlap per source; a failed run is logged and the
 * next one tries again from the unchanged checkpoint. `stop()` aborts runs in progress and waits.
 * Only the worker that holds the queue's consumer lock makes one (src/main.ts): a standby on the same
 * DATA_DIR runs no backfill, so that two processes never repeat each other's vendor requests.
 */
import type { Logger } from '../log.ts';
import type { Source } from '../sources/source.ts';
import { runBackfill, type BackfillDeps } from './backfill.ts';

export interface ReconcilerOptions {
  sources: readonly Source[];
  deps: BackfillDeps;
  log: Logger;
  /** Milliseconds between runs; 0 runs only at start-up (if `onStart`). */
  intervalMs: number;
  /** Run once right away. */
  onStart: boolean;
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
      const run = runBackfill(source, this.options.deps, { signal: this.abort.signal })
        .then(() => undefined)
        .catch((err: unknown) => {
          if (!this.abort.signal.aborted) this.options.log.warn({ err, source: source.name }, `${source.name} reconciliation failed; the next run retries from the checkpoint`);
        })
        .finally(() => this.running.delete(source.name));
      this.running.set(source.name, run);
      runs.push(run);
    }
    return Promise.all(runs).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.abort.abort();
    await Promise.all(this.running.values());
  }
}
