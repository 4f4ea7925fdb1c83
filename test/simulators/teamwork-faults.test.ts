/**
 * Every fault switch of the Teamwork simulator, switched at run time, plus the activity loop.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../simulators/common.ts';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import type { TwTask } from '../../simulators/teamwork/model.ts';
import { startReceiver, type Json, type Receiver } from './common-receiver.ts';

let sim: TeamworkSimulator;
let receiver: Receiver;
let auth: string;

beforeEach(async () => {
  sim = await startTeamworkSimulator({ seed: 9, webhookRetryDelaysMs: [], webhookReorderWindowMs: 60_000 });
  receiver = await startReceiver();
  auth = `Basic ${Buffer.from(`${sim.credentials.apiKey}:x`).toString('base64')}`;
  sim.registerAllTaskWebhooks(`${receiver.url}/tw`, { token: 't' });
});
afterEach(async () => {
  await sim.stop();
  await receiver.close();
});

const open = () => sim.data().tasks.find((t) => t.status === 'new') as TwTask;
const getTask = (id: number) => fetch(`${sim.url}/projects/api/v3/tasks/${id}.json`, { headers: { authorization: auth } });

describe('API faults', () => {
  it('latencyMs delays answers', async () => {
    sim.faults.set({ latencyMs: 150 });
    const t0 = Date.now();
    expect((await getTask(open().id)).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it('errorRate answers 5xx', async () => {
    sim.faults.set({ errorRate: 1 });
    expect((await getTask(open().id)).status).toBe(503);
    sim.faults.set({ errorRate: 0 });
    expect((await getTask(open().id)).status).toBe(200);
  });

  it('rateLimitBurst answers 429 with the Teamwork rate-limit headers, then recovers', async () => {
    sim.faults.set({ rateLimitBurst: 2 });
    const a = await getTask(open().id);
    expect(a.status).toBe(429);
    expect(a.headers.get('x-ratelimit-limit')).toBe('150');
    expect(a.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(Number(a.headers.get('x-ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000 - 1);
    expect((await getTask(open().id)).status).toBe(429);
    expect((await getTask(open().id)).status).toBe(200);
  });

  it('resetRate resets the connection without an answer', async () => {
    sim.faults.set({ resetRate: 1 });
    await expect(getTask(open().id)).rejects.toThrow();
    expect(sim.requests.entries.at(-1)?.status).toBe(0);
  });
});

describe('webhook faults', () => {
  it('dropRate: the change happens, no webhook is sent', async () => {
    sim.faults.set({ dropRate: 1 });
    const task = await sim.updateTask(open().id, { name: 'dropped' });
    expect(receiver.received).toHaveLength(0);
    expect(sim.deliveries.at(-1)?.outcome).toBe('dropped');
    const body = (await (await getTask(task.id)).json()) as Json;
    expect(body.task.name).toBe('dropped');
  });

  it('duplicateRate: the same bytes arrive twice', async () => {
    sim.faults.set({ duplicateRate: 1 });
    await sim.updateTask(open().id, { name: 'twice' });
    expect(receiver.received).toHaveLength(2);
    expect(receiver.received[0]?.raw).toBe(receiver.received[1]?.raw);
    expect(receiver.received[0]?.headers['x-projects-signature']).toBe(receiver.received[1]?.headers['x-projects-signature']);
  });

  it('reorder: deliveries are held and sent out of order on flush', async () => {
    sim.faults.set({ reorder: true });
    const task = open();
    for (let i = 1; i <= 4; i++) await sim.updateTask(task.id, { progress: i * 10 });
    expect(receiver.received).toHaveLength(0);
    await sim.flush();
    const progress = receiver.received.map((r) => JSON.parse(r.raw).task.progress);
    expect([...progress].sort((a, b) => a - b)).toEqual([10, 20, 30, 40]);
    expect(progress).not.toEqual([10, 20, 30, 40]);
  });

  it('consistencyDelayMs: the webhook is out while the API still serves the previous version', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const delayed = await startTeamworkSimulator({ seed: 9, clock, faults: { consistencyDelayMs: 5_000 } });
    try {
      delayed.registerWebhook({ event: 'TASK.UPDATED', url: `${receiver.url}/tw` });
      const get = (id: number) => fetch(`${delayed.url}/projects/api/v3/tasks/${id}.json`, { headers: { authorization: auth } });
      const task = delayed.data().tasks.find((t) => t.status === 'new') as TwTask;
      await delayed.updateTask(task.id, { name: 'new name' });
      expect(JSON.parse(receiver.received[0]?.raw ?? '{}').task.name).toBe('new name');
      expect(((await (await get(task.id)).json()) as Json).task.name).toBe(task.name);
      const created = await delayed.createTask({ name: 'brand new' });
      expect((await get(created.id)).status).toBe(404);
      clock.advance(4_999);
      expect(((await (await get(task.id)).json()) as Json).task.name).toBe(task.name);
      clock.advance(1);
      expect(((await (await get(task.id)).json()) as Json).task.name).toBe('new name');
      expect((await get(created.id)).status).toBe(200);
    } finally {
      await delayed.stop();
    }
  });
});

describe('activity', () => {
  it('makes random changes at the chosen rate, each with its signed webhook', async () => {
    sim.startActivity(1200); // one every 50 ms
    await receiver.waitFor(6, 5_000);
    await sim.stopActivity();
    await sim.flush();
    for (const r of receiver.received) {
      expect(r.headers['x-projects-event']).toMatch(/^TASK\.(CREATED|UPDATED|COMPLETED|REOPENED|DELETED|MOVED|TAGGED|UNTAGGED)$/);
      expect(r.headers['x-projects-signature']).toBe(createHmac('sha256', 't').update(r.raw).digest('hex'));
    }
    const sent = sim.deliveries.filter((d) => d.outcome === 'sent').length;
    expect(receiver.received.length).toBe(sent);
  });
});

describe('control routes', () => {
  it('switch faults and make changes over HTTP, unaffected by the faults themselves', async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${sim.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('/__sim/faults', { errorRate: 1 })).status).toBe(200);
    expect((await getTask(open().id)).status).toBe(503);
    const made = await post('/__sim/mutate', { op: 'createTask', args: [{ name: 'über HTTP' }] });
    expect(made.status).toBe(200);
    const task = ((await made.json()) as { result: { id: number } }).result;
    expect(JSON.parse(receiver.received.at(-1)?.raw ?? '{}').task.id).toBe(task.id);
    expect((await fetch(`${sim.url}/__sim/faults`, { method: 'DELETE' })).status).toBe(200);
    expect((await getTask(task.id)).status).toBe(200);
    expect((await post('/__sim/mutate', { op: 'completeTask', args: [12345] })).status).toBe(422);
    expect((await post('/__sim/mutate', { op: 'nope', args: [] })).status).toBe(404);
    const deliveries = (await (await fetch(`${sim.url}/__sim/deliveries`)).json()) as { deliveries: Array<{ event: string }> };
    expect(deliveries.deliveries.at(-1)?.event).toBe('TASK.CREATED');
  });
});
