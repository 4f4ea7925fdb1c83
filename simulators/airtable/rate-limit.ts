/**
 * Airtable's per-base rate limit (stack.md §1.2): 5 requests per second per base; the request that
 * goes over gets 429, and then every request to that base gets 429 until a lockout of 30 seconds has
 * passed. Counted at arrival, over a sliding one-second window, per base; requests answered 429 do not
 * count.
 *
 * States per base:
 *   open    -> a request is admitted when fewer than `requestsPerSecond` were admitted in the last
 *              second; otherwise it is refused and the base becomes locked
 *   locked  -> every request is refused until `lockedUntil`; then open again with an empty window
 * The lockout length and the rate can be changed at run time (tests use a lockout of a few hundred ms).
 */
import type { SimClock } from '../common.ts';

export interface RateLimitSettings {
  /** Requests admitted per base within any 1,000 ms. Default 5. */
  requestsPerSecond: number;
  /** How long a base refuses everything after going over, ms. Default 30,000. */
  lockoutMs: number;
  /** Off: nothing is counted or refused (the 429 fault still works). Default on. */
  enabled: boolean;
}

export const DEFAULT_RATE_LIMIT: RateLimitSettings = { requestsPerSecond: 5, lockoutMs: 30_000, enabled: true };

const WINDOW_MS = 1_000;

interface BaseState {
  /** Arrival times of admitted requests within the last window, oldest first. */
  admitted: number[];
  lockedUntil: number;
}

export class BaseRateLimits {
  private settings: RateLimitSettings;
  private readonly bases = new Map<string, BaseState>();

  constructor(
    private readonly clock: SimClock,
    settings: Partial<RateLimitSettings> = {},
  ) {
    this.settings = { ...DEFAULT_RATE_LIMIT, ...settings };
  }

  get current(): Readonly<RateLimitSettings> {
    return this.settings;
  }

  set(change: Partial<RateLimitSettings>): void {
    this.settings = { ...this.settings, ...change };
  }

  /** Counts one request to `baseId`; false when it must be answered 429. */
  admit(baseId: string): boolean {
    if (!this.settings.enabled) return true;
    const now = this.clock.now();
    const state = this.state(baseId);
    if (now < state.lockedUntil) return false;
    while (state.admitted.length > 0 && now - (state.admitted[0] as number) >= WINDOW_MS) state.admitted.shift();
    if (state.admitted.length >= this.settings.requestsPerSecond) {
      state.lockedUntil = now + this.settings.lockoutMs;
      state.admitted = [];
      return false;
    }
    state.admitted.push(now);
    return true;
  }

  /** Clock ms until which `baseId` refuses requests, or undefined when it is open. */
  lockedUntil(baseId: string): number | undefined {
    const until = this.bases.get(baseId)?.lockedUntil ?? 0;
    return until > this.clock.now() ? until : undefined;
  }

  /** Ends lockouts and forgets counted requests (one base, or all). */
  unlock(baseId?: string): void {
    if (baseId === undefined) this.bases.clear();
    else this.bases.delete(baseId);
  }

  private state(baseId: string): BaseState {
    let state = this.bases.get(baseId);
    if (state === undefined) {
      state = { admitted: [], lockedUntil: 0 };
      this.bases.set(baseId, state);
    }
    return state;
  }
}
