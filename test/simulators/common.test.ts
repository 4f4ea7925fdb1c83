import { afterEach, describe, expect, it } from 'vitest';
import {
  FaultControl,
  FixedWindow,
  ManualClock,
  RequestLog,
  VersionedStore,
  WebhookSender,
  shuffleNotIdentity,
  startServer,
  type SeenRequest,
} from '../../simulators/common.ts';
import { createRandom } from '../../simulators/generator/random.ts';
import { startReceiver, type Receiver } from './common-receiver.ts';

const seen = (startedAt: number, endedAt: number, status = 200): SeenRequest => ({
  method: 'GET',
  path: '/',
  query: {},
  headers: {},
  status,
  startedAt,
  endedAt,
});

describe('RequestLog', () => {
  it('measures the most requests in flight and in any window', () => {
    const log = new RequestLog();
    log.add(seen(0, 100));
    log.add(seen(50, 150));
    log.add(seen(100, 200)); // starts exactly when the first ends: not overlapping
    log.add(seen(120, 130, 429));
    expect(log.maxConcurrency()).toBe(3);
    expect(log.maxConcurrency((r) => r.status !== 429)).toBe(2);
    expect(log.maxInWindow(100)).toBe(3); // 50, 100, 120
    expect(log.maxInWindow(71)).toBe(3);
    expect(log.maxInWindow(70)).toBe(2);
  });

  it('keeps at most its capacity, dropping the oldest', () => {
    const log = new RequestLog(3);
    for (let i = 0; i < 5; i++) log.add(seen(i, i + 1));
    expect(log.entries.map((e) => e.startedAt)).toEqual([2, 3, 4]);
  });
});

describe('VersionedStore', () => {
  it('serves the previous version until the delay has passed', () => {
    const clock = new ManualClock(1_000);
    const store = new VersionedStore<{ v: number }>(clock);
    store.put('a', { v: 1 });
    store.put('a', { v: 2 }, 500);
    store.put('b', { v: 10 }, 500);
    expect(store.get('a')).toEqual({ v: 1 });
    expect(store.get('b')).toBeUndefined();
    expect(store.latest('a')).toEqual({ v: 2 });
    expect(store.visible()).toEqual([{ v: 1 }]);
    clock.advance(500);
    expect(store.get('a')).toEqual({ v: 2 });
    expect(store.visible()).toEqual([{ v: 2 }, { v: 10 }]);
  });

  it('lets a later write with a shorter delay win once visible', () => {
    const clock = new ManualClock(0);
    const store = new VersionedStore<number>(clock);
    store.put('a', 1);
    store.put('a', 2, 1_000);
    store.put('a', 3, 0);
    expect(store.get('a')).toBe(3);
    clock.advance(2_000);
    expect(store.get('a')).toBe(3);
  });
});

describe('FixedWindow', () => {
  it('refuses past the limit and opens a new window after windowMs', () => {
    const clock = new ManualClock(0);
    const window = new FixedWindow(2, 1_000, clock);
    expect(window.take()).toBe(true);
    expect(window.take()).toBe(true);
    expect(window.take()).toBe(false);
    expect(window.remaining()).toBe(0);
    expect(window.resetAt()).toBe(1_000);
    clock.advance(1_000);
    expect(window.take()).toBe(true);
    expect(window.remaining()).toBe(1);
  });
});

describe('shuffleNotIdentity', () => {
  it('never returns the original order for two or more items', () => {
    const random = createRandom(5);
    for (let n = 2; n < 6; n++) {
      const items = Array.from({ length: n }, (_, i) => i);
      for (let k = 0; k < 50; k++) {
        const out = shuffleNotIdentity(items, () => random.next());
        expect(out).not.toEqual(items);
        expect([...out].sort()).toEqual(items);
      }
    }
  });
});

