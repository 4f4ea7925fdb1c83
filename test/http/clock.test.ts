import { describe, expect, it } from 'vitest';
import { FakeClock, systemClock } from '../../src/http/clock.ts';

describe('systemClock', () => {
  it('sleeps on real time', async () => {
    const started = performance.now();
    await systemClock.sleep(30);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(Math.abs(systemClock.now() - Date.now())).toBeLessThan(5);
  });

  it('rejects with the signal reason when aborted, before or during the sleep', async () => {
    const reason = new Error('stop');
    await expect(systemClock.sleep(10, AbortSignal.abort(reason))).rejects.toBe(reason);
    const controller = new AbortController();
    const started = performance.now();
    const sleeping = systemClock.sleep(60_000, controller.signal);
    setTimeout(() => controller.abort(reason), 10);
    await expect(sleeping).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(5000);
  });
});

describe('FakeClock', () => {
  it('wakes sleepers in order, each at its own instant, and lets them sleep again', async () => {
    const clock = new FakeClock({ now: 1000 });
    const woke: Array<[string, number]> = [];
    void clock.sleep(300).then(() => woke.push(['b', clock.now()]));
    void clock.sleep(100).then(async () => {
      woke.push(['a', clock.now()]);
      await clock.sleep(50);
      woke.push(['a2', clock.now()]);
    });
    void clock.sleep(300).then(() => woke.push(['c', clock.now()]));
    await clock.advance(99);
    expect(woke).toEqual([]);
    await clock.advance(1000);
    expect(woke).toEqual([
      ['a', 1100],
      ['a2', 1150],
      ['b', 1300],
      ['c', 1300],
    ]);
    expect(clock.now()).toBe(2099);
    expect(clock.pending()).toBe(0);
  });

  it('forgets an aborted sleeper', async () => {
    const clock = new FakeClock();
    const controller = new AbortController();
    const sleeping = clock.sleep(1000, controller.signal);
    expect(clock.pending()).toBe(1);
    controller.abort(new Error('cancelled'));
    await expect(sleeping).rejects.toThrow('cancelled');
    expect(clock.pending()).toBe(0);
  });

  it('advances by itself when asked to', async () => {
    const clock = new FakeClock({ now: 0, autoAdvance: true });
    await clock.sleep(60_000);
    await Promise.all([clock.sleep(5000), clock.sleep(1000)]);
    expect(clock.now()).toBe(65_000);
  });

  it('next() jumps to the next wake-up', async () => {
    const clock = new FakeClock({ now: 0 });
    expect(await clock.next()).toBe(false);
    let woke = false;
    void clock.sleep(42).then(() => (woke = true));
    expect(await clock.next()).toBe(true);
    expect(woke).toBe(true);
    expect(clock.now()).toBe(42);
  });
});
