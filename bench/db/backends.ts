/**
 * What the database benchmark measures: a list of targets, each able to upsert canonical tasks one at
 * a time and in batches. A Database backend becomes a target through `databaseTarget`; the raw `pg`
 * baseline is a target of its own. To add a backend, append an entry to `TARGETS`: `open()` returns a
 * writer on a fresh, empty store and `close()` removes what it made.
 *
 * Airtable runs against its simulator with Airtable's real limit (5 requests per second per base, a
 * 30-second lockout after a 429) and the backend's own process-wide budget for the base, so what it
 * measures is the product's write path at the vendor's pace: its figure is compared with the request
 * budget (requests/s over 5, records/s over 5 x 10), not with a local baseline, and any 429 is
 * reported, pass by pass (an insert pass, then update passes of the same records).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { AirtableDatabase } from '../../src/db/airtable/airtable-database.ts';
import type { Database } from '../../src/db/database.ts';
import { PostgresDatabase } from '../../src/db/postgres/postgres-database.ts';
import { SqliteDatabase } from '../../src/db/sqlite/sqlite-database.ts';
import { TASK_COLUMNS, Json, taskRow } from '../../src/db/rows.ts';
import type { Task } from '../../src/model.ts';
import { startAirtableSimulator } from '../../simulators/airtable/index.ts';

export const BENCH_POSTGRES_URL = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Requests a remote store has answered so far (a simulator's request log). */
export interface RequestCounts {
  total: number;
  /** Answered 429 Too Many Requests. */
  rateLimited: number;
}

export interface BenchWriter {
  upsertOne(task: Task): Promise<void>;
  upsertBatch(tasks: Task[]): Promise<void>;
  /** Closes connections and removes the data the target made. */
  close(): Promise<void>;
  /** For a store behind an API: the requests it has answered so far. */
  requests?(): RequestCounts;
}

/** Rows per measurement (each written twice: insert, then update). */
export interface BenchRows {
  single: number;
  batched: number;
  /** Rows written one at a time, and in one batch, before measuring. */
  warmUp: number;
}

export interface BenchTarget {
  /** Shown in the results. */
  name: string;
  /** Why this target cannot run here, or null when it can. */
  unavailable(): Promise<string | null>;
  /** A writer on a fresh, empty, migrated store. */
  open(): Promise<BenchWriter>;
  /** Rows for a target whose pace is set by a vendor's rate limit; default the command line's. */
  rows?: BenchRows;
  /**
   * The vendor's request budget this target is held to: requests/s, the share of it to reach in every
   * pass, and the most records one write request carries (the batched update passes must reach
   * `targetShare * requestsPerSecond * recordsPerRequest` records/s).
   */
  budget?: { requestsPerSecond: number; targetShare: number; recordsPerRequest: number };
  /** Update passes after the insert pass, each with newer versions of the same records. Default 1. */
  updatePasses?: number;
}

/** What `databaseTarget` needs made for each round. */
export interface MadeDatabase {
  db: Database;
  /** Deletes what `make` created. */
  remove(): Promise<void>;
  requests?(): RequestCounts;
}

/** A Database backend as a benchmark target. */
export function databaseTarget(
  name: string,
  unavailable: () => Promise<string | null>,
  make: () => Promise<MadeDatabase>,
  extra: Pick<BenchTarget, 'rows' | 'budget' | 'updatePasses'> = {},
): BenchTarget {
  return {
    name,
    unavailable,
    ...extra,
    async open() {
      const { db, remove, requests } = await make();
      await db.migrate();
      return {
        upsertOne: async (task) => void (await db.upsertTask(task)),
        upsertBatch: async (tasks) => void (await db.upsertTasks(tasks)),
        close: async () => {
          await db.close();
          await remove();
        },
        ...(requests === undefined ? {} : { requests }),
      };
    },
  };
}

