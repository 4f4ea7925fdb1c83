/**
 * Missive's API limits (reference 3): at most `concurrency` requests in flight, `perMinute` requests per
 * minute and `perQuarterHour` per 15 minutes, all at once. A request over any of them gets 429 with
 * `Retry-After` (whole seconds), `X-RateLimit-Limit` (the ceiling that was hit), `X-RateLimit-Remaining`
 * and `X-RateLimit-Reset` (UTC epoch seconds). Refused requests count against nothing. Both windows
 * are fixed windows whose length is multiplied by `windowScale`, so a test can run the same ratios in
 * seconds (0.005 makes 15 minutes last 4.5 s).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FixedWindow, type SimClock } from '../common.ts';

export interface MissiveLimits {
  /** Requests in flight at once; default 5. */
  concurrency?: number;
  /** Default 300. */
  perMinute?: number;
  /** Default 900. */
  perQuarterHour?: number;
  /** Multiplies both window lengths; default 1. */
  windowScale?: number;
}

export interface LimitVerdict {
  limit: number;
  remaining: number;
  /** Clock ms. */
  resetAt: number;
}

export class MissiveLimiter {
  private inFlight = 0;
  private readonly holding = new WeakSet<FastifyRequest>();
  private readonly concurrency: number;
  private readonly minute: FixedWindow;
  private readonly quarter: FixedWindow;

  constructor(limits: MissiveLimits, private readonly clock: SimClock) {
    const scale = limits.windowScale ?? 1;
    this.concurrency = limits.concurrency ?? 5;
    this.minute = new FixedWindow(limits.perMinute ?? 300, 60_000 * scale, clock);
    this.quarter = new FixedWindow(limits.perQuarterHour ?? 900, 15 * 60_000 * scale, clock);
  }

  /** Takes a slot and one unit of each window, or says which limit refused the request. */
  admit(request: FastifyRequest): LimitVerdict | null {
    if (this.inFlight >= this.concurrency) {
      return { limit: this.concurrency, remaining: 0, resetAt: this.clock.now() + 1000 };
    }
    if (this.minute.remaining() === 0) return { limit: this.minute.limit, remaining: 0, resetAt: this.minute.resetAt() };
    if (this.quarter.remaining() === 0) return { limit: this.quarter.limit, remaining: 0, resetAt: this.quarter.resetAt() };
    this.minute.take();
    this.quarter.take();
    this.inFlight++;
    this.holding.add(request);
    return null;
  }

  release(request: FastifyRequest): void {
    if (!this.holding.has(request)) return;
    this.holding.delete(request);
    this.inFlight--;
  }

  /** The tighter of the two windows, for a 429 taken by the `rateLimitBurst` fault. */
  current(): LimitVerdict {
    const m = { limit: this.minute.limit, remaining: this.minute.remaining(), resetAt: this.minute.resetAt() };
    const q = { limit: this.quarter.limit, remaining: this.quarter.remaining(), resetAt: this.quarter.resetAt() };
    return q.remaining < m.remaining ? q : m;
  }

  reply(reply: FastifyReply, verdict: LimitVerdict): FastifyReply {
    const retryAfter = Math.max(1, Math.ceil((verdict.resetAt - this.clock.now()) / 1000));
    return reply
      .code(429)
      .header('retry-after', String(retryAfter))
      .header('x-ratelimit-limit', String(verdict.limit))
      .header('x-ratelimit-remaining', String(verdict.remaining))
      .header('x-ratelimit-reset', String(Math.ceil(verdict.resetAt / 1000)))
      .send({ error: 'Too Many Requests' });
  }
}
