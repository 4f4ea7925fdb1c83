/**
 * The Teamwork source end to end against the simulator: real signed deliveries -> verify/parse -> handle
 * (fetching from the simulator's API where the body is thin) -> rows in a real SQLite database; and the
 * backfill recovering what webhooks dropped, under faults.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config.ts';
import { SqliteDatabase } from '../../../src/db/sqlite/sqlite-database.ts';
import { ConnectorError } from '../../../src/errors.ts';
import type { Clock } from '../../../src/http/index.ts';
import { createLogger } from '../../../src/log.ts';
import type { QueueEvent, Task } from '../../../src/model.ts';
import { backfillTeamwork } from '../../../src/sources/teamwork/backfill.ts';
import { TeamworkClient } from '../../../src/sources/teamwork/client.ts';
import { createTeamworkSource, registerWebhooks, type TeamworkSource } from '../../../src/sources/teamwork/index.ts';
import { mapV3Task } from '../../../src/sources/teamwork/map.ts';
import type { WebhookEventPayload } from '../../../src/sources/teamwork/payloads.ts';
import type { BackfillPage } from '../../../src/sources/source.ts';
import { startTeamworkSimulator, type TeamworkSimulator, type TwTask } from '../../../simulators/teamwork/index.ts';
import { startReceiver, type Receiver } from './receiver.ts';

const TOKEN = 'integration-token-7d1e';
const log = createLogger({ level: 'silent', console: false });
const context = { log, now: () => new Date() };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Real time, except that waits (retry backoff, rate-limit pauses) are skipped: each sleep moves this
 * clock forward instead. Keeps the source's idea of "now" at or after the simulator's.
 */
