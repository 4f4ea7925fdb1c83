/**
 * Shared vendor budgets in PostgreSQL (QUEUE_BACKEND=postgres), in the queue's database, in a schema
 * of their own beside BullMQ's (`bullmq`):
 *
 *   connector_budget.budgets   one row per budget (`<prefix>:<name>`): the pause in force and its reason
 *   connector_budget.starts    one row per reservation within the longest window: (budget, start time)
 *   connector_budget.leases    one row per concurrency slot held: (budget, lease id, expiry)
 *
 * A reservation is one call of `connector_budget.reserve(...)`, a PL/pgSQL function that locks the
 * budget's row (`FOR UPDATE`: reservations of one budget queue up there, those of other budgets do
 * not), then reads the time (`clock_timestamp()`, after the lock: the time the start is logged is the
 * time it was decided), the pause, the leases and each window, and grants or refuses, all in one round
 * trip and one transaction. `pause`, `release` and renewals are single statements. A start counts within
 * a window while `start >= now - interval` (timestamps have µs).
 *
 * The schema is created on first use, under an advisory lock so that several processes starting at
 * once do not race on `CREATE OR REPLACE FUNCTION`; a failure is tried again on the next call.
 * Starts older than the longest window are deleted by the reservations themselves; leases when they
 * expire; a budget's row stays (one small row per vendor).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../log.ts';
import { ENGINE_TIMEOUT_MS, LEASE_TTL_MS, refusal, type BudgetSpec, type BudgetStore, type BudgetUsage, type Reservation } from './budget-store.ts';
import { EngineCalls } from './engine-calls.ts';
import { HeldLeases } from './held-leases.ts';

const SCHEMA = 'connector_budget';
/** Held while the DDL runs: processes starting together create the schema one after another. */
const MIGRATION_LOCK = `select pg_advisory_xact_lock(hashtextextended('${SCHEMA}:migrate', 0))`;

const DDL = `
create schema if not exists ${SCHEMA};
create table if not exists ${SCHEMA}.budgets (
  name text primary key,
  paused_until timestamptz,
  pause_reason text
);
create table if not exists ${SCHEMA}.starts (
  name text not null,
  at timestamptz not null
);
create index if not exists starts_name_at on ${SCHEMA}.starts (name, at);
create table if not exists ${SCHEMA}.leases (
  name text not null,
  id text not null,
  expires_at timestamptz not null,
  primary key (name, id)
);
create or replace function ${SCHEMA}.reserve(p_name text, p_lease text, p_concurrency int, p_lease_ms int, p_limits int[], p_intervals_ms bigint[])
returns table (granted boolean, why text, wait_ms bigint, detail text)
language plpgsql as $fn$
declare
  v_now timestamptz;
  v_paused timestamptz;
  v_reason text;
  v_held int;
  v_next timestamptz;
  v_nth timestamptz;
  v_longest bigint := 0;
  v_wait double precision := 0;
  v_full int := -1;
  v_free double precision;
  i int;
begin
  insert into ${SCHEMA}.budgets (name) values (p_name) on conflict (name) do nothing;
  select b.paused_until, b.pause_reason into v_paused, v_reason from ${SCHEMA}.budgets b where b.name = p_name for update;
  v_now := clock_timestamp();
  if v_paused is not null and v_paused > v_now then
    return query select false, 'paused'::text, ceil(extract(epoch from v_paused - v_now) * 1000)::bigint, coalesce(v_reason, '');
    return;
  end if;
  if p_concurrency > 0 then
    delete from ${SCHEMA}.leases l where l.name = p_name and l.expires_at <= v_now;
    select count(*), min(l.expires_at) into v_held, v_next from ${SCHEMA}.leases l where l.name = p_name;
    if v_held >= p_concurrency then
      return query select false, 'concurrency'::text, greatest(1, ceil(extract(epoch from v_next - v_now) * 1000))::bigint, ''::text;
      return;
    end if;
  end if;
  for i in 1 .. coalesce(array_length(p_limits, 1), 0) loop
    v_longest := greatest(v_longest, p_intervals_ms[i]);
    -- The limit-th newest start still within the window: while there is one, the window is full.
    select s.at into v_nth from ${SCHEMA}.starts s
      where s.name = p_name and s.at >= v_now - p_intervals_ms[i] * interval '1 millisecond'
      order by s.at desc offset p_limits[i] - 1 limit 1;
    if found then
      v_free := extract(epoch from v_nth + p_intervals_ms[i] * interval '1 millisecond' - v_now) * 1000;
      if v_free > v_wait then
        v_wait := v_free;
        v_full := i - 1;
      end if;
    end if;
  end loop;
  if v_full >= 0 then
    return query select false, 'window'::text, greatest(1, ceil(v_wait))::bigint, v_full::text;
    return;
  end if;
  if v_longest > 0 then
    delete from ${SCHEMA}.starts s where s.name = p_name and s.at < v_now - v_longest * interval '1 millisecond';
    insert into ${SCHEMA}.starts (name, at) values (p_name, v_now);
  end if;
  if p_concurrency > 0 then
    insert into ${SCHEMA}.leases (name, id, expires_at) values (p_name, p_lease, v_now + p_lease_ms * interval '1 millisecond');
  end if;
  return query select true, 'granted'::text, 0::bigint, ''::text;
end
$fn$;
`;

export interface PostgresBudgetStoreOptions {
  url: string;
  /** QUEUE_PREFIX. */
  prefix: string;
  log: Logger;
  /** `PostgreSQL at host:port`, for log lines. */
  where: string;
  /** How long a lease lives without renewal, ms; renewed every third of it. Default LEASE_TTL_MS (tests shorten it). */
  leaseTtlMs?: number;
}

