/**
 * Shared vendor budgets in PostgreSQL (QUEUE_BACKEND=postgres), in the queue's database, in the
 * connector's engine schema beside BullMQ's (`connector_engine`, src/queue/engine-tables.ts; the
 * tables and the reservation function are in budget-tables.ts): a row per budget with its pause, a row
 * per start within the longest window, a row per concurrency slot held, each keyed by QUEUE_PREFIX and
 * the budget's name.
 *
 * A reservation is one call of `reserve_budget(...)`, which locks the budget's row and decides in one
 * round trip and one transaction on the server's clock (see budget-tables.ts). `pause`, `release` and
 * renewals are single statements. The tables are created on first use (with the other engine tables,
 * under their advisory lock); a failure is tried again on the next call. Starts older than the longest
 * window are deleted by the reservations themselves; leases when they expire; a budget's row stays (one
 * small row per vendor).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../log.ts';
import { ENGINE_SCHEMA, endEnginePool, ensureEngineTables } from '../queue/engine-tables.ts';
import { ENGINE_TIMEOUT_MS, LEASE_TTL_MS, refusal, type BudgetSpec, type BudgetStore, type BudgetUsage, type Reservation } from './budget-store.ts';
import { EngineCalls } from './engine-calls.ts';
import { HeldLeases } from './held-leases.ts';

const S = ENGINE_SCHEMA;

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
        .run('renew', () => this.pool.query(`update ${S}.budget_leases set expires_at = clock_timestamp() + $4 * interval '1 millisecond' where prefix = $1 and name = $2 and id = any($3)`, [this.prefix, name, ids, this.leaseTtlMs]))
        .then(() => {}),
      Math.round(this.leaseTtlMs / 3),
    );
  }

  private get prefix(): string {
    return this.options.prefix;
  }

  /** A call to the engine, after its tables exist, under EngineCalls' timeout and logging. */
  private run<T>(what: string, call: () => Promise<T>): Promise<T> {
    return this.calls.run(what, async () => {
      await ensureEngineTables(this.pool);
      return call();
    });
  }

  async reserve(spec: BudgetSpec): Promise<Reservation> {
    const lease = randomUUID();
    const { rows } = await this.run('reserve', () =>
      this.pool.query<{ granted: boolean; why: string; wait_ms: string; detail: string }>(`select * from ${S}.reserve_budget($1, $2, $3, $4, $5, $6, $7)`, [
        this.prefix,
        spec.name,
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
    await this.run('release', () => this.pool.query(`delete from ${S}.budget_leases where prefix = $1 and name = $2 and id = $3`, [this.prefix, name, lease]));
  }

  async pause(name: string, forMs: number, reason: string | null): Promise<void> {
    await this.run('pause', () =>
      this.pool.query(
        `insert into ${S}.budgets as b (prefix, name, paused_until, pause_reason)
           values ($1, $2, clock_timestamp() + $3 * interval '1 millisecond', $4)
         on conflict (prefix, name) do update
           set paused_until = excluded.paused_until,
               pause_reason = coalesce(excluded.pause_reason, case when b.paused_until > clock_timestamp() then b.pause_reason end)
         where b.paused_until is null or b.paused_until < excluded.paused_until`,
        [this.prefix, name, Math.max(0, Math.ceil(forMs)), reason],
      ),
    );
  }

  async usage(spec: BudgetSpec): Promise<BudgetUsage> {
    const { rows } = await this.run('usage', () =>
      this.pool.query<{ in_flight: string; paused_ms: string | null; reason: string | null; used: string[] }>(
        `select
           (select count(*) from ${S}.budget_leases where prefix = $1 and name = $2 and expires_at > clock_timestamp()) as in_flight,
           (select ceil(extract(epoch from paused_until - clock_timestamp()) * 1000) from ${S}.budgets where prefix = $1 and name = $2 and paused_until > clock_timestamp()) as paused_ms,
           (select pause_reason from ${S}.budgets where prefix = $1 and name = $2 and paused_until > clock_timestamp()) as reason,
           array(select (select count(*) from ${S}.budget_starts where prefix = $1 and name = $2 and at >= clock_timestamp() - ms * interval '1 millisecond') from unnest($3::bigint[]) with ordinality as w(ms, n) order by n) as used`,
        [this.prefix, spec.name, spec.windows.map((w) => Math.ceil(w.intervalMs))],
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
    await ensureEngineTables(this.pool);
    for (const table of ['budget_starts', 'budget_leases', 'budgets']) await this.pool.query(`delete from ${S}.${table} where prefix = $1`, [this.prefix]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.leases.stop();
    await endEnginePool(this.pool);
  }
}
