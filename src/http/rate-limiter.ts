/**
 * A budget of requests shared by everything in the process that talks to one vendor (or one Airtable
 * base): at most `concurrency` in flight, and at most `limit` started within any `intervalMs` for each
 * window. Missive, for example, is 5 concurrent, 300 per 60 s and 900 per 15 min, all at once.
 *
 * It is also where the process knows whether the vendor can be asked at all (`status()`):
 *
 *                    pauseUntil(t, reason): 429, Retry-After, budget spent
 *        ┌────────┐ ───────────────────────────────────────────────▶ ┌──────────┐
 *        │   ok   │ ◀─────────────────────────────────────────────── │  paused  │
 *        └────────┘               the pause is over                  └──────────┘
 *          │    ▲
 *   `outage.failures` requests     a request answered (any status but 5xx)
 *   failed in a row (5xx, network,
 *   timeout) on 2+ different paths
 *          ▼    │
 *      ┌─────────────┐  requests wait out a pause of `firstPauseMs`; then they go again (probes);
 *      │ unavailable │  each probe that fails pauses again, twice as long, up to `maxPauseMs`
 *      └─────────────┘
 *
 * Each change of state is reported once to the `onStateChange` listeners (the composition root logs it
 * and counts it). A pause without a reason (pacing a budget that is running low) is not a state. A
 * failing path on its own never makes the vendor unavailable: one entity the vendor cannot serve must
 * not stop the others (its event fails and is retried like any other).
 *
 * `acquire(signal, maxWaitMs)` refuses at once, with a `BudgetWait` saying until when and why, a wait
 * longer than `maxWaitMs`: a caller that should not hold its place for minutes (the dispatcher, which
 * reschedules the event durably) hears so instead of sleeping.
 *
 * Shared budgets. With the shared queue several processes call the same vendor, so the budget is kept
 * in the queue's engine (`shared`, src/budget/budget-store.ts) and this limiter stays the one place a
 * request asks: it checks its own budget first (pause, windows, concurrency: never more than the whole
 * budget from one process), then reserves from the shared one, one reservation on its way at a time
 * (for the waiter at the head; the others wait behind it here, not in the engine):
 * - granted: the request goes; its lease (Missive's concurrency) is given back when it is released;
 * - a pause in force (another process heard a 429): this limiter pauses until then too, with the
 *   pause's reason, so its vendor is `paused` here as well and its events wait in the queue;
 * - a window full: nobody here asks again before it frees; a waiter that would wait longer than its
 *   `maxWaitMs` is refused with a BudgetWait, as for a local window;
 * - every concurrency slot held elsewhere: ask again in a few milliseconds (a slot comes free when a
 *   request ends, which the engine does not announce); not bounded by `maxWaitMs`, like a local slot;
 * - the engine does not answer (within its timeout): every waiter is refused at once with a BudgetWait
 *   of ENGINE_RETRY_MS, and so is every acquire until then. The request is not sent (sending it could
 *   break the budget), and it does not hang: the dispatcher holds the event without spending an
 *   attempt, as for a paused vendor. The store logs the outage once.
 * `pauseUntil` (a 429, a Retry-After, pacing) is written to the engine as well, so every process sees
 * it on its next reservation. Outages (`unavailable`) stay each process's own finding.
 */
import type { BudgetSpec, BudgetStore } from '../budget/budget-store.ts';
import { ConnectorError } from '../errors.ts';
import { SECOND } from '../retry-policy.ts';
import { systemClock, type Clock } from './clock.ts';

/** At most `limit` acquisitions start within any `intervalMs` milliseconds. */
export interface RateWindow {
  limit: number;
  intervalMs: number;
}

/** When a vendor that keeps failing is taken for down (see the header). */
export interface OutageOptions {
  /** Requests failed in a row (5xx, network, timeout), on at least two paths. Default 5. */
  failures?: number;
  /** The first pause, ms; each failed probe doubles it. Default 1 s. */
  firstPauseMs?: number;
  /** The longest pause between probes, ms. Default 60 s. */
  maxPauseMs?: number;
}