describe('WebhookSender', () => {
  let receiver: Receiver;
  let sender: WebhookSender | undefined;
  afterEach(async () => {
    await sender?.stop();
    await receiver?.close();
  });

  const make = (faults: FaultControl, retryDelaysMs: number[] = []) =>
    new WebhookSender({ faults, clock: { now: () => Date.now() }, accepts: (s) => s === 200, timeoutMs: 2_000, retryDelaysMs, reorderWindowMs: 60_000 });
  const delivery = (n: number) => ({ target: 'h1', event: 'E', url: `${receiver.url}/hook`, headers: { 'content-type': 'text/plain' }, body: `body-${n}` });

  it('drops, duplicates and reorders deliveries as the faults say', async () => {
    receiver = await startReceiver();
    const faults = new FaultControl(createRandom(1).next);
    sender = make(faults);

    faults.set({ dropRate: 1 });
    await sender.send(delivery(0));
    expect(sender.log.at(-1)?.outcome).toBe('dropped');

    faults.set({ dropRate: 0, duplicateRate: 1 });
    await sender.send(delivery(1));
    expect(receiver.received.map((r) => r.raw)).toEqual(['body-1', 'body-1']);

    faults.set({ duplicateRate: 0, reorder: true });
    for (let n = 2; n < 6; n++) await sender.send(delivery(n));
    expect(receiver.received).toHaveLength(2);
    await sender.flush();
    const order = receiver.received.slice(2).map((r) => r.raw);
    expect([...order].sort()).toEqual(['body-2', 'body-3', 'body-4', 'body-5']);
    expect(order).not.toEqual(['body-2', 'body-3', 'body-4', 'body-5']);
  });

  it('retries a refused delivery on its schedule and reports the final outcome', async () => {
    receiver = await startReceiver();
    receiver.status = (i) => (i < 2 ? 500 : 200);
    sender = make(new FaultControl(), [20, 20, 20]);
    const outcomes: boolean[] = [];
    await sender.send({ ...delivery(1), onFinal: (ok) => outcomes.push(ok) });
    await receiver.waitFor(3);
    await new Promise((r) => setTimeout(r, 20));
    expect(outcomes).toEqual([true]);
    expect(sender.log.map((d) => [d.attempt, d.status])).toEqual([
      [1, 500],
      [2, 500],
      [3, 200],
    ]);
  });

  it('treats a redirect as not received and gives up after the last retry', async () => {
    receiver = await startReceiver();
    receiver.status = 302;
    sender = make(new FaultControl(), [10]);
    const outcomes: boolean[] = [];
    await sender.send({ ...delivery(1), onFinal: (ok) => outcomes.push(ok) });
    await receiver.waitFor(2);
    await new Promise((r) => setTimeout(r, 30));
    expect(outcomes).toEqual([false]);
    expect(receiver.received).toHaveLength(2);
  });
});

describe('startServer faults', () => {
  it('applies latency, 5xx, 429 bursts and connection resets, and records each request', async () => {
    const server = await startServer((app) => {
      app.get('/x', async () => ({ ok: true }));
      app.get('/__sim/ping', async () => ({ ok: true }));
    });
    try {
      server.faults.set({ latencyMs: 120 });
      const t0 = Date.now();
      expect((await fetch(`${server.url}/x`)).status).toBe(200);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
      server.faults.set({ latencyMs: 0, errorRate: 1 });
      expect((await fetch(`${server.url}/x`)).status).toBe(503);
      expect((await fetch(`${server.url}/__sim/ping`)).status).toBe(200);
      server.faults.set({ errorRate: 0, rateLimitBurst: 2 });
      expect((await fetch(`${server.url}/x`)).status).toBe(429);
      expect((await fetch(`${server.url}/x`)).status).toBe(429);
      expect((await fetch(`${server.url}/x`)).status).toBe(200);
      server.faults.set({ resetRate: 1 });
      await expect(fetch(`${server.url}/x`)).rejects.toThrow();
      expect(server.requests.entries.map((r) => r.status)).toEqual([200, 503, 200, 429, 429, 200, 0]);
    } finally {
      await server.stop();
    }
  });
});
