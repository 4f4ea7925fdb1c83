/**
 * Leases in the shared queue engine: with QUEUE_BACKEND=redis or postgres, any number of worker
 * processes on any number of hosts share one queue, but reconciliation must run in exactly one of them
 * at a time (two would repeat each other's vendor requests and spend the vendors' rate budgets twice).
 *
 * Words:
 * - lease      a name in the engine (`reconciler`, `backfill:teamwork`) that at most one holder has at
 *              a time, until an expiry the engine keeps. A holder that stops renewing loses it when it
 *              expires, so a process that dies (SIGKILL, power cut, a host gone) is replaced within
 *              the lease's time to live (TTL), without anyone having to notice it died.
 * - holder     who has it: a process and its role, e.g. `worker@web-2:4411#9f3c` (see holderId).
 * - leader     the worker that holds `reconciler`: it runs the start-up backfill and the periodic
 *              reconciliation (src/sync/leadership.ts). The others are followers: they claim and
 *              process events like the leader, but run no backfill.
 * - run lease  `backfill:<source>`, held for the length of one backfill of that source, by the leader's
 *              reconciliation or by an operator's `connector backfill`: one never overlaps the other.
 *
 * What callers may rely on, on either engine:
 * - `acquire` takes the lease when nobody holds it or its holder let it expire, and extends it when
 *   the caller already holds it; otherwise it names the holder. Two holders never both get `held`.
 * - `renew` extends the lease only while the caller still holds it; false means it is lost (expired,
 *   or taken after expiring), and the caller must stop what the lease guards.
 * - `release` gives it back only if the caller still holds it (never someone else's).
 * - Expiry is decided by the engine's clock alone, so holders on hosts with skewed clocks agree. A
 *   holder measures its own TTL from the moment it SENT its last successful renewal (the engine
 *   started the TTL no earlier), on its monotonic clock, and treats the lease as lost well before
 *   that runs out (leadership.ts): it stops before anyone else can start.
 *
 * The two engines:
 * - Redis: one key `<QUEUE_PREFIX>:lease:<name>` whose value is the holder, set with `SET NX PX`;
 *   renewal and release compare the value and act in one small Lua script each (atomic on the server;
 *   no WATCH needed, so one connection serves every lease).
 * - PostgreSQL: a row per lease in `connector_engine.leases (prefix, name, holder, expires_at)`, taken
 *   and renewed by one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statement on the server's clock
 *   (`now()`); a concurrent taker waits for the row lock and then sees the new holder.
 *
 * Why a lease row and not a session advisory lock on PostgreSQL. An advisory lock is released the
 * moment its holder's connection closes, so a killed process is replaced at once instead of after the
 * TTL; but under a network partition the server keeps the lock of a holder it cannot hear from until
 * TCP keepalives (two hours by default) or `idle_session_timeout` end the session, while the holder,
 * cut off, must stop on its own anyway. A lease row expires on the server's clock whatever the network
 * does, behaves exactly like the Redis key (one keeper, one conformance suite, one takeover time to
 * document: at most RECONCILE_LEASE_SECONDS plus one try), works through a transaction-pooling proxy,
 * and names its holder without reading `pg_stat_activity`. The cost, a dead holder replaced after the
 * TTL rather than at once, is what Redis costs too; a holder that stops cleanly releases at once.
 *
 * What a lease cannot do: fence a holder frozen (SIGSTOP, a VM paused) past its TTL. When it wakes, its
 * next check sees the lease gone and stops, but a vendor request it had in flight may still be answered
 * and its page enqueued. That is harmless: a backfill only reads the vendors and enqueues upserts, and
 * checkpoints never move backwards.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { EngineSettings } from '../queue/bull-queue.ts';

/** The lease that makes one worker the reconciler. */
export const RECONCILER_LEASE = 'reconciler';

/** The run lease of one source's backfill. */
export function backfillLease(source: string): string {
  return `backfill:${source}`;
}

export type LeaseAnswer =
  /** The caller holds it now (taken, or extended). */
  | { held: true }
  /** Another holds it, for `expiresInMs` more unless renewed (null when it expired meanwhile). */
  | { held: false; holder: string | null; expiresInMs: number | null };

export interface LeaseHolder {
  holder: string;
  /** How long it stays held unless renewed, ms. */
  expiresInMs: number;
}

/** The engine's leases. Every method may reject when the engine does not answer: callers time out and retry. */
export interface Leases {
  readonly engine: 'redis' | 'postgres';
  acquire(name: string, holder: string, ttlMs: number): Promise<LeaseAnswer>;
  renew(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** True when `holder` held it and now nobody does. */
  release(name: string, holder: string): Promise<boolean>;
  /** Who holds it now, or null. */
  holder(name: string): Promise<LeaseHolder | null>;
  close(): Promise<void>;
}

/**
 * This process's holder id for `role`: `<role>@<host>:<pid>#<random>`. The random part tells apart two
 * processes with the same pid on hosts with the same name (containers), and two lives of one process.
 */
export function holderId(role: 'worker' | 'backfill' | 'serve' | 'work' | 'start'): string {
  const host = hostname().split('.')[0]?.slice(0, 40) || 'host';
  return `${role}@${host}:${process.pid}#${randomBytes(2).toString('hex')}`;
}

/** Opens the engine's leases (drivers imported only when chosen). Connects lazily. */
export async function createLeases(settings: EngineSettings, log: Logger): Promise<Leases> {
  if (settings.engine === 'redis') {
    const { RedisLeases } = await import('./redis-leases.ts');
    return new RedisLeases(settings.url, settings.prefix, log);
  }
  const { PostgresLeases } = await import('./postgres-leases.ts');
  return new PostgresLeases(settings.url, settings.prefix, log);
}