export interface RateLimiterOptions {
  /** Most requests in flight at once. Default: unlimited. */
  concurrency?: number;
  /** Sliding windows, all enforced (e.g. Missive: 300 per 60 s and 900 per 15 min). Default: none. */
  windows?: RateWindow[];
  /** Time source for windows and pauses. Default `systemClock`. */
  clock?: Clock;
  /** Take the vendor for down when its requests keep failing (see the header). Default: never. */
  outage?: OutageOptions;
  /**
   * The budget every process shares (see the header), kept in the queue's engine under `name`, with
   * this limiter's concurrency and windows. Waits then run on real time whatever `clock` is (the
   * engine's). Default: none (this process's budget is the whole budget).
   */
  shared?: { store: BudgetStore; name: string };
}

/** Whether the vendor can be asked now (see the header). Times are clock ms. */
export type VendorState =
  | { state: 'ok' }
  | { state: 'paused'; since: number; until: number; reason: string }
  | { state: 'unavailable'; since: number; until: number; reason: string };

/** Whether the vendor accepts our credentials: failing from a 401/403 answer (`since`, clock ms) until a 2xx. */
export type VendorAuth = { failing: false } | { failing: true; status: 401 | 403; since: number; detail: string };

/** Why the vendor cannot be asked, in words: `paused by the vendor: …` or `unavailable: …`. */
export function describeVendorState(state: Exclude<VendorState, { state: 'ok' }>): string {
  return state.state === 'paused' ? `paused by the vendor: ${state.reason}` : `unavailable: ${state.reason}`;
}

/** How a request ended, as far as the vendor's health goes. */
export type RequestOutcome =
  /** The vendor answered (2xx, 4xx other than 429). */
  | 'answered'
  /** 429. */
  | 'rate-limited'
  /** 5xx, a network failure or a timeout. */
  | 'failed';

/** `acquire` would have to wait longer than the caller's `maxWaitMs`. */
export class BudgetWait extends Error {
  constructor(
    /** Clock ms at which a request may go (at the earliest). */
    readonly until: number,
    /** Why: the vendor's pause or outage, or which of our windows is full. */
    readonly reason: string,
  ) {
    super(`no request before ${new Date(until).toISOString()}: ${reason}`);
    this.name = 'BudgetWait';
  }
}

export interface RateLimiterStats {
  /** Acquired and not yet released. */
  inFlight: number;
  /** Callers waiting in `acquire`. */
  waiting: number;
  /** Clock time before which nobody acquires, when a pause is in force; otherwise undefined. */
  pausedUntil: number | undefined;
  /** Per window, the acquisitions that started within its last `intervalMs`. */
  windows: Array<{ limit: number; intervalMs: number; used: number }>;
  /** Requests reported through `record` since the start, those answered 429, and those failed. */
  requests: number;
  rateLimited: number;
  failed: number;
}

/**
 * The start times of the last `limit` acquisitions, oldest first, in a ring. A new acquisition fits
 * the window exactly when fewer than `limit` are recorded or the oldest is at least `intervalMs` old:
 * then no span of `intervalMs` ever holds more than `limit` starts.
 */
class SlidingWindow {
  private readonly starts: number[] = [];
  private head = 0;

  constructor(
    readonly limit: number,
    readonly intervalMs: number,
  ) {}

  /** The earliest clock time at which one more acquisition fits. */
  freeAt(): number {
    if (this.starts.length < this.limit) return -Infinity;
    return (this.starts[this.head] as number) + this.intervalMs;
  }

  record(at: number): void {
    if (this.starts.length < this.limit) {
      this.starts.push(at);
      return;
    }
    this.starts[this.head] = at;
    this.head = (this.head + 1) % this.limit;
  }

  used(now: number): number {
    let count = 0;
    for (const start of this.starts) if (now - start < this.intervalMs) count++;
    return count;
  }
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Clock ms after which this caller would rather hear "not before T" than wait. */
  deadline: number;
}

