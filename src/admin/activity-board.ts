/**
 * Where each process of one connector posts what it saw (src/admin/activity.ts), so that the console
 * of any process shows them all: with `serve` and `work` in separate processes (or on several hosts),
 * the events are worked on in the workers, and the console is served by `serve`.
 *
 * One report per process, replaced every few seconds, and read back only while fresh (a process that
 * stopped drops out within `STALE_MS`). The place follows the queue, which every process of a
 * connector already shares:
 * - file queue: one JSON file per process in `${DATA_DIR}/activity/`, written beside and renamed over
 *   (never fsynced: a report lost in a crash is replaced seconds later by the next one);
 * - Redis: one key per process, `<QUEUE_PREFIX>:activity:<id>`, expiring after `STALE_MS`;
 * - PostgreSQL: one row per process in `connector_engine.activity` (src/queue/engine-tables.ts).
 * A board that cannot be reached is not an outage: posting fails quietly (debug line) and reading
 * returns what it can.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { Pool } from 'pg';
import type { Logger } from '../log.ts';
import type { RowRef, SourceName } from '../model.ts';
import type { EngineSettings } from '../queue/bull-queue.ts';
import type { EventAttempt, EventSummary, MinuteSeries, ReconciliationSummary } from '../server/console/data.ts';

/** A report older than this is of a process that stopped, ms. */
export const STALE_MS = 30_000;
/** A report file older than this is removed by the next reader, ms. */
const REMOVE_AFTER_MS = 10 * 60_000;

export interface SourceReport {
  name: SourceName;
  lastDeliveryAt: string | null;
  /** The epoch minute of the series' last number (each series is 60 minutes, oldest first). */
  minute: number;
  perMinute: { deliveries: MinuteSeries; events: MinuteSeries; failed: MinuteSeries; missed: MinuteSeries };
  missedTotal: number;
  reconciliation: ReconciliationSummary | null;
}

export interface ReportedEvent extends EventSummary {
  history: EventAttempt[];
  rows: RowRef[];
}

/** What one process posts. */
export interface ActivityReport {
  /** `<role>@<host>:<pid>#<random>`. */
  id: string;
  role: 'serve' | 'work' | 'start';
  at: string;
  startedAt: string;
  /** The last time a worker lane of this process claimed events; null for none (or not a worker). */
  lastClaimAt: string | null;
  sources: SourceReport[];
  /** The newest events this process worked on, newest first. */
  events: ReportedEvent[];
}

export interface ActivityBoard {
  post(report: ActivityReport): Promise<void>;
  /** The fresh reports of every process, this one's included. */
  read(): Promise<ActivityReport[]>;
  /** Takes this process's report down (on stop). */
  remove(id: string): Promise<void>;
  close(): Promise<void>;
}

function fresh(report: ActivityReport, now: number): boolean {
  return now - Date.parse(report.at) < STALE_MS;
}

function parseReport(text: string | null): ActivityReport | null {
  if (text === null) return null;
  try {
    const report = JSON.parse(text) as ActivityReport;
    return typeof report.id === 'string' && typeof report.at === 'string' && Array.isArray(report.sources) && Array.isArray(report.events) ? report : null;
  } catch {
    return null;
  }
}

/** File names carry the id in a form safe for any file system. */
function fileName(id: string): string {
  return `${Buffer.from(id).toString('base64url')}.json`;
}

export class FileActivityBoard implements ActivityBoard {
  constructor(private readonly dir: string) {}

  async post(report: ActivityReport): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, fileName(report.id));
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(report));
    await rename(temporary, file);
  }

  async read(): Promise<ActivityReport[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const now = Date.now();
    const reports = await Promise.all(
      names
        .filter((n) => n.endsWith('.json'))
        .map(async (name) => {
          const file = path.join(this.dir, name);
          const report = parseReport(await readFile(file, 'utf8').catch(() => null));
          if (report !== null && fresh(report, now)) return report;
          const info = await stat(file).catch(() => null);
          if (info !== null && now - info.mtimeMs > REMOVE_AFTER_MS) await rm(file, { force: true });
          return null;
        }),
    );
    return reports.filter((r): r is ActivityReport => r !== null);
  }

  async remove(id: string): Promise<void> {
    await rm(path.join(this.dir, fileName(id)), { force: true });
  }

  async close(): Promise<void> {}
}

