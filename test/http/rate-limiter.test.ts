import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/http/clock.ts';
import { BudgetWait, RateLimiter } from '../../src/http/rate-limiter.ts';
import { ConnectorError } from '../../src/errors.ts';

const T0 = Date.UTC(2025, 0, 1);

/** Starts `count` acquisitions at once; records the clock time each was granted, releasing at once. */
function grantTimes(limiter: RateLimiter, clock: FakeClock, count: number): { times: number[]; done: Promise<void> } {
  const times: number[] = [];
  const done = Promise.all(
    Array.from({ length: count }, async () => {
      const release = await limiter.acquire();
      times.push(clock.now() - T0);
      release();
    }),
  ).then(() => undefined);
  return { times, done };
}

describe('RateLimiter windows', () => {
  it('grants `limit` per interval and the next exactly when the oldest falls out', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ windows: [{ limit: 3, intervalMs: 1000 }], clock });
    const { times, done } = grantTimes(limiter, clock, 4);
    await clock.advance(0);
    expect(times).toEqual([0, 0, 0]);
    expect(limiter.stats().waiting).toBe(1);
    await clock.advance(999);
    expect(times).toEqual([0, 0, 0]);
    await clock.advance(1);
    expect(times).toEqual([0, 0, 0, 1000]);
    await done;
    expect(clock.pending()).toBe(0);
  });

  it('slides: starts at 0, 400 and 800 free slots at 1000, 1400 and 1800', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ windows: [{ limit: 3, intervalMs: 1000 }], clock });
    for (const at of [0, 400, 800]) {
      await clock.advance(at - (clock.now() - T0));
      (await limiter.acquire())();
    }
    const { times, done } = grantTimes(limiter, clock, 3);
    await clock.advance(5000);
    await done;
    expect(times).toEqual([1000, 1400, 1800]);
  });

  it('enforces every window at once', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({
      windows: [
        { limit: 2, intervalMs: 100 },
        { limit: 3, intervalMs: 1000 },
      ],
      clock,
    });
    const { times, done } = grantTimes(limiter, clock, 6);
    await clock.advance(5000);
    await done;
    expect(times).toEqual([0, 0, 100, 1000, 1000, 1100]);
  });

  it('reports used slots per window as they age out', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ windows: [{ limit: 5, intervalMs: 1000 }, { limit: 10, intervalMs: 5000 }], clock });
    for (let i = 0; i < 3; i++) (await limiter.acquire())();
    await clock.advance(600);
    (await limiter.acquire())();
    expect(limiter.stats().windows).toEqual([
      { limit: 5, intervalMs: 1000, used: 4 },
      { limit: 10, intervalMs: 5000, used: 4 },
    ]);
    await clock.advance(400);
    expect(limiter.stats().windows.map((w) => w.used)).toEqual([1, 4]);
  });
});

describe('RateLimiter concurrency', () => {
  it('holds at most `concurrency` and serves waiters first in, first out', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ concurrency: 2, clock });
    const order: string[] = [];
    const releases = new Map<string, () => void>();
    const take = (name: string): Promise<void> =>
      limiter.acquire().then((release) => {
        order.push(name);
        releases.set(name, release);
      });
    const all = Promise.all(['a', 'b', 'c', 'd', 'e'].map(take));
    await clock.advance(0);
    expect(order).toEqual(['a', 'b']);
    expect(limiter.stats()).toMatchObject({ inFlight: 2, waiting: 3 });

    releases.get('b')?.();
    await clock.advance(0);
    expect(order).toEqual(['a', 'b', 'c']);
    releases.get('b')?.(); // a second call releases nothing
    await clock.advance(0);
    expect(order).toEqual(['a', 'b', 'c']);

    releases.get('a')?.();
    releases.get('c')?.();
    await all;
    expect(order).toEqual(['a', 'b', 'c', 'd', 'e']);
    releases.get('d')?.();
    releases.get('e')?.();
    expect(limiter.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(clock.pending()).toBe(0);
  });

  it('applies windows and concurrency together', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ concurrency: 1, windows: [{ limit: 2, intervalMs: 1000 }], clock });
    const first = await limiter.acquire();
    const times: number[] = [];
    const second = limiter.acquire().then((release) => {
      times.push(clock.now() - T0);
      return release;
    });
    await clock.advance(300);
    expect(times).toEqual([]); // window has room, concurrency does not
    first();
    (await second)();
    expect(times).toEqual([300]);
    const third = limiter.acquire().then((release) => {
      times.push(clock.now() - T0);
      release();
    });
    await clock.advance(5000);
    await third;
    expect(times).toEqual([300, 1000]);
  });
});

