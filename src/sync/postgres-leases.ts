/**
 * Leases on PostgreSQL (QUEUE_BACKEND=postgres); the contract, and why a row rather than an advisory
 * lock, are in leases.ts.
 *
 * One row per lease in `connector_engine.leases` (src/queue/engine-tables.ts). Every decision is one
 * statement on the server's clock (`now()`): taking is an upsert whose update applies only when the row
 * is the caller's or has expired, so two takers racing on one row serialize on its lock and the second
 * sees the first's row; renewing updates only the caller's unexpired row; releasing deletes only the
 * caller's row. A small pool of its own (two connections), apart from BullMQ's, so a busy queue never
 * delays a renewal.
 */
import type pg from 'pg';
import type { Logger } from '../log.ts';
import { ENGINE_SCHEMA, endEnginePool, enginePool, ensureEngineTables } from '../queue/engine-tables.ts';
import type { LeaseAnswer, LeaseHolder, Leases } from './leases.ts';

const TABLE = `${ENGINE_SCHEMA}.leases`;

const ACQUIRE = `
INSERT INTO ${TABLE} AS l (prefix, name, holder, expires_at, acquired_at)
VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond', now())
ON CONFLICT (prefix, name) DO UPDATE
  SET holder = excluded.holder,
      expires_at = excluded.expires_at,
      acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END
  WHERE l.holder = excluded.holder OR l.expires_at <= now()
RETURNING holder`;

const HOLDER = `SELECT holder, GREATEST(0, EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::float8 AS expires_in_ms FROM ${TABLE} WHERE prefix = $1 AND name = $2 AND expires_at > now()`;

export class PostgresLeases implements Leases {
  readonly engine = 'postgres' as const;
  private readonly pool: pg.Pool;

  constructor(
    url: string,
    private readonly prefix: string,
    _log: Logger,
  ) {
    this.pool = enginePool(url, 'connector-leases');
  }

  private async query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    await ensureEngineTables(this.pool);
    return this.pool.query<R>(text, values);
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseAnswer> {
    const taken = await this.query<{ holder: string }>(ACQUIRE, [this.prefix, name, holder, Math.ceil(ttlMs)]);
    if (taken.rowCount === 1) return { held: true };
    const current = await this.holder(name);
    return { held: false, holder: current?.holder ?? null, expiresInMs: current?.expiresInMs ?? null };
  }

  async renew(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const result = await this.query(`UPDATE ${TABLE} SET expires_at = now() + $4 * interval '1 millisecond' WHERE prefix = $1 AND name = $2 AND holder = $3 AND expires_at > now()`, [this.prefix, name, holder, Math.ceil(ttlMs)]);
    return result.rowCount === 1;
  }

  async release(name: string, holder: string): Promise<boolean> {
    const result = await this.query(`DELETE FROM ${TABLE} WHERE prefix = $1 AND name = $2 AND holder = $3 AND expires_at > now()`, [this.prefix, name, holder]);
    return result.rowCount === 1;
  }

  async holder(name: string): Promise<LeaseHolder | null> {
    const { rows } = await this.query<{ holder: string; expires_in_ms: number }>(HOLDER, [this.prefix, name]);
    const row = rows[0];
    return row === undefined ? null : { holder: row.holder, expiresInMs: Math.round(row.expires_in_ms) };
  }

  close(): Promise<void> {
    return endEnginePool(this.pool);
  }
}