/**
 * The Airtable backend on a fresh simulator (and a fresh AirtableDatabase, so an empty version cache)
 * per round, at Airtable's real limit (5 requests/s per base, 30 s lockout). The backend uses its
 * default, process-wide budget for the base (5 requests per 1.1 s), as the connector does.
 *
 * What the passes show: the insert pass writes records the process has never seen, so each batch of
 * 50 costs one read of their stored versions and 5 upserts (at most 50 x 5/1.1 / 6, about 38
 * records/s); the update passes write the same records again, newer, as a connector does for the
 * tasks and emails it keeps syncing: their versions are known (the backend's version cache), so each
 * batch costs only its 5 upserts (at most 10 x 5/1.1, about 45 records/s). The 45 records/s target is
 * for those. Rows are few because of the pace: one round takes about 30 s. They are chosen so that
 * every pass is a whole number of the budget's windows (5 requests): 10 one at a time (20 requests to
 * insert, 10 per update) and 250 in batches of 50 (30 requests to insert, 25 per update). Requests
 * leave in bursts of 5 per 1.1 s, so a pass ending with a partly used window would be charged a whole
 * 1.1 s for it and read up to 5% low, although the next pass would use the rest of that window.
 */
function airtableTarget(): BenchTarget {
  return databaseTarget(
    'airtable (sim)',
    async () => null,
    async () => {
      const sim = await startAirtableSimulator();
      const dir = mkdtempSync(path.join(tmpdir(), 'bench-db-airtable-'));
      const db = new AirtableDatabase({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints') });
      return {
        db,
        requests: () => ({ total: sim.requests.entries.length, rateLimited: sim.requests.find((r) => r.status === 429).length }),
        remove: async () => {
          await sim.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
    { rows: { single: 10, batched: 250, warmUp: 2 }, updatePasses: 2, budget: { requestsPerSecond: 5, targetShare: 0.9, recordsPerRequest: 10 } },
  );
}

let schemaCounter = 0;
const benchSchema = () => `bench_db_${process.pid}_${++schemaCounter}`;

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

async function postgresUnavailable(): Promise<string | null> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return `PostgreSQL unreachable at ${BENCH_POSTGRES_URL.replace(/\/\/[^@/]*@/, '//***@')}: ${(err as Error).message}`;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The baseline: the plain `pg` driver doing what anyone would write by hand, a multi-row
 * `INSERT ... VALUES (...), (...) ON CONFLICT (id) DO UPDATE` of the same rows into the same table,
 * with no stale-write guard, no counts, no NUL cleaning and no transaction. One connection.
 */
function rawPostgresTarget(): BenchTarget {
  const columns = TASK_COLUMNS.map((c) => `"${c}"`);
  const updates = TASK_COLUMNS.filter((c) => c !== 'id').map((c) => `"${c}" = excluded."${c}"`).join(', ');
  const values = (task: Task) => {
    const row = taskRow(task, new Date());
    return TASK_COLUMNS.map((c) => {
      const v = row[c];
      return v instanceof Json ? JSON.stringify(v.value) : v;
    });
  };
  return {
    name: 'pg driver (raw)',
    unavailable: postgresUnavailable,
    async open() {
      const schema = benchSchema();
      // The table comes from the backend's own migration, so both write exactly the same schema.
      const setup = new PostgresDatabase({ connectionString: BENCH_POSTGRES_URL, schema, poolSize: 1 });
      await setup.migrate();
      await setup.close();
      const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
      await client.connect();
      const upsert = async (tasks: Task[]) => {
        const params: unknown[] = [];
        const tuples = tasks.map((task) => {
          const row = values(task);
          const placeholders = row.map((v) => `$${params.push(v)}`);
          return `(${placeholders.join(', ')})`;
        });
        await client.query(`INSERT INTO "${schema}".tasks (${columns.join(', ')}) VALUES ${tuples.join(', ')} ON CONFLICT (id) DO UPDATE SET ${updates}`, params);
      };
      return {
        upsertOne: (task) => upsert([task]),
        upsertBatch: upsert,
        close: async () => {
          await client.end();
          await dropSchema(schema);
        },
      };
    },
  };
}

export const TARGETS: BenchTarget[] = [
  databaseTarget('sqlite', async () => null, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-db-sqlite-'));
    return { db: new SqliteDatabase({ file: path.join(dir, 'connector.db') }), remove: async () => rmSync(dir, { recursive: true, force: true }) };
  }),
  databaseTarget('postgres', postgresUnavailable, async () => {
    const schema = benchSchema();
    return { db: new PostgresDatabase({ connectionString: BENCH_POSTGRES_URL, schema, poolSize: 2 }), remove: () => dropSchema(schema) };
  }),
  rawPostgresTarget(),
  airtableTarget(),
];

/** The target each backend is compared with, by name: the PostgreSQL backend against the raw driver. */
export const BASELINES: Record<string, string> = {
  postgres: 'pg driver (raw)',
};
