/**
 * Holding a lease (leases.ts) over time: `Leadership` for the long-lived `reconciler` lease of a
 * worker, `holdLease` for the run lease of one backfill. Both keep a lease alive with one `Renewal`.
 *
 * Timing, from the TTL (RECONCILE_LEASE_SECONDS):
 * - a holder renews every TTL/3, and after a failed renewal tries again every TTL/10;
 * - it treats the lease as lost at 3/4 of the TTL after it SENT its last successful renewal (or the
 *   acquire), on its monotonic clock, whether or not the engine answered meanwhile: the engine keeps the
 *   lease for the whole TTL after it received that command, so the holder has stopped (its runs
 *   aborted, their vendor requests cancelled) a quarter of the TTL before anyone else can take over;
 * - every engine call is given TTL/4 to answer;
 * - a follower tries to take the lease every TTL/3, at most every 5 s. A holder that dies is replaced
 *   within TTL + one try (35 s at the default 30 s); one that stops cleanly releases the lease and is
 *   replaced within one try.
 *
 * Leadership's states and transitions:
 *
 *   following --acquire answered held--> leading        onTaken(previous holder) starts the work
 *   following --acquire refused--------> following      onFollowing(holder) when the holder changed
 *   following --engine error-----------> following      logged at most every 30 s; tried again
 *   leading   --renewal refused, or no successful renewal for 3/4 TTL--> following
 *                                                       onLost(reason) stops the work, then the lease
 *                                                       is released if the engine still has it ours,
 *                                                       and the next try waits one poll
 *   any       --stop()--------------------------------> stopped
 *                                                       onLost('stopping') if leading, then released:
 *                                                       a follower takes over within one try
 *
 * onTaken and onLost run one at a time, in order: the work of a term has stopped before the next term
 * can start.
 */