export class PostgresBudgetStore implements BudgetStore {
  readonly engine = 'postgres' as const;
  readonly id = randomUUID();
  private readonly pool: pg.Pool;
  private readonly calls: EngineCalls;
  private readonly leases: HeldLeases;
  private readonly leaseTtlMs: number;
  private migrated: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: PostgresBudgetStoreOptions) {
    this.pool = new pg.Pool({
      connectionString: options.url,
      // Reservations are one at a time per vendor (the limiter queues the rest): two connections
      // serve three vendors' budgets; the queue's engine has connections to spare for BullMQ.
      max: 2,
      connectionTimeoutMillis: ENGINE_TIMEOUT_MS,
      query_timeout: ENGINE_TIMEOUT_MS,
      application_name: 'connector-budgets',
    });
    this.pool.on('error', () => {}); // an idle connection lost: the next call reports it (EngineCalls)
    this.leaseTtlMs = options.leaseTtlMs ?? LEASE_TTL_MS;
    this.calls = new EngineCalls(options.log, options.where);
    this.leases = new HeldLeases((name, ids) =>
      this.calls
        .run('renew', () => this.pool.query(`update ${SCHEMA}.leases set expires_at = clock_timestamp() + $3 * interval '1 millisecond' where name = $1 and id = any($2)`, [this.key(name), ids, this.leaseTtlMs]))
        .then(() => {}),
      Math.round(this.leaseTtlMs / 3),
    );
  }

  private key(name: string): string {
    return `${this.options.prefix}:${name}`;
  }

  /** Creates the schema once per store; a failure leaves it to the next call. */
  private migrate(): Promise<void> {
    this.migrated ??= (async () => {
      const client = await this.pool.connect();
      try {
        await client.query('begin');
        await client.query(MIGRATION_LOCK);
        await client.query(DDL);
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    })().catch((err: unknown) => {
      this.migrated = null;
      throw err;
    });
    return this.migrated;
  }

  /** A call to the engine, after the schema exists, under EngineCalls' timeout and logging. */
  private run<T>(what: string, call: () => Promise<T>): Promise<T> {
    return this.calls.run(what, async () => {
      await this.migrate();
      return call();
    });
  }

  async reserve(spec: BudgetSpec): Promise<Reservation> {
    const lease = randomUUID();
    const { rows } = await this.run('reserve', () =>
      this.pool.query<{ granted: boolean; why: string; wait_ms: string; detail: string }>(`select * from ${SCHEMA}.reserve($1, $2, $3, $4, $5, $6)`, [
        this.key(spec.name),
        lease,
        spec.concurrency ?? 0,
        this.leaseTtlMs,
        spec.windows.map((w) => w.limit),
        spec.windows.map((w) => Math.ceil(w.intervalMs)),
      ]),
    );
    const row = rows[0];
    if (row === undefined) throw new Error('the budget function returned no row');
    if (row.granted) {
      if (spec.concurrency === null) return { granted: true, lease: null };
      this.leases.add(spec.name, lease);
      return { granted: true, lease };
    }
    return refusal(spec, row.why, Number(row.wait_ms), row.detail);
  }

  async release(name: string, lease: string): Promise<void> {
    this.leases.delete(name, lease);
    await this.run('release', () => this.pool.query(`delete from ${SCHEMA}.leases where name = $1 and id = $2`, [this.key(name), lease]));
  }

  async pause(name: string, forMs: number, reason: string | null): Promise<void> {
    await this.run('pause', () =>
      this.pool.query(
        `insert into ${SCHEMA}.budgets as b (name, paused_until, pause_reason)
           values ($1, clock_timestamp() + $2 * interval '1 millisecond', $3)
         on conflict (name) do update
           set paused_until = excluded.paused_until,
               pause_reason = coalesce(excluded.pause_reason, case when b.paused_until > clock_timestamp() then b.pause_reason end)
         where b.paused_until is null or b.paused_until < excluded.paused_until`,
        [this.key(name), Math.max(0, Math.ceil(forMs)), reason],
      ),
    );
  }

  async usage(spec: BudgetSpec): Promise<BudgetUsage> {
    const { rows } = await this.run('usage', () =>
      this.pool.query<{ in_flight: string; paused_ms: string | null; reason: string | null; used: string[] }>(
        `select
           (select count(*) from ${SCHEMA}.leases where name = $1 and expires_at > clock_timestamp()) as in_flight,
           (select ceil(extract(epoch from paused_until - clock_timestamp()) * 1000) from ${SCHEMA}.budgets where name = $1 and paused_until > clock_timestamp()) as paused_ms,
           (select pause_reason from ${SCHEMA}.budgets where name = $1 and paused_until > clock_timestamp()) as reason,
           array(select (select count(*) from ${SCHEMA}.starts where name = $1 and at >= clock_timestamp() - ms * interval '1 millisecond') from unnest($2::bigint[]) with ordinality as w(ms, n) order by n) as used`,
        [this.key(spec.name), spec.windows.map((w) => Math.ceil(w.intervalMs))],
      ),
    );
    const row = rows[0];
    const pausedForMs = Number(row?.paused_ms ?? 0);
    return {
      windows: spec.windows.map((w, i) => ({ limit: w.limit, intervalMs: w.intervalMs, used: Number(row?.used[i] ?? 0) })),
      inFlight: Number(row?.in_flight ?? 0),
      pausedForMs,
      pauseReason: pausedForMs > 0 ? (row?.reason ?? null) : null,
    };
  }

  async purge(): Promise<void> {
    const pattern = `${this.options.prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}:%`;
    await this.migrate();
    for (const table of ['starts', 'leases', 'budgets']) await this.pool.query(`delete from ${SCHEMA}.${table} where name like $1`, [pattern]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.leases.stop();
    await this.pool.end().catch(() => {});
  }
}
