/**
 * Missive's three API limits (reference 3), with scaled windows so the same ratios run in seconds, and
 * the request log's start/end times used to check them from outside.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../simulators/common.ts';
import { startMissiveSimulator, type MissiveSimulator } from '../../simulators/missive/index.ts';
import type { Json } from './common-receiver.ts';

let sim: MissiveSimulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const call = (s: MissiveSimulator) =>
  fetch(`${s.url}/v1/conversations?inbox=true&limit=1`, { headers: { authorization: `Bearer ${s.credentials.token}` } }).then(async (r) => {
    await r.arrayBuffer();
    return r;
  });

function expect429(r: Response, limit: number, now = Date.now()) {
  expect(r.status).toBe(429);
  expect(r.headers.get('x-ratelimit-limit')).toBe(String(limit));
  expect(r.headers.get('x-ratelimit-remaining')).toBe('0');
  expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  expect(Number(r.headers.get('x-ratelimit-reset'))).toBeGreaterThanOrEqual(Math.floor(now / 1000));
}

describe('limits', () => {
  it('allows at most 5 requests in flight and answers the rest 429', async () => {
    sim = await startMissiveSimulator({ seed: 2, data: { conversations: 5 } });
    sim.faults.set({ latencyMs: 400 });
    const responses = await Promise.all(Array.from({ length: 12 }, () => call(sim as MissiveSimulator)));
    const ok = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    // Normally exactly 5 and 7; a very slow machine may connect some clients after the first finished.
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(ok.length + refused.length).toBe(12);
    expect429(refused[0] as Response, 5);
    const admitted = (r: { status: number }) => r.status === 200;
    expect(sim.requests.maxConcurrency(admitted)).toBe(5);
    // Slots are freed: the next request after the others finished is admitted.
    expect((await call(sim)).status).toBe(200);
  });

  it('enforces the per-minute window (scaled) and opens a new one after it', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    sim = await startMissiveSimulator({ seed: 2, clock, data: { conversations: 5 }, limits: { perMinute: 10, perQuarterHour: 1000, windowScale: 0.02 } });
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 11; i++) {
      const r = await call(sim);
      statuses.push(r.status);
      if (r.status === 429) refused = r;
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.at(-1)).toBe(429);
    expect429(refused as Response, 10, clock.now());
    expect(Number(refused?.headers.get('retry-after'))).toBe(2); // 1.2 s left, rounded up
    clock.advance(1_199);
    expect((await call(sim)).status).toBe(429);
    clock.advance(1); // 60 s * 0.02
    expect((await call(sim)).status).toBe(200);
  });

  it('enforces the 15-minute window on top of the per-minute one', async () => {
    // windowScale 0.004: a minute is 240 ms, 15 minutes are 3.6 s.
    sim = await startMissiveSimulator({ seed: 2, data: { conversations: 5 }, limits: { perMinute: 10, perQuarterHour: 15, windowScale: 0.004 } });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await call(sim)).status);
    await new Promise((r) => setTimeout(r, 260));
    let refused: Response | undefined;
    for (let i = 0; i < 6; i++) {
      const r = await call(sim);
      statuses.push(r.status);
      if (r.status === 429) refused = r;
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(15);
    expect(statuses.at(-1)).toBe(429);
    expect429(refused as Response, 15);
    const admitted = (r: { status: number }) => r.status === 200;
    expect(sim.requests.maxInWindow(3_600, admitted)).toBe(15);
    expect(sim.requests.maxInWindow(240, admitted)).toBeLessThanOrEqual(10);
  });

  it('rateLimitBurst answers 429 with Retry-After and the X-RateLimit headers', async () => {
    sim = await startMissiveSimulator({ seed: 2, data: { conversations: 5 } });
    sim.faults.set({ rateLimitBurst: 1 });
    expect429(await call(sim), 300);
    expect((await call(sim)).status).toBe(200);
  });

  it('does not limit or authenticate attachment downloads', async () => {
    sim = await startMissiveSimulator({ seed: 2, data: { conversations: 10 }, limits: { perMinute: 1, perQuarterHour: 1 } });
    const message = sim.data().messages.find((m) => m.attachments.length > 0);
    expect(message).toBeDefined();
    const r = await fetch(`${sim.url}/v1/messages/${message?.id}`, { headers: { authorization: `Bearer ${sim.credentials.token}` } });
    const url = ((await r.json()) as Json).messages.attachments[0].url;
    expect((await call(sim)).status).toBe(429);
    for (let i = 0; i < 3; i++) expect((await fetch(url)).status).toBe(200);
  });
});