import { ConnectorError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { SECOND, sleep } from '../retry-policy.ts';
import type { LeaseAnswer, Leases } from './leases.ts';

/** The intervals of a lease with time to live `ttlMs` (see the header). */
export function leaseTiming(ttlMs: number): { renewMs: number; retryMs: number; validForMs: number; callTimeoutMs: number; releaseTimeoutMs: number; pollMs: number } {
  return {
    renewMs: ttlMs / 3,
    retryMs: ttlMs / 10,
    validForMs: (ttlMs * 3) / 4,
    callTimeoutMs: ttlMs / 4,
    // Giving the lease back is a courtesy (it expires anyway): a stop never waits long for it.
    releaseTimeoutMs: Math.min(ttlMs / 4, 2 * SECOND),
    pollMs: Math.min(ttlMs / 3, 5 * SECOND),
  };
}

interface LeaseRef {
  leases: Leases;
  name: string;
  holder: string;
  ttlMs: number;
}

/**
 * Keeps a lease alive from the moment its acquire was sent (`takenAt`, performance.now()) and reports
 * its loss once: refused by the engine, or no successful renewal within the valid time. `stop()` ends
 * it without a report (it does not release: the owner does).
 */
class Renewal {
  private validUntil: number;
  private renewTimer: NodeJS.Timeout | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastError: unknown = null;
  private readonly timing: ReturnType<typeof leaseTiming>;

  constructor(
    private readonly lease: LeaseRef,
    takenAt: number,
    private readonly onLost: (reason: string) => void,
  ) {
    this.timing = leaseTiming(lease.ttlMs);
    this.validUntil = takenAt + this.timing.validForMs;
    this.armDeadline();
    this.schedule(this.timing.renewMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    if (this.deadline !== null) clearTimeout(this.deadline);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.renewTimer = setTimeout(() => void this.renew(), ms);
    this.renewTimer.unref();
  }

  private armDeadline(): void {
    if (this.deadline !== null) clearTimeout(this.deadline);
    const ms = Math.max(0, this.validUntil - performance.now());
    this.deadline = setTimeout(() => {
      const cause = this.lastError === null ? 'the engine did not answer' : describe(this.lastError);
      this.lose(`no renewal succeeded for ${formatSeconds(this.timing.validForMs)} (${cause})`);
    }, ms);
    this.deadline.unref();
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    const sentAt = performance.now();
    const { leases, name, holder, ttlMs } = this.lease;
    try {
      const renewed = await withTimeout(leases.renew(name, holder, ttlMs), this.timing.callTimeoutMs, 'renew');
      if (this.stopped) return;
      if (!renewed) return this.lose('the engine no longer has it as ours (it expired, or another holder took it after it expired)');
      this.lastError = null;
      this.validUntil = sentAt + this.timing.validForMs;
      this.armDeadline();
      this.schedule(this.timing.renewMs);
    } catch (err) {
      if (this.stopped) return;
      this.lastError = err;
      this.schedule(this.timing.retryMs);
    }
  }

  private lose(reason: string): void {
    if (this.stopped) return;
    this.stop();
    this.onLost(reason);
  }
}

export type LeadershipState = 'following' | 'leading' | 'stopped';

export interface LeadershipOptions extends LeaseRef {
  log: Logger;
  /** This process now holds the lease (`previous`: the holder last seen, if any): start the work. */
  onTaken(previous: string | null): void | Promise<void>;
  /** The lease is lost, or being handed over on stop ('stopping'): stop the work before resolving. */
  onLost(reason: string): Promise<void>;
  /** While following: another holds the lease (null: nobody, between two holders). Called when that changes. */
  onFollowing?(holder: string | null): void;
}

const STOPPING = 'stopping';

/** One process's bid for one lease, for as long as it runs (states in the header). */
export class Leadership {
  private current: LeadershipState = 'following';
  private seen: string | null = null;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | null = null;
  private problemAt = -Infinity;

  constructor(private readonly options: LeadershipOptions) {}

  get state(): LeadershipState {
    return this.current;
  }

  /** The holder last seen while following (null when leading, or unknown). */
  get holder(): string | null {
    return this.current === 'leading' ? this.options.holder : this.seen;
  }

  start(): void {
    this.loop ??= this.run().catch((err: unknown) => this.options.log.error({ err, lease: this.options.name }, `the ${this.options.name} lease keeper stopped: ${describe(err)}`));
  }

  /** Stops the work (if leading), releases the lease, and ends the bid. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    this.current = 'stopped';
  }

  private async run(): Promise<void> {
    const { leases, name, holder, ttlMs, log } = this.options;
    const timing = leaseTiming(ttlMs);
    const stopped = new Promise<string>((resolve) => this.stopping.signal.addEventListener('abort', () => resolve(STOPPING), { once: true }));
    while (!this.stopping.signal.aborted) {
      const sentAt = performance.now();
      let answer: LeaseAnswer | null = null;
      try {
        answer = await withTimeout(leases.acquire(name, holder, ttlMs), timing.callTimeoutMs, 'acquire');
      } catch (err) {
        if (performance.now() - this.problemAt >= 30 * SECOND) {
          this.problemAt = performance.now();
          log.warn({ err, lease: name }, `could not ask the queue engine for the ${name} lease; trying again every ${formatSeconds(timing.pollMs)}: ${describe(err)}`);
        }
      }
      if (answer?.held === true) {
        let reportLoss: (reason: string) => void = () => {};
        const lost = new Promise<string>((resolve) => (reportLoss = resolve));
        const renewal = new Renewal(this.options, sentAt, reportLoss);
        const previous = this.seen;
        this.current = 'leading';
        this.seen = null;
        const started = !this.stopping.signal.aborted;
        try {
          if (started) await this.options.onTaken(previous);
        } catch (err) {
          log.error({ err, lease: name }, `starting the work of the ${name} lease failed: ${describe(err)}`);
        }
        const reason = await Promise.race([lost, stopped]);
        renewal.stop();
        this.current = reason === STOPPING ? 'stopped' : 'following';
        if (started) await this.options.onLost(reason).catch((err: unknown) => log.error({ err, lease: name }, `stopping the work of the ${name} lease failed: ${describe(err)}`));
        // Still ours in the engine (a renewal that timed out here but arrived there): give it back now
        // rather than after the TTL.
        await withTimeout(leases.release(name, holder), timing.releaseTimeoutMs, 'release').catch(() => false);
      } else if (answer !== null && answer.holder !== this.seen) {
        this.seen = answer.holder;
        this.options.onFollowing?.(answer.holder);
      }
      await sleep(timing.pollMs, this.stopping.signal);
    }
  }
}

export type HeldRun<T> = { ran: true; value: T } | { ran: false; holder: string | null };

export interface HoldLeaseOptions extends LeaseRef {
  /** Ends the wait, and the work (through its signal). */
  signal?: AbortSignal;
  /** Wait while another holds the lease (default: return `{ ran: false }` at once). */
  wait?: boolean;
  /** While waiting: another holds it; called when the holder changes. */
  onWaiting?(holder: string | null): void;
}

/**
 * Runs `work` while holding the lease, its signal aborted (with CONN_ERR_LEASE_LOST) when the lease is
 * lost and when `options.signal` aborts; releases the lease when `work` ends. When another holds it:
 * `{ ran: false, holder }` at once, or, with `wait`, tries every poll until it is free (or the signal
 * aborts: then `{ ran: false }`). An engine that does not answer rejects.
 */
export async function holdLease<T>(options: HoldLeaseOptions, work: (signal: AbortSignal) => Promise<T>): Promise<HeldRun<T>> {
  const { leases, name, holder, ttlMs, signal } = options;
  const timing = leaseTiming(ttlMs);
  let seen: string | null | undefined;
  let sentAt: number;
  for (;;) {
    if (signal?.aborted === true) return { ran: false, holder: seen ?? null };
    sentAt = performance.now();
    const answer = await withTimeout(leases.acquire(name, holder, ttlMs), timing.callTimeoutMs, 'acquire');
    if (answer.held) break;
    if (options.wait !== true) return { ran: false, holder: answer.holder };
    if (answer.holder !== seen) {
      seen = answer.holder;
      options.onWaiting?.(answer.holder);
    }
    await sleep(timing.pollMs, signal);
  }
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onOuterAbort, { once: true });
  const renewal = new Renewal(options, sentAt, (reason) => controller.abort(new ConnectorError('CONN_ERR_LEASE_LOST', `lost the ${name} lease: ${reason}; stopped so that no two backfills overlap`)));
  try {
    return { ran: true, value: await work(controller.signal) };
  } finally {
    renewal.stop();
    signal?.removeEventListener('abort', onOuterAbort);
    await withTimeout(leases.release(name, holder), timing.releaseTimeoutMs, 'release').catch(() => false);
  }
}

/** Rejects with CONN_ERR_QUEUE_UNAVAILABLE when `work` has not settled within `ms`. */
async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConnectorError('CONN_ERR_QUEUE_UNAVAILABLE', `the queue engine did not answer within ${Math.round(ms)} ms (lease ${what})`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}


function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function formatSeconds(ms: number): string {
  const s = ms / SECOND;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
