/**
 * Every fault switch of the Missive simulator, switched at run time, plus the activity loop.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../simulators/common.ts';
import { startMissiveSimulator, type MissiveSimulator } from '../../simulators/missive/index.ts';
import type { MvConversation } from '../../simulators/missive/model.ts';
import { startReceiver, type Json, type Receiver } from './common-receiver.ts';

const SECRET = 's3cret';
let sim: MissiveSimulator;
let receiver: Receiver;

beforeEach(async () => {
  sim = await startMissiveSimulator({ seed: 8, webhookRetryDelaysMs: [], webhookReorderWindowMs: 60_000, limits: { concurrency: 50, perMinute: 1e6, perQuarterHour: 1e6 } });
  receiver = await startReceiver();
  await sim.createAllRules(`${receiver.url}/m`, SECRET);
  receiver.received.length = 0; // forget the validation requests
});
afterEach(async () => {
  await sim.stop();
  await receiver.close();
});

const api = (path: string) => fetch(`${sim.url}/v1${path}`, { headers: { authorization: `Bearer ${sim.credentials.token}` } });
const someConversation = () => sim.data().conversations.find((c) => !c.guest) as MvConversation;

describe('API faults', () => {
  it('latency, 5xx and connection resets apply to API requests', async () => {
    sim.faults.set({ latencyMs: 120 });
    const t0 = Date.now();
    expect((await api('/conversations?all=true')).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
    sim.faults.set({ latencyMs: 0, errorRate: 1 });
    expect((await api('/conversations?all=true')).status).toBe(503);
    sim.faults.set({ errorRate: 0, resetRate: 1 });
    await expect(api('/conversations?all=true')).rejects.toThrow();
    sim.faults.reset();
    expect((await api('/conversations?all=true')).status).toBe(200);
  });
});

describe('webhook faults', () => {
  it('dropRate: the email arrives, no webhook', async () => {
    sim.faults.set({ dropRate: 1 });
    const { message } = await sim.receiveEmail({});
    expect(receiver.received).toHaveLength(0);
    expect((await api(`/messages/${message.id}`)).status).toBe(200);
  });

  it('duplicateRate: the same signed bytes twice', async () => {
    sim.faults.set({ duplicateRate: 1 });
    await sim.addComment(someConversation().id, { body: 'dup' });
    expect(receiver.received).toHaveLength(2);
    expect(receiver.received[0]?.raw).toBe(receiver.received[1]?.raw);
  });

  it('reorder: held deliveries go out shuffled on flush', async () => {
    sim.faults.set({ reorder: true });
    const c = someConversation();
    for (let i = 0; i < 4; i++) await sim.addComment(c.id, { body: `n${i}` });
    expect(receiver.received).toHaveLength(0);
    await sim.flush();
    const order = receiver.received.map((r) => JSON.parse(r.raw).comment.body);
    expect([...order].sort()).toEqual(['n0', 'n1', 'n2', 'n3']);
    expect(order).not.toEqual(['n0', 'n1', 'n2', 'n3']);
  });

  it('consistencyDelayMs: the webhook names a message the API does not show yet', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    await sim.stop();
    sim = await startMissiveSimulator({ seed: 8, clock, faults: { consistencyDelayMs: 5_000 } });
    await sim.createRule({ type: 'incoming_email', url: `${receiver.url}/m`, secret: SECRET });
    receiver.received.length = 0;
    const c = someConversation();
    const { message } = await sim.receiveEmail({ conversationId: c.id });
    const delivered = JSON.parse(receiver.received[0]?.raw ?? '{}');
    expect(delivered.message.id).toBe(message.id);
    expect((await api(`/messages/${message.id}`)).status).toBe(404);
    const stale = ((await (await api(`/conversations/${c.id}`)).json()) as Json).conversations[0];
    expect(stale.messages_count).toBe(c.messageIds.length);
    const rows = ((await (await api(`/conversations/${c.id}/messages`)).json()) as Json).messages;
    expect(rows.map((m: Json) => m.id)).not.toContain(message.id);
    clock.advance(4_999);
    expect((await api(`/messages/${message.id}`)).status).toBe(404);
    clock.advance(1);
    expect((await api(`/messages/${message.id}`)).status).toBe(200);
    const fresh = ((await (await api(`/conversations/${c.id}`)).json()) as Json).conversations[0];
    expect(fresh.messages_count).toBe(c.messageIds.length + 1);
  });
});

describe('activity', () => {
  it('makes random changes, each with the deliveries of its rule type, all signed', async () => {
    sim.startActivity(1200);
    await receiver.waitFor(6, 5_000);
    await sim.stopActivity();
    await sim.flush();
    for (const r of receiver.received) {
      expect(r.headers['x-hook-signature']).toBe(`sha256=${createHmac('sha256', SECRET).update(r.raw).digest('hex')}`);
      expect(JSON.parse(r.raw).conversation.id).toEqual(expect.any(String));
    }
  });
});
