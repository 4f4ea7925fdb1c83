/**
 * The shared queue engine (QUEUE_BACKEND=redis or postgres): which one the settings name, whether it
 * answers, and whether it keeps the promise "acknowledged = durable". Used at start-up by createQueue
 * (an engine that cannot be reached, or a Redis that cannot keep the promise, stops start-up with one
 * line naming the setting) and by `doctor`.
 *
 * - Redis answers a write before it is on disk unless AOF is on with `appendfsync always`: with
 *   `everysec` a crash of Redis loses up to a second of acknowledged deliveries, with AOF off everything
 *   since the last snapshot. The connector refuses such a Redis unless REDIS_DURABILITY=relaxed says
 *   the operator accepts that (then it warns at start and `/health` says so). A Redis that refuses
 *   CONFIG GET (some managed services) cannot be checked: the same rule applies.
 * - PostgreSQL answers a commit after the WAL is flushed unless `synchronous_commit` is off for the
 *   session (a crash may then lose the last few hundred milliseconds of commits): warned, not refused.
 */
import type { Config } from '../config.ts';
import { ConnectorError } from '../errors.ts';
import type { EngineSettings } from './bull-queue.ts';

const PROBE_TIMEOUT_MS = 3_000;

/** The engine the settings name, or null for the file queue. */
export function engineSettings(
  config: Pick<Config, 'QUEUE_BACKEND' | 'REDIS_URL' | 'QUEUE_DATABASE_URL' | 'DATABASE_URL' | 'QUEUE_PREFIX'> & Partial<Pick<Config, 'QUEUE_LOCK_SECONDS'>>,
): EngineSettings | null {
  // Only the claiming side uses the lock time; callers that only read or enqueue need not give it.
  const lock = config.QUEUE_LOCK_SECONDS === undefined ? {} : { lockMs: config.QUEUE_LOCK_SECONDS * 1000 };
  if (config.QUEUE_BACKEND === 'redis') return { engine: 'redis', url: config.REDIS_URL ?? '', prefix: config.QUEUE_PREFIX, ...lock };
  if (config.QUEUE_BACKEND === 'postgres') return { engine: 'postgres', url: config.QUEUE_DATABASE_URL ?? config.DATABASE_URL ?? '', prefix: config.QUEUE_PREFIX, ...lock };
  return null;
}

/** The setting that names the engine's address. */
export function engineUrlSetting(settings: EngineSettings, config: Pick<Config, 'QUEUE_DATABASE_URL'>): string {
  if (settings.engine === 'redis') return 'REDIS_URL';
  return config.QUEUE_DATABASE_URL !== undefined ? 'QUEUE_DATABASE_URL' : 'DATABASE_URL';
}

/** `host:port` of an engine URL, never its user or password. */
export function engineAddress(settings: EngineSettings): string {
  try {
    const url = new URL(settings.url);
    return `${url.hostname || 'localhost'}:${url.port || (settings.engine === 'redis' ? '6379' : '5432')}`;
  } catch {
    return '(not a URL)';
  }
}

export interface EngineReport {
  engine: 'redis' | 'postgres';
  address: string;
  /** The server's version, e.g. "7.0.15". */
  version: string;
  /** Whether an answered write is on disk (see the header); null when it could not be checked. */
  durable: boolean | null;
  /** What the durability settings are, in words: "appendonly yes, appendfsync always". */
  durability: string;
}

/** Connects, asks for the version and the durability settings, disconnects. Throws when the engine does not answer. */
export async function probeEngine(settings: EngineSettings): Promise<EngineReport> {
  const address = engineAddress(settings);
  if (settings.engine === 'redis') {
    // Loaded here, not at the top: the file queue (the default) never needs the engines' drivers.
    const { Redis } = await import('ioredis');
    const redis = new Redis(settings.url, { lazyConnect: true, connectTimeout: PROBE_TIMEOUT_MS, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    let socketError: unknown = null;
    redis.on('error', (err) => (socketError ??= err));
    try {
      await redis.connect().catch((err: unknown) => {
        throw socketError ?? err; // "Connection is closed." hides the cause (ECONNREFUSED, ENOTFOUND)
      });
      const info = await redis.info('server');
      const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
      try {
        const [, appendonly] = (await redis.config('GET', 'appendonly')) as string[];
        const [, appendfsync] = (await redis.config('GET', 'appendfsync')) as string[];
        const durable = appendonly === 'yes' && appendfsync === 'always';
        return { engine: 'redis', address, version, durable, durability: `appendonly ${appendonly ?? '?'}, appendfsync ${appendfsync ?? '?'}` };
      } catch (err) {
        return { engine: 'redis', address, version, durable: null, durability: `cannot be checked: CONFIG GET refused (${(err as Error).message})` };
      }
    } finally {
      redis.disconnect();
    }
  }
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: settings.url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ version: string; sync: string }>("select current_setting('server_version') as version, current_setting('synchronous_commit') as sync");
    const row = rows[0];
    return { engine: 'postgres', address, version: row?.version ?? 'unknown', durable: row?.sync !== 'off', durability: `synchronous_commit ${row?.sync ?? '?'}` };
  } finally {
    await client.end().catch(() => {});
  }
}

/** What start-up makes of a report: refuse (a ConnectorError naming the setting), or a warning to log, or nothing. */
export function judgeDurability(report: EngineReport, relaxed: boolean): { warning: string | null } {
  if (report.durable === true) return { warning: null };
  if (report.engine === 'postgres') {
    return { warning: `the queue's PostgreSQL at ${report.address} has ${report.durability}: a crash of PostgreSQL may lose the last acknowledged deliveries; set synchronous_commit on` };
  }
  const why = report.durable === null ? `its durability ${report.durability}` : `it has ${report.durability}`;
  if (relaxed) {
    return { warning: `REDIS_DURABILITY=relaxed: the Redis at ${report.address} answers before writing to disk (${why}); a crash of Redis may lose acknowledged deliveries` };
  }
  throw new ConnectorError(
    'CONN_ERR_CONFIG_INVALID',
    `Invalid setting REDIS_URL: the Redis at ${report.address} does not keep acknowledged deliveries (${why}): set appendonly yes and appendfsync always in Redis, or REDIS_DURABILITY=relaxed to accept losing up to a second of them`,
    { details: { variable: 'REDIS_URL' } },
  );
}

/** The one line for an engine that does not answer, naming the setting. */
export function unreachableEngine(settings: EngineSettings, setting: string, err: unknown): ConnectorError {
  const code = (err as { code?: unknown } | null)?.code;
  const why = typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
  const name = settings.engine === 'redis' ? 'Redis' : 'PostgreSQL';
  return new ConnectorError('CONN_ERR_CONFIG_INVALID', `Invalid setting ${setting}: cannot reach ${name} at ${engineAddress(settings)} (${why})`, { cause: err, details: { variable: setting } });
}