/** After the shared budget's engine failed to answer, acquires are refused for this long, ms. */
export const ENGINE_RETRY_MS = 2 * SECOND;
/** While another process holds every shared concurrency slot, ask again after about this long, ms. */
const SHARED_SLOT_POLL_MS = 15;
const DEFAULT_OUTAGE_FAILURES = 5;
const DEFAULT_FIRST_OUTAGE_PAUSE_MS = 1000;
const DEFAULT_MAX_OUTAGE_PAUSE_MS = 60_000;
/** Paths remembered of the failures in a row (only "two or more" matters). */
const FAILED_PATHS_KEPT = 8;

/**
 * Waiters are served strictly first in, first out: everyone needs the same thing (one slot in every
 * window and one concurrency slot), so the head of the queue blocks those behind it and nobody starves.
 *
 * States of the head waiter, re-evaluated by `pump()` after every acquire, release, pause, abort and
 * wake-up:
 * - concurrency full            -> wait; the next `release` pumps again (no timer).
 * - a window full, or paused    -> one timer until the latest of (each full window's oldest start +
 *                                  intervalMs, pausedUntil); on waking, check again, because timers can
 *                                  fire a millisecond early and a pause may have been extended.
 * - otherwise, without a shared budget -> granted now: the start time goes into every window,
 *                                  inFlight + 1.
 * - otherwise, with a shared budget -> one reservation to the engine (no timer while it is on its
 *                                  way); its answer grants the head, or sets a pause, a time the shared
 *                                  window frees or a time to ask again, and pumps (see the header).
 * A waiter whose deadline (`maxWaitMs`) falls before that time is refused with a BudgetWait instead.
 * At most one timer is armed at a time, and it is cancelled when the queue empties, so an idle limiter
 * holds no timer.
 */
export class RateLimiter {
  private readonly clock: Clock;
  private readonly concurrency: number;
  private readonly windows: SlidingWindow[];
  private readonly queue: Waiter[] = [];
  private inFlight = 0;
  private pausedUntilMs = -Infinity;
  /** The armed wake-up: when it fires and how to cancel it. */
  private timer: { at: number; cancel: AbortController } | undefined;
  private current: VendorState = { state: 'ok' };
  private readonly listeners: Array<(state: VendorState, previous: VendorState) => void> = [];
  private auth: VendorAuth = { failing: false };
  private readonly authListeners: Array<(auth: VendorAuth, previous: VendorAuth) => void> = [];
  private readonly outage: Required<OutageOptions> | undefined;
  /** Requests failed in a row, and (some of) their paths. */
  private failuresInARow = 0;
  private readonly failedPaths = new Set<string>();
  private outagePauseMs = 0;
  private readonly counts = { requests: 0, rateLimited: 0, failed: 0 };
  /** The shared budget and the spec sent with each reservation; undefined without one. */
  private readonly shared: { store: BudgetStore; spec: BudgetSpec } | undefined;
  /** A reservation is on its way to the engine (at most one). */
  private asking = false;
  /** The engine said one of its windows is full until then (clock ms), and which. */
  private sharedFreeAt = -Infinity;
  private sharedFull: RateWindow | undefined;
  /** Every shared concurrency slot is held elsewhere: ask again then (clock ms). */
  private sharedPollAt = -Infinity;
  /** The engine failed to answer: refuse every acquire until then (clock ms), saying why. */
  private engineDownUntil = -Infinity;
  private engineDownReason = '';

