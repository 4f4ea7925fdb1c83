/**
 * The Airtable simulator's per-base rate limit and lockout, and one test per fault switch.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RATE_LIMIT_BODY, startAirtableSimulator, type AirtableSimulator } from '../../simulators/airtable/index.ts';
import { ManualClock } from '../../simulators/common.ts';
import { call, createTasksTable } from './airtable-helpers.ts';

let sim: AirtableSimulator;
let clock: ManualClock;
let records: string;

beforeEach(async () => {
  clock = new ManualClock(Date.parse('2026-11-20T10:00:00.000Z'));
  sim = await startAirtableSimulator({ clock });
  await createTasksTable(sim);
  records = `/v0/${sim.baseId}/Tasks`;
  // The table creation above counted against the base; start every test with a fresh window.
  sim.rateLimit.unlock();
});

afterEach(async () => {
  await sim.stop();
});

describe('per-base rate limit', () => {
  it('admits 5 requests per second per base, answers the 6th 429 RATE_LIMIT_REACHED, then locks the base for 30 s', async () => {
    for (let i = 0; i < 5; i++) expect((await call(sim, 'GET', records)).status).toBe(200);
    const refused = await call(sim, 'GET', records);
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ errors: [{ error: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' }] });
    expect(refused.headers.get('retry-after')).toBeNull();
    expect(sim.rateLimit.lockedUntil()).toBe(clock.now() + 30_000);

    // Everything for that base is refused during the lockout, the metadata API included...
    clock.advance(29_999);
    expect((await call(sim, 'GET', records)).status).toBe(429);
    expect((await call(sim, 'GET', `/v0/meta/bases/${sim.baseId}/tables`)).status).toBe(429);
    // ...but another base is not affected.
    sim.addBase('appOTHERBASE00001');
    expect((await call(sim, 'GET', `/v0/meta/bases/appOTHERBASE00001/tables`)).status).toBe(200);

    clock.advance(1);
    expect((await call(sim, 'GET', records)).status).toBe(200);
  });

  it('counts over a sliding second: 5 now and 5 a second later are all admitted', async () => {
    for (let i = 0; i < 5; i++) expect((await call(sim, 'GET', records)).status).toBe(200);
    clock.advance(1_000);
    for (let i = 0; i < 5; i++) expect((await call(sim, 'GET', records)).status).toBe(200);
    clock.advance(999);
    expect((await call(sim, 'GET', records)).status).toBe(429);
  });

  it('takes a shorter lockout for tests, in code and over the control route', async () => {
    sim.rateLimit.lockoutMs = 500;
    for (let i = 0; i < 6; i++) await call(sim, 'GET', records);
    expect(sim.rateLimit.lockedUntil()).toBe(clock.now() + 500);
    clock.advance(500);
    expect((await call(sim, 'GET', records)).status).toBe(200);

    const control = await fetch(`${sim.url}/__sim/rate-limit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ lockoutMs: 2_000, requestsPerSecond: 2 }) });
    expect(await control.json()).toEqual({ requestsPerSecond: 2, lockoutMs: 2_000, enabled: true });
    sim.rateLimit.unlock();
    for (let i = 0; i < 2; i++) expect((await call(sim, 'GET', records)).status).toBe(200);
    expect((await call(sim, 'GET', records)).status).toBe(429);
    expect(sim.rateLimit.lockedUntil()).toBe(clock.now() + 2_000);
  });

  it('does not count requests refused for authentication', async () => {
    for (let i = 0; i < 10; i++) expect((await call(sim, 'GET', records, { token: null })).status).toBe(401);
    expect((await call(sim, 'GET', records)).status).toBe(200);
  });
});

describe('fault switches', () => {
  beforeEach(() => {
    sim.rateLimit.set({ enabled: false });
  });

  it('latencyMs delays every API answer', async () => {
    sim.faults.set({ latencyMs: 150 });
    const started = performance.now();
    expect((await call(sim, 'GET', records)).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('errorRate 1 answers 503 after authentication; 0 stops it', async () => {
    sim.faults.set({ errorRate: 1 });
    expect((await call(sim, 'GET', records)).status).toBe(503);
    expect((await call(sim, 'GET', records, { token: null })).status).toBe(401);
    sim.faults.set({ errorRate: 0 });
    expect((await call(sim, 'GET', records)).status).toBe(200);
  });

  it("rateLimitBurst answers the next N requests 429 with Airtable's body, without locking the base", async () => {
    sim.faults.set({ rateLimitBurst: 2 });
    for (let i = 0; i < 2; i++) {
      const answer = await call(sim, 'GET', records);
      expect(answer.status).toBe(429);
      expect(answer.body).toEqual(RATE_LIMIT_BODY);
    }
    expect((await call(sim, 'GET', records)).status).toBe(200);
    expect(sim.rateLimit.lockedUntil()).toBeUndefined();
  });

  it('resetRate 1 drops the connection without an answer, and the request log shows status 0', async () => {
    sim.faults.set({ resetRate: 1 });
    await expect(fetch(`${sim.url}${records}`, { headers: { authorization: `Bearer ${sim.token}` } })).rejects.toThrow();
    expect(sim.requests.entries.at(-1)).toMatchObject({ method: 'GET', path: records, status: 0 });
    sim.faults.reset();
    expect((await call(sim, 'GET', records)).status).toBe(200);
  });

  it('faults never touch the control routes, which can also set them', async () => {
    sim.faults.set({ errorRate: 1 });
    const answer = await fetch(`${sim.url}/__sim/faults`, { method: 'DELETE' });
    expect(answer.status).toBe(200);
    expect(sim.faults.get().errorRate).toBe(0);
    await fetch(`${sim.url}/__sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rateLimitBurst: 1 }) });
    expect((await call(sim, 'GET', records)).status).toBe(429);
    const data = (await (await fetch(`${sim.url}/__sim/data`)).json()) as { bases: Array<{ tables: unknown[] }> };
    expect(data.bases[0]?.tables[0]).toMatchObject({ name: 'Tasks', records: [] });
  });

  it('logs every API request with method, path and status', async () => {
    sim.requests.clear();
    await call(sim, 'POST', records, { body: { fields: { 'Task ID': '1' } } });
    await call(sim, 'GET', `${records}?pageSize=1`);
    expect(sim.requests.entries.map((r) => [r.method, r.path, r.status, r.query.pageSize])).toEqual([
      ['POST', records, 200, undefined],
      ['GET', records, 200, '1'],
    ]);
  });
});
