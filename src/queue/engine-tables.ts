/**
 * The connector's own tables in a PostgreSQL queue engine (QUEUE_BACKEND=postgres), beside BullMQ's
 * schema `bullmq`: schema `connector_engine` with
 * - `leases`: one row per lease (src/sync/postgres-leases.ts);
 * - `checkpoints`: Airtable's checkpoints when the queue is shared (src/db/airtable/engine-checkpoints.ts);
 * - `activity`: each process's report for the operator console (src/admin/activity-board.ts);
 * - `budgets`, `budget_starts`, `budget_leases` and the function `reserve_budget`: the vendors' budgets
 *   every worker shares (src/budget/postgres-budget-store.ts).
 * Rows carry QUEUE_PREFIX, so connectors sharing one engine keep apart, as their queues do.
 *
 * Created on first use, under a transaction-scoped advisory lock so that processes starting together
 * do not race on `CREATE ... IF NOT EXISTS` (which is not safe against itself). The user needs the
 * right to create a schema in the database, as BullMQ's own migration does.
 */
import pg from 'pg';
import { budgetTables } from '../budget/budget-tables.ts';

export const ENGINE_SCHEMA = 'connector_engine';

const DDL = `
CREATE SCHEMA IF NOT EXISTS ${ENGINE_SCHEMA};
CREATE TABLE IF NOT EXISTS ${ENGINE_SCHEMA}.leases (
  prefix text NOT NULL,
  name text NOT NULL,
  holder text NOT NULL,
  expires_at timestamptz NOT NULL,
  acquired_at timestamptz NOT NULL,
  PRIMARY KEY (prefix, name)
);
CREATE TABLE IF NOT EXISTS ${ENGINE_SCHEMA}.checkpoints (
  prefix text NOT NULL,
  source text NOT NULL,
  last_event_time timestamptz,
  last_cursor text,
  updated_at timestamptz,
  PRIMARY KEY (prefix, source)
);
CREATE TABLE IF NOT EXISTS ${ENGINE_SCHEMA}.activity (
  prefix text NOT NULL,
  id text NOT NULL,
  report jsonb NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (prefix, id)
);
${budgetTables(ENGINE_SCHEMA)}`;

/** A pool for the engine's tables: small, failing fast while the server is away. */
export function enginePool(url: string, applicationName: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 3_000, idleTimeoutMillis: 30_000, application_name: applicationName });
  pool.on('error', () => {}); // an idle connection's error; the next query reports it
  return pool;
}

/**
 * Ends a pool without waiting more than `ms` for it: `pool.end()` waits for every connection in use,
 * and a query on a connection cut off by a partition never ends, so a graceful stop would never end
 * either. What is left is dropped with the process.
 */
export async function endEnginePool(pool: pg.Pool, ms = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([pool.end().catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Creates the schema and tables once per pool (concurrent callers share the first try; a failed try is retried next call). */
export function ensureEngineTables(pool: pg.Pool): Promise<void> {
  let ready = created.get(pool);
  if (ready === undefined) {
    ready = create(pool);
    created.set(pool, ready);
    ready.catch(() => created.delete(pool));
  }
  return ready;
}

const created = new WeakMap<pg.Pool, Promise<void>>();

async function create(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('connector_engine:migrate'))");
    await client.query(DDL);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
