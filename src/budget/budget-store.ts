/**
 * Vendor budgets shared by every process: with the shared queue (QUEUE_BACKEND=redis or postgres)
 * any number of `work` processes on any number of hosts call the same vendors, and together they must
 * stay within each vendor's budget (Teamwork's requests per minute; Missive's 5 in flight, 300 per
 * minute and 900 per 15 minutes; Airtable's 5 per second per base). The budget is kept in the queue's
 * engine, under QUEUE_PREFIX, so it needs nothing the queue does not already need.
 *
 * Words:
 * - budget       one vendor's limits (`teamwork`, `missive`, `airtable:<base id>`): at most
 *                `concurrency` requests in flight, and at most `limit` started within any `intervalMs`
 *                for each window. Each process sends its own spec with every reservation.
 * - reservation  one request's permission to start: granted (its start is logged in the budget, and
 *                with a concurrency limit it holds a lease), or refused with how long to wait and why.
 * - start log    the start times of the reservations within the longest window, kept in the engine.
 *                A reservation is granted only when, for every window, fewer than `limit` starts lie
 *                within the last `intervalMs`, so no span of `intervalMs` ever holds more than
 *                `limit` starts (a sliding window; a fixed-window counter would allow twice the limit
 *                across a boundary). The wait of a refusal is until the `limit`-th newest start leaves
 *                the window.
 * - lease        a slot of the concurrency limit: the reservation's id with an expiry. The process that
 *                holds it renews it every LEASE_RENEW_MS and deletes it when its request ends; a
 *                process that dies leaves it to expire after LEASE_TTL_MS, so a crash costs a slot for
 *                at most that long. A process frozen past the TTL loses its slot to another (one request
 *                over the limit at worst, answered 429 and paused like any other).
 * - pause        "nobody asks this vendor before T" (a 429, a Retry-After, a budget the vendor says is
 *                spent, Teamwork's pacing): written by the process that heard it, read back by every
 *                process's next reservation, which then pauses its own limiter too (and reports the
 *                vendor `paused` when the pause has a reason).
 *
 * Time is the engine's (Redis `TIME`, PostgreSQL `clock_timestamp()`), never a process's: hosts'
 * clocks differ by more than the windows can absorb. So every duration crosses this contract as
 * milliseconds from now, never as an instant.
 *
 * What callers may rely on:
 * - `reserve` is atomic across processes (a Lua script on Redis; one PL/pgSQL call under the budget's
 *   row lock on PostgreSQL): two processes never both take the last slot.
 * - The start is logged at the engine when it grants; the vendor counts the request when it arrives.
 *   The difference (a round trip to the engine, the process, the network to the vendor) varies, which
 *   is why each vendor's windows are a little longer than the vendor's own (`windowMarginMs`).
 * - Every call answers within ENGINE_TIMEOUT_MS or throws CONN_ERR_QUEUE_UNAVAILABLE: an engine that
 *   is down never hangs a request. The store logs the first failure and the recovery, once each.
 * - Processes that share a budget should send the same spec. They may differ (a rolling change of
 *   TEAMWORK_REQUESTS_PER_MINUTE): the log is one, and each process holds itself to its own limits.
 *
 * Implementations: RedisBudgetStore (redis-budget-store.ts) and PostgresBudgetStore
 * (postgres-budget-store.ts); one conformance suite (test/budget/conformance.ts) runs on both.
 */
import type { RateWindow } from '../http/rate-limiter.ts';
import { SECOND } from '../retry-policy.ts';

/** How long a lease lives without renewal; a dead process's slots come back after it, ms. */
export const LEASE_TTL_MS = 15 * SECOND;
/** How often a process pushes the expiry of the leases it holds out again, ms. */
export const LEASE_RENEW_MS = 5 * SECOND;
/** The longest any call to the engine may take before it counts as a failure, ms. */
export const ENGINE_TIMEOUT_MS = 2 * SECOND;

/** One vendor's limits, as a process sends them with each reservation. */
export interface BudgetSpec {
  /** Unique within QUEUE_PREFIX: `teamwork`, `missive`, `airtable:<base id>`. */
  name: string;
  /** Most requests in flight across every process; null for no limit (then no lease is taken). */
  concurrency: number | null;
  /** Sliding windows, all enforced. */
  windows: readonly RateWindow[];
}

/** The engine's answer to one reservation. Waits are milliseconds from now. */
export type Reservation =
  /** Go. `lease` is to be released when the request ends (null when the budget has no concurrency limit). */
  | { granted: true; lease: string | null }
  /** A pause is in force for `waitMs` more; `reason` as it was written (null: pacing, not a vendor's word). */
  | { granted: false; why: 'paused'; waitMs: number; reason: string | null }
  /** `window` (one of the spec's) is full for `waitMs` more. */
  | { granted: false; why: 'window'; waitMs: number; window: RateWindow }
  /** Every concurrency slot is held; the earliest lease expires in `waitMs` (a release usually comes sooner). */
  | { granted: false; why: 'concurrency'; waitMs: number };

/** What the engine holds of one budget now (doctor, tests). */
export interface BudgetUsage {
  /** Per window of the spec, the starts within its last `intervalMs`. */
  windows: Array<{ limit: number; intervalMs: number; used: number }>;
  /** Leases not expired. */
  inFlight: number;
  /** How long the pause in force lasts, ms; 0 when none. */
  pausedForMs: number;
  pauseReason: string | null;
}

/** One engine's budgets, for one QUEUE_PREFIX. Plain noun, no driver type crosses it. */
export interface BudgetStore {
  readonly engine: 'redis' | 'postgres';
  /** Tells stores apart in process-wide maps of limiters (one per store and vendor). */
  readonly id: string;
  /** Takes a slot of every window and, with a concurrency limit, a lease; or says how long to wait. */
  reserve(spec: BudgetSpec): Promise<Reservation>;
  /** Gives a lease back (the request ended). A lease already expired or released is ignored. */
  release(name: string, lease: string): Promise<void>;
  /** Nobody reserves from `name` for `forMs` from now (kept if a longer pause is in force). */
  pause(name: string, forMs: number, reason: string | null): Promise<void>;
  usage(spec: BudgetSpec): Promise<BudgetUsage>;
  /** Removes every budget of this store's prefix from the engine (tests, and an operator starting over). */
  purge(): Promise<void>;
  /** Stops renewing leases (those held expire) and closes the connection. */
  close(): Promise<void>;
}

/** A refusal as the contract says it, from an engine's (why, wait ms, detail): detail is the pause's reason or the full window's index. For implementations. */
export function refusal(spec: BudgetSpec, why: string, waitMs: number, detail: string | null): Reservation {
  const wait = Math.max(0, Number(waitMs));
  if (why === 'paused') return { granted: false, why: 'paused', waitMs: wait, reason: detail === null || detail === '' ? null : detail };
  if (why === 'concurrency') return { granted: false, why: 'concurrency', waitMs: wait };
  const window = spec.windows[Number(detail)] ?? spec.windows[0];
  if (why !== 'window' || window === undefined) throw new Error(`the budget engine answered an unknown refusal: ${why}`);
  return { granted: false, why: 'window', waitMs: wait, window };
}