describe('RateLimiter pauseUntil', () => {
  it('holds every waiter until the pause ends, extended but never shortened', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ concurrency: 10, clock });
    limiter.pauseUntil(T0 + 1000);
    const { times, done } = grantTimes(limiter, clock, 3);
    await clock.advance(500);
    limiter.pauseUntil(T0 + 3000);
    limiter.pauseUntil(T0 + 2000); // earlier: ignored
    expect(limiter.stats().pausedUntil).toBe(T0 + 3000);
    await clock.advance(2499);
    expect(times).toEqual([]);
    await clock.advance(1);
    await done;
    expect(times).toEqual([3000, 3000, 3000]);
    expect(limiter.stats().pausedUntil).toBeUndefined();
  });

  it('waits for the later of the pause and a full window', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ windows: [{ limit: 1, intervalMs: 5000 }], clock });
    (await limiter.acquire())();
    limiter.pauseUntil(T0 + 2000);
    const { times, done } = grantTimes(limiter, clock, 1);
    await clock.advance(10_000);
    await done;
    expect(times).toEqual([5000]);
  });
});

describe('RateLimiter abort', () => {
  it('an aborted waiter leaves the queue and rejects with the reason; the next one gets the slot', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ concurrency: 1, clock });
    const held = await limiter.acquire();
    const controller = new AbortController();
    const aborted = limiter.acquire(controller.signal);
    const next = limiter.acquire();
    expect(limiter.stats().waiting).toBe(2);
    const reason = new Error('shutting down');
    controller.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    expect(limiter.stats().waiting).toBe(1);
    held();
    (await next)();
    expect(limiter.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('rejects at once when the signal is already aborted', async () => {
    const limiter = new RateLimiter({ concurrency: 1 });
    await expect(limiter.acquire(AbortSignal.abort(new Error('gone')))).rejects.toThrow('gone');
    expect(limiter.stats().waiting).toBe(0);
  });

  it('drops its wake-up timer when the last window-blocked waiter aborts', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ windows: [{ limit: 1, intervalMs: 60_000 }], clock });
    (await limiter.acquire())();
    const controller = new AbortController();
    const waiting = limiter.acquire(controller.signal);
    expect(clock.pending()).toBe(1);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    expect(clock.pending()).toBe(0);
  });
});

describe('RateLimiter options', () => {
  it('refuses impossible budgets', () => {
    expect(() => new RateLimiter({ concurrency: 0 })).toThrow(ConnectorError);
    expect(() => new RateLimiter({ windows: [{ limit: 0, intervalMs: 1000 }] })).toThrow(/integer limit/);
    expect(() => new RateLimiter({ windows: [{ limit: 2.5, intervalMs: 1000 }] })).toThrow(/integer limit/);
    expect(() => new RateLimiter({ windows: [{ limit: 5, intervalMs: 0 }] })).toThrow(/intervalMs > 0/);
  });
});