function skippingClock(): Clock {
  let skipped = 0;
  return {
    now: () => Date.now() + skipped,
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      skipped += Math.max(0, ms);
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

describe('Teamwork source with the simulator', () => {
  let sim: TeamworkSimulator;
  let receiver: Receiver;
  let source: TeamworkSource;
  let db: SqliteDatabase;
  let dir: string;
  let notReady = 0;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tw-source-'));
    sim = await startTeamworkSimulator({ seed: 21, limits: { perMinute: 1_000_000 }, webhookRetryDelaysMs: [20, 20, 20] });
    const config = parseConfig({ TEAMWORK_BASE_URL: sim.url, TEAMWORK_API_KEY: sim.credentials.apiKey, TEAMWORK_WEBHOOK_TOKEN: TOKEN });
    source = createTeamworkSource(config, { log, clock: skippingClock() });
    receiver = await startReceiver(source);
    const registered = await registerWebhooks({ client: source.client!, publicUrl: receiver.url, token: TOKEN });
    expect(registered.created).toHaveLength(8);
    db = new SqliteDatabase({ file: path.join(dir, 'connector.db') });
    await db.migrate();
  });

  afterAll(async () => {
    await sim.stop();
    await receiver.stop();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    sim.faults.reset();
    expect(receiver.statuses.every((s) => s === 200)).toBe(true);
  });

  /** The dispatcher's job in miniature: handle each event, write its changes, retry what is retryable. */
  async function process(events: QueueEvent[]): Promise<void> {
    while (events.length > 0) {
      const event = events.shift() as QueueEvent;
      for (let attempt = 1; ; attempt++) {
        try {
          await db.apply(await source.handle(event, context));
          break;
        } catch (err) {
          if (!(err instanceof ConnectorError) || !err.retryable || attempt >= 50) throw err;
          if (err.code === 'CONN_ERR_EVENT_NOT_READY') notReady++;
          await sleep(50);
        }
      }
    }
  }

  /** The stored row equals what Teamwork's API says now, field for field (raw aside). */
  async function expectRowMatchesTeamwork(id: number): Promise<Task> {
    const fetched = await source.client!.getTask(String(id));
    const expected = mapV3Task(fetched!.task, fetched!.included, { baseUrl: sim.url });
    const row = await db.getTask(String(id));
    expect(row, `row for task ${id}`).not.toBeNull();
    expect({ ...row!, raw: null }).toEqual({ ...expected, raw: null });
    return row!;
  }

  const users = () => sim.data().users;
  const tags = () => sim.data().tags;
  const openLists = () => sim.data().tasklists.filter((l) => l.status !== 'completed');

  it('every task event, delivered as signed v2 JSON, ends as the right row', async () => {
    const [u1, u2] = users();
    const [t1, t2] = tags();
    const [listA, listB] = openLists();
    const task = await sim.createTask({
      name: 'Integration: quarterly numbers',
      description: 'Check the numbers.',
      priority: 'high',
      startDate: '2026-11-02',
      dueDate: '2026-11-30',
      estimateMinutes: 90,
      assigneeUserIds: [u1!.id, u2!.id],
      tagIds: [t1!.id],
      tasklistId: listA!.id,
      actorId: u2!.id,
    });
    await process(receiver.events);
    const created = await expectRowMatchesTeamwork(task.id);
    expect(created).toMatchObject({ title: 'Integration: quarterly numbers', status: 'new', startDate: '2026-11-02', dueDate: '2026-11-30', deleted: false });
    expect(created.assignees.map((a) => a.email)).toEqual([u1!.email, u2!.email]);

    const steps: Array<[string, () => Promise<TwTask>]> = [
      ['TASK.UPDATED', () => sim.updateTask(task.id, { name: 'Integration: Q4 numbers', progress: 40, actorId: u1!.id })],
      ['TASK.COMPLETED', () => sim.completeTask(task.id)],
      ['TASK.REOPENED', () => sim.reopenTask(task.id)],
      ['TASK.MOVED', () => sim.moveTask(task.id, { tasklistId: listB!.id })],
      ['TASK.TAGGED', () => sim.tagTask(task.id, [t2!.id])],
      ['TASK.UNTAGGED', () => sim.untagTask(task.id, [t1!.id])],
    ];
    for (const [type, change] of steps) {
      await change();
      expect(receiver.events.map((e) => e.type)).toEqual([type]);
      await process(receiver.events);
      const row = await expectRowMatchesTeamwork(task.id);
      if (type === 'TASK.COMPLETED') expect(row).toMatchObject({ status: 'completed', deleted: false, completedAt: expect.any(Date) });
      if (type === 'TASK.REOPENED') expect(row).toMatchObject({ status: 'reopened', deleted: false, completedAt: null });
      if (type === 'TASK.MOVED') expect(row).toMatchObject({ tasklistId: String(listB!.id), tasklistName: listB!.name });
    }
    expect((await db.getTask(String(task.id)))?.tags).toEqual([t2!.name]);

    await sim.deleteTask(task.id);
    expect(receiver.events.map((e) => e.type)).toEqual(['TASK.DELETED']);
    await process(receiver.events);
    const deleted = await expectRowMatchesTeamwork(task.id);
    expect(deleted).toMatchObject({ deleted: true, status: 'deleted', title: 'Integration: Q4 numbers', deletedAt: new Date(sim.task(task.id)!.deletedAt!) });
  });

  it('v2 Form and legacy v1 Form deliveries end in the same row', async () => {
    const url = `${receiver.url}/webhooks/teamwork`;
    const extra = [
      sim.registerWebhook({ event: 'TASK.UPDATED', url, contentType: 'application/x-www-form-urlencoded', token: TOKEN }),
      sim.registerWebhook({ event: 'TASK.UPDATED', url, version: 1, token: TOKEN }),
    ];
    try {
      const task = sim.data().tasks.find((t) => t.status === 'new' && t.assigneeUserIds.length > 0)!;
      await sim.updateTask(task.id, { dueDate: '2027-01-15', priority: 'low' });
      const formats = receiver.events.map((e) => (e.payload as WebhookEventPayload).format).sort();
      expect(formats).toEqual(['v1-form', 'v2-form', 'v2-json']);
      await process(receiver.events);
      expect(await expectRowMatchesTeamwork(task.id)).toMatchObject({ dueDate: '2027-01-15', priority: 'low' });
    } finally {
      for (const hook of extra) sim.deleteWebhook(hook.id);
    }
  });

  it('an API that lags behind its webhook is retried (CONN_ERR_EVENT_NOT_READY), then stored', async () => {
    const task = sim.data().tasks.find((t) => t.status === 'new')!;
    await process(receiver.events);
    const before = notReady;
    sim.faults.set({ consistencyDelayMs: 800 });
    await sleep(1100); // the update lands in a later second than the task's last one
    await sim.updateTask(task.id, { progress: 77 });
    const event = receiver.events[0]!;
    await expect(source.handle(event, context)).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_NOT_READY', retryable: true });
    await process(receiver.events);
    expect(notReady).toBeGreaterThan(before);
    expect(await expectRowMatchesTeamwork(task.id)).toMatchObject({ progress: 77 });
  });

  it('an older snapshot never overwrites a newer webhook', async () => {
    const task = sim.data().tasks.find((t) => t.status === 'new')!;
    const since = new Date(task.updatedAt);
    const old: QueueEvent[] = [];
    for await (const page of source.backfill!({ since, log })) old.push(...page.events.filter((e) => e.entityKey === `task:${task.id}`));
    expect(old).toHaveLength(1);
    await sleep(1100);
    await sim.updateTask(task.id, { name: 'Newer name' });
    await process(receiver.events);
    await process(old);
    expect(await expectRowMatchesTeamwork(task.id)).toMatchObject({ title: 'Newer name' });
  });

  it('dropped webhooks (an update and a delete) are recovered by the backfill', async () => {
    const [a, b] = sim.data().tasks.filter((t) => t.status === 'new');
    await process(receiver.events);
    const since = new Date(Date.now() - 5_000);
    sim.faults.set({ dropRate: 1 });
    await sim.updateTask(a!.id, { name: 'Changed while the webhook was lost' });
    await sim.deleteTask(b!.id);
    expect(receiver.events).toEqual([]);
    expect(sim.deliveries.filter((d) => d.outcome === 'dropped').length).toBeGreaterThanOrEqual(2);
    sim.faults.reset();

    const pages: BackfillPage[] = [];
    for await (const page of source.backfill!({ since, log })) pages.push(page);
    const events = pages.flatMap((p) => p.events);
    expect(events.every((e) => e.type === 'task.snapshot' && e.origin === 'backfill')).toBe(true);
    const requestsBefore = sim.requests.entries.length;
    await process(events);
    expect(sim.requests.entries.length).toBe(requestsBefore); // snapshots need no API call
    expect(await expectRowMatchesTeamwork(a!.id)).toMatchObject({ title: 'Changed while the webhook was lost' });
    expect(await expectRowMatchesTeamwork(b!.id)).toMatchObject({ deleted: true });
    expect(pages.at(-1)?.newestUpdate?.getTime()).toBe(sim.task(a!.id)!.updatedAt);
  });

  it('a backfill under a 429 storm and 20% 5xx, restarted from its checkpoint after failures, loses nothing', async () => {
    const file = path.join(dir, 'storm.db');
    const stormDb = new SqliteDatabase({ file });
    await stormDb.migrate();
    const client = new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, clock: skippingClock(), pageSize: 10, maxAttempts: 2 });
    sim.faults.set({ errorRate: 0.2, rateLimitBurst: 4 });
    let checkpoint: Date | null = null;
    let failures = 0;
    let runs = 0;
    const overlapMs = 120_000;
    while (runs < 100) {
      runs++;
      const since: Date = checkpoint === null ? new Date('2020-01-01T00:00:00Z') : new Date(checkpoint.getTime() - overlapMs);
      try {
        for await (const page of backfillTeamwork({ client, since, log })) {
          for (const event of page.events) await stormDb.apply(await source.handle(event, context));
          if (page.newestUpdate !== null && (checkpoint === null || page.newestUpdate > checkpoint)) checkpoint = page.newestUpdate;
        }
        break;
      } catch (err) {
        expect(err).toMatchObject({ retryable: true });
        failures++;
      }
    }
    sim.faults.reset();
    expect(failures).toBeGreaterThan(0);
    const data = sim.data();
    const projects = new Set(data.projects.map((p) => p.id));
    const lists = new Map(data.tasklists.map((l) => [l.id, l.projectId]));
    const expected = data.tasks.filter((t) => projects.has(lists.get(t.tasklistId) ?? -1));
    for (const task of expected) {
      const row = await stormDb.getTask(String(task.id));
      expect(row, `task ${task.id}`).not.toBeNull();
      expect(row).toMatchObject({ updatedAt: new Date(task.updatedAt), deleted: task.status === 'deleted', status: task.status });
    }
    expect((await stormDb.counts()).tasks).toBe(expected.length);
    await stormDb.close();
  });
});
