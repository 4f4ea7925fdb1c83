/**
 * The console's activity (src/admin/activity.ts) on a running connector with the Teamwork simulator:
 * deliveries and events counted per minute, events found by id, entity id and row id, an event's
 * attempts and rows, a dead letter's detail, the queue sampled, and the capacity bound.
 */
import { afterAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { Activity } from '../../src/admin/activity.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { QueueEvent } from '../../src/model.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { memoryLogger, removeTempDirs, startSystem, stopAllSystems, tempDir, waitFor } from '../system/harness.ts';

const TOKEN = 'activity-test-token';
const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  await stopAllSystems();
  for (const stop of stops.splice(0)) await stop();
  removeTempDirs();
});

/** Test redaction: marks the payload so the test sees it went through. */
const redact = (payload: unknown) => ({ redacted: payload });

describe('Activity', () => {
  it('shows what the connector did: per-minute counts, events with attempts and rows, dead letters, queue samples', async () => {
    const tw = await startTeamworkSimulator({ seed: 'activity', data: { tasks: 3 }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
    stops.push(() => tw.stop());
    const sys = await startSystem({ env: { TEAMWORK_BASE_URL: tw.url, TEAMWORK_API_KEY: tw.credentials.apiKey, TEAMWORK_WEBHOOK_TOKEN: TOKEN } });
    const activity = new Activity({ lifecycle: sys.connector.lifecycle, queue: sys.connector.queue, sources: sys.connector.sources, database: () => sys.db, redact, sampleEveryMs: 50 });
    stops.push(async () => activity.close());
    activity.start();
    tw.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TOKEN });

    const task = await tw.createTask({ name: 'Activity: created' });
    await waitFor('the task to be stored', async () => (await sys.db.getTask(String(task.id))) !== null);
    // An event its handler cannot read: dead-lettered at once (not retryable).
    const bad: QueueEvent = { id: 'activity-bad-event', source: 'teamwork', type: 'TASK.UPDATED', entityKey: 'task:999999', origin: 'webhook', receivedAt: new Date(), payload: { nonsense: true } };
    await sys.connector.queue.enqueue([bad]);
    await waitFor('the bad event to be dead-lettered', async () => (await sys.stats()).deadLettered === 1);

    const [overview] = await activity.sources();
    expect(overview).toMatchObject({ name: 'teamwork', apiConfigured: true });
    expect(overview!.perMinute.deliveries).toHaveLength(60);
    expect(overview!.perMinute.deliveries.at(-1)).toBeGreaterThanOrEqual(1);
    expect(overview!.perMinute.events.at(-1)).toBeGreaterThanOrEqual(1);
    expect(overview!.perMinute.failed.at(-1)).toBe(1);
    expect(Date.now() - Date.parse(overview!.lastDeliveryAt!)).toBeLessThan(10_000);
    // The vendor's state and this process's use of its budget (TEAMWORK_REQUESTS_PER_MINUTE, 120).
    expect(overview!.vendor).toMatchObject({ state: 'ok', inFlight: 0, windows: [expect.objectContaining({ limit: 120 })] });

    // Found by its entity's id, by its entity key, by the row it wrote.
    const byId = await activity.events({ query: String(task.id), limit: 10 });
    expect(byId.length).toBeGreaterThanOrEqual(1);
    expect(byId.every((e) => e.entityKey === `task:${task.id}`)).toBe(true);
    expect(byId[0]).toMatchObject({ source: 'teamwork', outcome: 'ok', attempts: 1, origin: 'webhook' });
    expect(await activity.events({ query: `task:${task.id}`, limit: 10 })).toEqual(byId);
    expect(await activity.events({ query: 'no-such-thing', limit: 10 })).toEqual([]);

    const detail = await activity.event(byId[0]!.id);
    expect(detail?.history).toEqual([expect.objectContaining({ attempt: 1, outcome: 'ok', error: null })]);
    expect(detail?.payload).toHaveProperty('redacted');
    expect(detail?.rows).toEqual([expect.objectContaining({ table: 'tasks', id: String(task.id), deleted: false, row: { redacted: expect.objectContaining({ title: 'Activity: created' }) } })]);

    const dead = await activity.event('activity-bad-event');
    expect(dead).toMatchObject({ outcome: 'dead-lettered', attempts: 1, error: { code: expect.any(String) }, payload: { redacted: { nonsense: true } } });
    const newest = await activity.events({ limit: 1 });
    expect(newest[0]?.id).toBe('activity-bad-event');
    expect(await activity.events({ source: 'missive', limit: 10 })).toEqual([]);

    await waitFor('a queue sample with the dead letter', () => activity.queueHistory().some((s) => s.deadLettered === 1 && s.pending === 0 && s.inFlight === 0));
    expect(activity.queueHistory().length).toBeGreaterThanOrEqual(2);
    await sys.stop();
  }, 60_000);

  it('shows the events still waiting in the queue as pending, with their payload', async () => {
    const lifecycle = new Lifecycle();
    const { log } = memoryLogger();
    const queue = await FileQueue.open({ dir: path.join(tempDir('activity-queue'), 'queue'), log, lifecycle });
    stops.push(() => queue.close());
    const activity = new Activity({ lifecycle, queue, sources: [], database: () => null, redact });
    const waiting: QueueEvent = { id: 'waiting-1', source: 'missive', type: 'incoming_email', entityKey: 'conversation:c-1', origin: 'webhook', receivedAt: new Date(), payload: { a: 1 } };
    await queue.enqueue([waiting]);
    expect(await activity.events({ query: 'c-1', limit: 5 })).toEqual([expect.objectContaining({ id: 'waiting-1', outcome: 'pending', attempts: 0 })]);
    expect(await activity.event('waiting-1')).toMatchObject({ outcome: 'pending', payload: { redacted: { a: 1 } }, history: [], rows: [] });
    expect(await activity.event('unknown')).toBeNull();
  });

  it('keeps at most `capacity` events, the newest', async () => {
    const sys = await startSystem();
    const activity = new Activity({ lifecycle: sys.connector.lifecycle, queue: sys.connector.queue, sources: [], database: () => sys.db, redact, capacity: 5 });
    stops.push(async () => activity.close());
    const events: QueueEvent[] = Array.from({ length: 12 }, (_, i) => ({ id: `cap-${i}`, source: 'teamwork', type: 'TASK.UPDATED', entityKey: `task:${i}`, origin: 'webhook', receivedAt: new Date(Date.now() + i), payload: {} }));
    await sys.connector.queue.enqueue(events);
    await waitFor('all dead-lettered', async () => (await sys.stats()).deadLettered === 12);
    const shown = await activity.events({ limit: 100 });
    expect(shown.map((e) => e.id)).toEqual(['cap-11', 'cap-10', 'cap-9', 'cap-8', 'cap-7']);
  }, 30_000);
});
