/**
 * The system-test harness: the real connector (`startConnector`, both roles, in this process) on a
 * fresh temp directory, with its settings parsed by the product's own `parseConfig`, a log sink the
 * tests can read, lifecycle counters, and waits that poll for a condition until a deadline (never a
 * sleep that hopes). Simulators and databases are started by the tests themselves.
 *
 * What "idle" means here: the queue has nothing pending, delayed or in flight. A delivery answered 200
 * was durably enqueued before the answer, and a simulator's mutation resolves only after its delivery
 * was answered, so once a mutation has resolved, "idle" implies its event was handled (or
 * dead-lettered, which `deadLettered` in the stats shows).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig, type Config, type Env } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import type { LifecycleName } from '../../src/lifecycle.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { startConnector, type RunningConnector } from '../../src/main.ts';
import type { Checkpoint, SourceName } from '../../src/model.ts';
import type { QueueStats } from '../../src/queue/queue.ts';
import type { Source } from '../../src/sources/source.ts';

/** Temp directories made by `tempDir`, removed by `removeTempDirs`. */
const made: string[] = [];

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  made.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** One JSON log line as pino wrote it. */
export type LogLine = Record<string, unknown> & { level: string; msg: string };

/** A logger whose lines (level `info` and up by default) are kept in memory for the test to read. */
export function memoryLogger(level = 'info'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.trim() !== '') lines.push(JSON.parse(text) as LogLine);
      }
      done();
    },
  });
  return { log: createLogger({ level, console: false, destination: sink }), lines };
}

/**
 * Polls `probe` every 25 ms until it returns something other than undefined/false, or throws after
 * `timeoutMs` with `what` and the last value seen (or the last error the probe threw).
 */
export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const shown = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${shown})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Lifecycle events counted by the harness (from the moment `startSystem` returned). */
export type Counters = Record<LifecycleName, number> & { appendedEvents: number };

export interface System {
  connector: RunningConnector;
  config: Config;
  db: Database;
  /** http://127.0.0.1:<port> */
  url: string;
  dataDir: string;
  lines: LogLine[];
  counters: Counters;
  stats(): Promise<QueueStats>;
  /** Waits until nothing is pending, delayed or in flight. */
  waitIdle(timeoutMs?: number): Promise<QueueStats>;
  /** Waits until the log says `count` backfills of `source` are done (start-up and reconciliation runs). */
  waitBackfillsDone(source: SourceName, count: number, timeoutMs?: number): Promise<void>;
  /** The checkpoint's mirror file `${DATA_DIR}/checkpoints/{source}.json`, parsed, or null. */
  mirror(source: SourceName): MirrorFile | null;
  stop(): Promise<void>;
}

export interface MirrorFile {
  source: string;
  last_event_time: string | null;
  last_cursor: string | null;
  updated_at: string | null;
}

export interface SystemOptions {
  /** Settings on top of the harness defaults (no start-up backfill, no periodic one, port 0). */
  env?: Env;
  /** Reuse this directory (a restart); default a fresh temp directory. */
  dataDir?: string;
  logLevel?: string;
  /** Builds the sources instead of the product's `createSources` (tests that tune a vendor's limits). */
  sources?: (config: Config, log: Logger) => Source[];
}

const running = new Set<System>();

/** Starts the connector (serve + work) on SQLite in a temp directory unless `env` says otherwise. */
export async function startSystem(options: SystemOptions = {}): Promise<System> {
  const dataDir = options.dataDir ?? tempDir('conn-sys');
  const config = parseConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: path.join(dataDir, 'data'),
    LOG_DIR: path.join(dataDir, 'logs'),
    BACKFILL_ON_START: 'false',
    BACKFILL_INTERVAL_MINUTES: '0',
    ...options.env,
  });
  const { log, lines } = memoryLogger(options.logLevel ?? 'info');
  const connector = await startConnector(config, { roles: { serve: true, work: true }, log, ...(options.sources !== undefined ? { sources: options.sources(config, log) } : {}) });
  const counters = Object.fromEntries(
    ['delivery:accepted', 'delivery:rejected', 'queue:appended', 'event:succeeded', 'db:written', 'event:retrying', 'event:dead-lettered', 'backfill:page', 'backfill:done', 'backfill:failed', 'shutdown:start'].map((n) => [n, 0]),
  ) as Counters;
  counters.appendedEvents = 0;
  for (const name of Object.keys(counters).filter((n) => n !== 'appendedEvents') as LifecycleName[]) {
    connector.lifecycle.on(name, () => void counters[name]++);
  }
  connector.lifecycle.on('queue:appended', ({ count }) => void (counters.appendedEvents += count));

  const system: System = {
    connector,
    config,
    db: connector.db as Database,
    url: connector.url as string,
    dataDir,
    lines,
    counters,
    stats: () => connector.queue.stats(),
    async waitIdle(timeoutMs = 20_000) {
      return waitFor(
        'the queue to drain',
        async () => {
          const stats = await connector.queue.stats();
          return stats.pending === 0 && stats.inFlight === 0 && stats.delayed === 0 ? stats : undefined;
        },
        timeoutMs,
      );
    },
    async waitBackfillsDone(source, count, timeoutMs = 20_000) {
      await waitFor(`${count} ${source} backfill(s) to finish`, () => lines.filter((l) => l.msg === 'backfill done' && l.source === source).length >= count, timeoutMs);
    },
    mirror(source) {
      try {
        return JSON.parse(readFileSync(path.join(config.checkpointDir, `${source}.json`), 'utf8')) as MirrorFile;
      } catch {
        return null;
      }
    },
    async stop() {
      running.delete(system);
      await connector.stop();
    },
  };
  running.add(system);
  return system;
}

/** Stops every connector the harness started and still runs (for afterEach/afterAll). */
export async function stopAllSystems(): Promise<void> {
  for (const system of [...running]) await system.stop();
}

/** The mirror file agrees with the stored checkpoint (time and cursor). */
export function mirrorMatches(mirror: MirrorFile | null, checkpoint: Checkpoint | null): boolean {
  if (mirror === null || checkpoint === null) return false;
  return mirror.last_event_time === (checkpoint.lastEventTime?.toISOString() ?? null) && mirror.last_cursor === checkpoint.lastCursor;
}

/**
 * A simulator clock that runs with real time plus an offset that `step()` moves forward by a whole
 * second, so that consecutive changes get distinct vendor timestamps (Teamwork's have whole seconds)
 * without waiting for the wall clock. The offset is what the tests' vendor runs ahead of real time.
 */
export class SteppingClock {
  private offset = 0;

  now(): number {
    return Date.now() + this.offset;
  }

  step(ms = 1000): void {
    this.offset += ms;
  }
}