describe("RateLimiter: the vendor's state", () => {
  it('a pause with a reason is a state: reported once when it starts, not again when it grows, once when it is over', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ clock });
    const seen: string[] = [];
    limiter.onStateChange((state, previous) => seen.push(`${previous.state}->${state.state}`));
    limiter.pauseUntil(T0 + 1000, 'answered 429');
    limiter.pauseUntil(T0 + 3000, 'answered 429 again');
    expect(limiter.status()).toEqual({ state: 'paused', since: T0, until: T0 + 3000, reason: 'answered 429' });
    limiter.pauseUntil(T0 + 500); // pacing: no state of its own
    await clock.advance(2999);
    expect(limiter.status().state).toBe('paused');
    await clock.advance(1);
    expect(limiter.status()).toEqual({ state: 'ok' });
    expect(seen).toEqual(['ok->paused', 'paused->ok']);
  });

  it('pacing (a pause without a reason) delays requests but is no state', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ clock });
    limiter.pauseUntil(T0 + 2000);
    expect(limiter.status()).toEqual({ state: 'ok' });
    await expect(limiter.acquire(undefined, 1000)).rejects.toMatchObject({ name: 'BudgetWait', until: T0 + 2000, reason: 'pacing the rest of the budget' });
  });

  it('refuses waiters past their maxWaitMs, keeps the others in order, and holds no timer once nobody waits', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ clock });
    limiter.pauseUntil(T0 + 5000, 'answered 429');
    const patient = limiter.acquire(undefined, 10_000);
    const hasty = limiter.acquire(undefined, 1000);
    await expect(hasty).rejects.toBeInstanceOf(BudgetWait);
    await expect(hasty).rejects.toMatchObject({ until: T0 + 5000, reason: 'paused by the vendor: answered 429' });
    await clock.advance(5000);
    (await patient)();
    await expect(limiter.acquire(undefined, 0)).resolves.toBeTypeOf('function');
    expect(clock.pending()).toBe(0);
  });

  it('takes the vendor for down after `failures` in a row on two paths, doubles the pause per failed probe, and is up at the first answer', async () => {
    const clock = new FakeClock({ now: T0 });
    const limiter = new RateLimiter({ clock, outage: { failures: 3, firstPauseMs: 1000, maxPauseMs: 3000 } });
    const seen: string[] = [];
    limiter.onStateChange((state, previous) => seen.push(`${previous.state}->${state.state}`));
    limiter.record('failed', '/a');
    limiter.record('failed', '/a');
    limiter.record('answered', '/b'); // an answer in between: not in a row
    limiter.record('failed', '/a');
    limiter.record('failed', '/a');
    limiter.record('failed', '/a'); // in a row, but one path: one entity, not the vendor
    expect(limiter.status()).toEqual({ state: 'ok' });
    limiter.record('failed', '/b', 'GET /b answered 503');
    expect(limiter.status()).toEqual({ state: 'unavailable', since: T0, until: T0 + 1000, reason: '4 requests failed in a row, the last: GET /b answered 503' });
    await clock.advance(1000);
    expect(limiter.status().state).toBe('unavailable'); // the pause is over; the next request is a probe
    limiter.record('failed', '/c');
    expect(limiter.status()).toMatchObject({ state: 'unavailable', since: T0, until: T0 + 1000 + 2000 });
    await clock.advance(2000);
    limiter.record('failed', '/c');
    expect(limiter.status()).toMatchObject({ until: T0 + 3000 + 3000 }); // capped at maxPauseMs
    limiter.record('rate-limited', '/c'); // a 429 is an answer: the vendor is up
    expect(limiter.status()).toEqual({ state: 'ok' });
    expect(seen).toEqual(['ok->unavailable', 'unavailable->ok']);
    expect(limiter.stats()).toMatchObject({ requests: 10, failed: 8, rateLimited: 1 });
  });

  it('without outage options, failures are counted and nothing more', () => {
    const limiter = new RateLimiter({ clock: new FakeClock({ now: T0 }) });
    for (let i = 0; i < 20; i++) limiter.record('failed', `/p${i}`);
    expect(limiter.status()).toEqual({ state: 'ok' });
    expect(limiter.stats().failed).toBe(20);
  });

  it('a listener that throws changes nothing', () => {
    const limiter = new RateLimiter({ clock: new FakeClock({ now: T0 }) });
    limiter.onStateChange(() => {
      throw new Error('listener broke');
    });
    limiter.pauseUntil(T0 + 1000, 'answered 429');
    expect(limiter.status().state).toBe('paused');
  });
});