  constructor(options: RateLimiterOptions) {
    this.clock = options.clock ?? systemClock;
    if (options.outage !== undefined) {
      this.outage = {
        failures: options.outage.failures ?? DEFAULT_OUTAGE_FAILURES,
        firstPauseMs: options.outage.firstPauseMs ?? DEFAULT_FIRST_OUTAGE_PAUSE_MS,
        maxPauseMs: options.outage.maxPauseMs ?? DEFAULT_MAX_OUTAGE_PAUSE_MS,
      };
    }
    this.concurrency = options.concurrency ?? Infinity;
    if (!(this.concurrency >= 1)) {
      throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `rate limiter concurrency must be at least 1, got ${this.concurrency}`);
    }
    this.windows = (options.windows ?? []).map((w) => {
      if (!Number.isInteger(w.limit) || w.limit < 1 || !(w.intervalMs > 0)) {
        throw new ConnectorError(
          'CONN_ERR_CONFIG_INVALID',
          `rate limiter window needs an integer limit >= 1 and intervalMs > 0, got ${w.limit} per ${w.intervalMs} ms`,
        );
      }
      return new SlidingWindow(w.limit, w.intervalMs);
    });
    if (options.shared !== undefined) {
      const spec: BudgetSpec = { name: options.shared.name, concurrency: Number.isFinite(this.concurrency) ? this.concurrency : null, windows: (options.windows ?? []).map((w) => ({ ...w })) };
      this.shared = { store: options.shared.store, spec };
    }
  }

  /**
   * Waits for a slot in every window and a concurrency slot; returns the release function (calling it
   * twice releases once). If `signal` aborts first, the caller leaves the queue and the promise rejects
   * with `signal.reason`. A wait for a pause or a window longer than `maxWaitMs` rejects at once with a
   * BudgetWait (a wait for a concurrency slot is not bounded: requests in flight end within their
   * timeout).
   */
  acquire(signal?: AbortSignal, maxWaitMs = Infinity): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined, deadline: this.clock.now() + maxWaitMs };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const index = this.queue.indexOf(waiter);
          if (index === -1) return;
          this.queue.splice(index, 1);
          reject(signal.reason);
          this.pump();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
      this.pump();
    });
  }

  /**
   * Nobody acquires before `untilMs` (clock time): used after a 429 so the whole process waits. With a
   * `reason` (the vendor asked: 429, Retry-After, budget spent) the vendor is `paused` until then; without
   * one it is pacing, not a state.
   */
  pauseUntil(untilMs: number, reason?: string): void {
    this.applyPause(untilMs, reason);
    const forMs = untilMs - this.clock.now();
    // Every process pauses too (on its next reservation). A failure is logged by the store; this
    // process's own pause stands either way.
    if (this.shared !== undefined && forMs > 0) this.shared.store.pause(this.shared.spec.name, forMs, reason ?? null).catch(() => {});
  }

  /** `pauseUntil` for this process only (a pause read from the engine is not written back). */
  private applyPause(untilMs: number, reason: string | undefined): void {
    const state = this.status();
    if (reason !== undefined && state.state !== 'unavailable') {
      const until = Math.max(untilMs, this.pausedUntilMs);
      // A longer pause while paused is the same state, not a new one.
      if (state.state === 'ok') this.setState({ state: 'paused', since: this.clock.now(), until, reason });
      else if (until > state.until) this.current = { ...state, until };
    }
    if (!(untilMs > this.pausedUntilMs)) return;
    this.pausedUntilMs = untilMs;
    this.pump();
  }

  /**
   * How a request ended (the HTTP client reports every attempt): counts it, and takes the vendor for
   * down, or up again, as the header says. `path` tells failing entities from a failing vendor;
   * `detail` says how the request failed, for the reason given.
   */
  record(outcome: RequestOutcome, path: string, detail?: string): void {
    this.counts.requests++;
    if (outcome === 'rate-limited') this.counts.rateLimited++;
    if (outcome !== 'failed') {
      this.failuresInARow = 0;
      this.failedPaths.clear();
      if (this.current.state === 'unavailable') {
        this.outagePauseMs = 0;
        this.setState({ state: 'ok' });
      }
      return;
    }
    this.counts.failed++;
    if (this.outage === undefined) return;
    this.failuresInARow++;
    if (this.failedPaths.size < FAILED_PATHS_KEPT) this.failedPaths.add(path);
    const down = this.current.state === 'unavailable' || (this.failuresInARow >= this.outage.failures && this.failedPaths.size >= 2);
    if (!down) return;
    // Down, or a probe failed: pause (again), twice as long as last time.
    this.outagePauseMs = this.outagePauseMs === 0 ? this.outage.firstPauseMs : Math.min(this.outagePauseMs * 2, this.outage.maxPauseMs);
    const now = this.clock.now();
    const until = now + this.outagePauseMs;
    if (this.current.state === 'unavailable') this.current = { ...this.current, until };
    else this.setState({ state: 'unavailable', since: now, until, reason: `${this.failuresInARow} requests failed in a row${detail === undefined ? '' : `, the last: ${detail}`}` });
    if (until > this.pausedUntilMs) {
      this.pausedUntilMs = until;
      this.pump();
    }
  }

  /** Whether the vendor can be asked now; a pause that is over is reported (once) as over here. */
  status(): VendorState {
    if (this.current.state === 'paused' && this.current.until <= this.clock.now()) this.setState({ state: 'ok' });
    return this.current;
  }

  /**
   * The earliest clock time a request could start, for a caller deciding whether to start work that
   * needs one: a pause, an outage's pause, a full window. `now` or earlier when one could start now.
   */
  readyAt(): number {
    return Math.max(this.pausedUntilMs, this.sharedFreeAt, ...this.windows.map((w) => w.freeAt()));
  }

  /** Listens to changes of `status()`; returns the function that stops listening. */
  onStateChange(listener: (state: VendorState, previous: VendorState) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const index = this.listeners.indexOf(listener);
      if (index !== -1) this.listeners.splice(index, 1);
    };
  }

  /** Snapshot for metrics/tests: in flight, waiting, pause, used slots per window, requests counted. */
  stats(): RateLimiterStats {
    const now = this.clock.now();
    return {
      inFlight: this.inFlight,
      waiting: this.queue.length,
      pausedUntil: this.pausedUntilMs > now ? this.pausedUntilMs : undefined,
      windows: this.windows.map((w) => ({ limit: w.limit, intervalMs: w.intervalMs, used: w.used(now) })),
      ...this.counts,
    };
  }

  /**
   * Whether the vendor accepts our credentials, as its last answer that said so: a 401 or 403 makes
   * it `failing` (one change reported to `onAuthChange`), a 2xx makes it accept them again; other
   * answers say nothing about credentials and change nothing. The HTTP client reports every answer.
   */
  recordAuth(status: number, detail: string): void {
    const previous = this.auth;
    if (status === 401 || status === 403) {
      if (previous.failing) return;
      this.auth = { failing: true, status, since: this.clock.now(), detail };
    } else if (status >= 200 && status <= 299) {
      if (!previous.failing) return;
      this.auth = { failing: false };
    } else {
      return;
    }
    for (const listener of [...this.authListeners]) {
      try {
        listener(this.auth, previous);
      } catch {
        // A listener (an alert, a log line) must never break the budget.
      }
    }
  }

  /** Whether the vendor refuses our credentials now (see `recordAuth`). */
  authStatus(): VendorAuth {
    return this.auth;
  }

  /** Listens to changes of `authStatus()`; returns the function that stops listening. */
  onAuthChange(listener: (auth: VendorAuth, previous: VendorAuth) => void): () => void {
    this.authListeners.push(listener);
    return () => {
      const index = this.authListeners.indexOf(listener);
      if (index !== -1) this.authListeners.splice(index, 1);
    };
  }

  private setState(next: VendorState): void {
    const previous = this.current;
    this.current = next;
    for (const listener of [...this.listeners]) {
      try {
        listener(next, previous);
      } catch {
        // A listener (a log line, a metric) must never break the budget.
      }
    }
  }

  /** Grants waiters in order while they fit; otherwise arranges to be called again when they might. */
  private pump(): void {
    for (;;) {
      const head = this.queue[0];
      if (head === undefined) {
        this.disarm();
        return;
      }
      if (this.inFlight >= this.concurrency) {
        // Only a release frees a slot; a window timer would wake for nothing.
        this.disarm();
        return;
      }
      // The answer to the reservation on its way pumps again.
      if (this.asking) return;
      const now = this.clock.now();
      if (this.engineDownUntil > now) {
        this.refuseAll(new BudgetWait(this.engineDownUntil, this.engineDownReason));
        return;
      }
      const readyAt = this.readyAt();
      if (readyAt > now) {
        this.refuseBefore(readyAt);
        if (this.queue.length === 0) {
          this.disarm();
          return;
        }
        this.arm(readyAt);
        return;
      }
      if (this.shared === undefined) {
        this.grant(now, null);
        continue;
      }
      if (this.sharedPollAt > now) {
        this.arm(this.sharedPollAt);
        return;
      }
      this.reserveShared(this.shared);
      return;
    }
  }

  /** The head waiter goes: its start in every window, a slot, and `lease` to give back on release. */
  private grant(now: number, lease: string | null): void {
    const head = this.queue.shift();
    if (head === undefined) return;
    if (head.onAbort !== undefined) head.signal?.removeEventListener('abort', head.onAbort);
    for (const w of this.windows) w.record(now);
    this.inFlight++;
    head.resolve(this.releaser(lease));
  }

  /** Asks the engine for the head waiter's reservation (see the header); its answer pumps again. */
  private reserveShared(shared: { store: BudgetStore; spec: BudgetSpec }): void {
    this.asking = true;
    this.disarm();
    shared.store.reserve(shared.spec).then(
      (answer) => {
        this.asking = false;
        const now = this.clock.now();
        if (answer.granted) {
          if (this.queue.length > 0) this.grant(now, answer.lease);
          // Its waiter left meanwhile (aborted): the slot goes back (the window's start is spent).
          else if (answer.lease !== null) shared.store.release(shared.spec.name, answer.lease).catch(() => {});
        } else if (answer.why === 'paused') {
          this.applyPause(now + answer.waitMs, answer.reason ?? undefined);
        } else if (answer.why === 'window') {
          this.sharedFreeAt = now + answer.waitMs;
          this.sharedFull = answer.window;
        } else {
          this.sharedPollAt = now + Math.min(answer.waitMs, SHARED_SLOT_POLL_MS * (0.5 + Math.random()));
        }
        this.pump();
      },
      (err: unknown) => {
        this.asking = false;
        this.engineDownUntil = this.clock.now() + ENGINE_RETRY_MS;
        // Reads after "<vendor> is ": "waiting: the shared vendor budget cannot be read (Redis at …: ECONNREFUSED)".
        this.engineDownReason = `waiting: ${err instanceof Error ? err.message : String(err)}`;
        this.pump();
      },
    );
  }

  /** Refuses every waiter with `wait`. */
  private refuseAll(wait: BudgetWait): void {
    for (const waiter of this.queue.splice(0)) {
      if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.reject(wait);
    }
    this.disarm();
  }

  /** Refuses every waiter that would rather not wait until `readyAt` (see `acquire`). */
  private refuseBefore(readyAt: number): void {
    const refused = this.queue.filter((w) => w.deadline < readyAt);
    if (refused.length === 0) return;
    const reason = this.waitReason(readyAt);
    for (const waiter of refused) {
      this.queue.splice(this.queue.indexOf(waiter), 1);
      if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.reject(new BudgetWait(readyAt, reason));
    }
  }

  private waitReason(readyAt: number): string {
    const state = this.status();
    if (state.state !== 'ok' && this.pausedUntilMs >= readyAt) return describeVendorState(state);
    if (this.pausedUntilMs >= readyAt) return 'pacing the rest of the budget';
    const full = this.windows.find((w) => w.freeAt() >= readyAt);
    if (full !== undefined) return `the budget of ${full.limit} requests per ${Math.round(full.intervalMs / 1000)} s is used up`;
    const shared = this.sharedFreeAt >= readyAt ? this.sharedFull : undefined;
    return shared === undefined ? 'the budget is in use' : `the shared budget of ${shared.limit} requests per ${Math.round(shared.intervalMs / 1000)} s is used up (every process together)`;
  }

  private releaser(lease: string | null): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight--;
      // A lease that cannot be given back expires by itself (LEASE_TTL_MS); the store logs the failure.
      if (lease !== null && this.shared !== undefined) this.shared.store.release(this.shared.spec.name, lease).catch(() => {});
      this.pump();
    };
  }

  private arm(at: number): void {
    if (this.timer !== undefined) {
      if (this.timer.at === at) return;
      this.disarm();
    }
    const cancel = new AbortController();
    const timer = { at, cancel };
    this.timer = timer;
    this.clock.sleep(at - this.clock.now(), cancel.signal).then(
      () => {
        if (this.timer !== timer) return;
        this.timer = undefined;
        this.pump();
      },
      () => {
        // Cancelled by disarm(): a newer timer (or none) is in charge.
      },
    );
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    this.timer.cancel.abort();
    this.timer = undefined;
  }
}
