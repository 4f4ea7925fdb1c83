/**
 * Airtable's checkpoints when the queue is shared (QUEUE_BACKEND=redis or postgres): in the queue's
 * engine, where every worker on every host reads and writes the same ones, instead of in files under
 * one host's DATA_DIR (file-checkpoints.ts). SQLite and PostgreSQL keep checkpoints in their own
 * tables, so this concerns Airtable only.
 *
 * - Redis: one hash `<QUEUE_PREFIX>:checkpoints`; per source, field `<source>` holds the checkpoint as
 *   the seed's JSON and field `<source>:t` its time in ms. A small Lua script compares and writes both
 *   fields at once.
 * - PostgreSQL: rows of `connector_engine.checkpoints (prefix, source, ...)` (src/queue/engine-tables.ts),
 *   written by one upsert whose update applies only when it does not move the time back.
 *
 * As with the files: a checkpoint never moves backwards. A write whose time is older than the stored
 * one, or null while the stored one is not, is ignored; the same time may update the cursor. Because
 * the comparison runs in the engine, two processes writing at once cannot undo each other's progress.
 *
 * Moving an installation from the file queue to a shared one: while the engine has no checkpoint for a
 * source, the file of this host (if any) is read and copied up, so the first backfill goes on from
 * where the files left off instead of falling back to BACKFILL_INITIAL_HOURS.
 */
import { Redis } from 'ioredis';
import type pg from 'pg';
import type { Checkpoint, SourceName } from '../../model.ts';
import type { EngineSettings } from '../../queue/bull-queue.ts';
import { ENGINE_SCHEMA, enginePool, ensureEngineTables } from '../../queue/engine-tables.ts';
import type { FileCheckpoints } from './file-checkpoints.ts';

/** Where the Airtable backend keeps checkpoints: files (file-checkpoints.ts), or the engine (here). */
export interface CheckpointRecords {
  get(source: SourceName): Promise<Checkpoint | null>;
  /** Stores `checkpoint` unless the stored one is newer. `now` fills a missing `updatedAt`. */
  set(checkpoint: Checkpoint, now: Date): Promise<void>;
  close?(): Promise<void>;
}

interface Stored {
  last_event_time: string | null;
  last_cursor: string | null;
  updated_at: string | null;
}

function toCheckpoint(source: SourceName, stored: Stored): Checkpoint {
  const date = (v: string | null) => (v === null || Number.isNaN(Date.parse(v)) ? null : new Date(v));
  return { source, lastEventTime: date(stored.last_event_time), lastCursor: stored.last_cursor, updatedAt: date(stored.updated_at) };
}

/** KEYS[1] the hash; ARGV[1] source, ARGV[2] time ms or '', ARGV[3] the JSON. 1 written, 0 ignored (older). */
const SET_FORWARD = `
local stored = redis.call('HGET', KEYS[1], ARGV[1] .. ':t')
if stored and stored ~= '' then
  if ARGV[2] == '' or tonumber(ARGV[2]) < tonumber(stored) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':t', ARGV[2], ARGV[1], ARGV[3])
return 1
`;

export class RedisCheckpoints implements CheckpointRecords {
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly prefix: string,
  ) {
    this.redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3_000 });
    this.redis.on('error', () => {}); // the command that fails reports it
  }

  private get key(): string {
    return `${this.prefix}:checkpoints`;
  }

  async get(source: SourceName): Promise<Checkpoint | null> {
    const text = await this.redis.hget(this.key, source);
    return text === null ? null : toCheckpoint(source, JSON.parse(text) as Stored);
  }

  async set(checkpoint: Checkpoint, now: Date): Promise<void> {
    const stored: Stored = { last_event_time: checkpoint.lastEventTime?.toISOString() ?? null, last_cursor: checkpoint.lastCursor, updated_at: (checkpoint.updatedAt ?? now).toISOString() };
    await this.redis.eval(SET_FORWARD, 1, this.key, checkpoint.source, checkpoint.lastEventTime === null ? '' : String(checkpoint.lastEventTime.getTime()), JSON.stringify({ source: checkpoint.source, ...stored }));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

const TABLE = `${ENGINE_SCHEMA}.checkpoints`;

export class PostgresCheckpoints implements CheckpointRecords {
  private readonly pool: pg.Pool;

  constructor(
    url: string,
    private readonly prefix: string,
  ) {
    this.pool = enginePool(url, 'connector-checkpoints');
  }

  async get(source: SourceName): Promise<Checkpoint | null> {
    await ensureEngineTables(this.pool);
    const { rows } = await this.pool.query<{ last_event_time: Date | null; last_cursor: string | null; updated_at: Date | null }>(`SELECT last_event_time, last_cursor, updated_at FROM ${TABLE} WHERE prefix = $1 AND source = $2`, [this.prefix, source]);
    const row = rows[0];
    return row === undefined ? null : { source, lastEventTime: row.last_event_time, lastCursor: row.last_cursor, updatedAt: row.updated_at };
  }

  async set(checkpoint: Checkpoint, now: Date): Promise<void> {
    await ensureEngineTables(this.pool);
    await this.pool.query(
      `INSERT INTO ${TABLE} AS c (prefix, source, last_event_time, last_cursor, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (prefix, source) DO UPDATE
         SET last_event_time = excluded.last_event_time, last_cursor = excluded.last_cursor, updated_at = excluded.updated_at
         WHERE c.last_event_time IS NULL OR (excluded.last_event_time IS NOT NULL AND excluded.last_event_time >= c.last_event_time)`,
      [this.prefix, checkpoint.source, checkpoint.lastEventTime, checkpoint.lastCursor, checkpoint.updatedAt ?? now],
    );
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => {});
  }
}

/** The engine's checkpoints, seeded from this host's files while the engine has none for a source. */
export class SeededCheckpoints implements CheckpointRecords {
  constructor(
    private readonly engine: CheckpointRecords,
    private readonly files: FileCheckpoints,
  ) {}

  async get(source: SourceName): Promise<Checkpoint | null> {
    const found = await this.engine.get(source);
    if (found !== null) return found;
    const file = await this.files.get(source);
    if (file === null) return null;
    await this.engine.set(file, file.updatedAt ?? new Date());
    return (await this.engine.get(source)) ?? file;
  }

  set(checkpoint: Checkpoint, now: Date): Promise<void> {
    return this.engine.set(checkpoint, now);
  }

  async close(): Promise<void> {
    await this.engine.close?.();
  }
}

/** The engine's checkpoints for these settings (no connection until first use). */
export function engineCheckpoints(settings: EngineSettings, files: FileCheckpoints): CheckpointRecords {
  const engine = settings.engine === 'redis' ? new RedisCheckpoints(settings.url, settings.prefix) : new PostgresCheckpoints(settings.url, settings.prefix);
  return new SeededCheckpoints(engine, files);
}