export class RedisActivityBoard implements ActivityBoard {
  private readonly redis: Redis;

  constructor(
    RedisClient: typeof Redis,
    url: string,
    private readonly prefix: string,
  ) {
    this.redis = new RedisClient(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 3_000 });
    this.redis.on('error', () => {}); // each command reports its own failure
  }

  private key(id: string): string {
    return `${this.prefix}:activity:${id}`;
  }

  private async connected(): Promise<void> {
    if (this.redis.status === 'wait' || this.redis.status === 'end') await this.redis.connect();
  }

  async post(report: ActivityReport): Promise<void> {
    await this.connected();
    await this.redis.set(this.key(report.id), JSON.stringify(report), 'PX', STALE_MS);
  }

  async read(): Promise<ActivityReport[]> {
    await this.connected();
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}:activity:*`, 'COUNT', 200);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const now = Date.now();
    return (await this.redis.mget(keys)).map(parseReport).filter((r): r is ActivityReport => r !== null && fresh(r, now));
  }

  async remove(id: string): Promise<void> {
    await this.connected();
    await this.redis.del(this.key(id));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

export class PostgresActivityBoard implements ActivityBoard {
  constructor(
    private readonly pool: Pool,
    private readonly prefix: string,
    private readonly ready: () => Promise<void>,
    private readonly end: () => Promise<void>,
  ) {}

  async post(report: ActivityReport): Promise<void> {
    await this.ready();
    await this.pool.query(
      `INSERT INTO connector_engine.activity (prefix, id, report, updated_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (prefix, id) DO UPDATE SET report = EXCLUDED.report, updated_at = now()`,
      [this.prefix, report.id, JSON.stringify(report)],
    );
  }

  async read(): Promise<ActivityReport[]> {
    await this.ready();
    await this.pool.query(`DELETE FROM connector_engine.activity WHERE prefix = $1 AND updated_at < now() - make_interval(secs => $2)`, [this.prefix, REMOVE_AFTER_MS / 1000]);
    const { rows } = await this.pool.query<{ report: string }>(
      `SELECT report::text AS report FROM connector_engine.activity WHERE prefix = $1 AND updated_at > now() - make_interval(secs => $2)`,
      [this.prefix, STALE_MS / 1000],
    );
    const now = Date.now();
    return rows.map((r) => parseReport(r.report)).filter((r): r is ActivityReport => r !== null && fresh(r, now));
  }

  async remove(id: string): Promise<void> {
    await this.ready();
    await this.pool.query('DELETE FROM connector_engine.activity WHERE prefix = $1 AND id = $2', [this.prefix, id]);
  }

  async close(): Promise<void> {
    await this.end();
  }
}

/** The board beside the queue: files under `dataDir` for the file queue, else the engine's. Drivers load only when chosen. */
export async function createActivityBoard(settings: EngineSettings | null, dataDir: string, log: Logger): Promise<ActivityBoard> {
  if (settings === null) return new FileActivityBoard(path.join(dataDir, 'activity'));
  if (settings.engine === 'redis') {
    const { Redis } = await import('ioredis');
    return new RedisActivityBoard(Redis, settings.url, settings.prefix);
  }
  const { enginePool, endEnginePool, ensureEngineTables } = await import('../queue/engine-tables.ts');
  const pool = enginePool(settings.url, 'connector-activity');
  log.debug({ engine: 'postgres' }, 'activity board in connector_engine.activity');
  return new PostgresActivityBoard(pool, settings.prefix, () => ensureEngineTables(pool), () => endEnginePool(pool));
}
