/**
 * Issue 5, proved through the real connector: `startConnector` (HTTP app + file queue + dispatcher +
 * reconciler, SQLite) with TEAMWORK_BASE_URL / TEAMWORK_API_KEY / TEAMWORK_WEBHOOK_TOKEN pointed at the
 * Teamwork simulator, which sends real signed webhooks over HTTP for every change.
 *
 * - Every task event (create, update, complete, reopen, move, delete) ends as the right row, for v2
 *   JSON, v2 Form and legacy v1 hooks, field for field against the simulator's own record.
 * - Delivery faults: a dropped webhook is recovered by a backfill; duplicated and reordered deliveries
 *   leave the newest state; a 429 storm and 20% 5xx lose nothing.
 * - Bad input through the running server: each refusal has its status and enqueues nothing.
 */
import { createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator, type TwTask } from '../../simulators/teamwork/index.ts';
import { removeTempDirs, startSystem, stopAllSystems, SteppingClock, waitFor, type System } from './harness.ts';
import { comparableTask, expectedTask, rowMatches } from './teamwork-expect.ts';

const TOKEN = 'system-teamwork-token-5f2a';

afterAll(async () => {
  // Whatever a failed test left running.
  await stopAllSystems();
  removeTempDirs();
});

interface Rig {
  sim: TeamworkSimulator;
  sys: System;
  clock: SteppingClock;
}

async function startRig(env: Record<string, string> = {}): Promise<Rig> {
  const clock = new SteppingClock();
  const sim = await startTeamworkSimulator({
    seed: 'system-teamwork',
    clock,
    data: { tasks: 40 },
    // A short rate window, so that a 429's X-RateLimit-Reset is at most a second or two away.
    limits: { perMinute: 100_000, windowScale: 0.02 },
    // No redelivery: whatever a test drops stays dropped unless the connector recovers it.
    webhookRetryDelaysMs: [],
  });
  const sys = await startSystem({
    env: { TEAMWORK_BASE_URL: sim.url, TEAMWORK_API_KEY: sim.credentials.apiKey, TEAMWORK_WEBHOOK_TOKEN: TOKEN, ...env },
  });
  return { sim, sys, clock };
}

async function stopRig(rig: Rig | undefined): Promise<void> {
  if (rig === undefined) return;
  await rig.sys.stop();
  await rig.sim.stop();
}

/** Waits until the stored task equals the simulator's newest version of it. */
async function expectStored(rig: Rig, id: number, timeoutMs = 15_000): Promise<void> {
  const task = () => rig.sim.task(id) as TwTask;
  try {
    await waitFor(`task ${id} to match the simulator`, async () => rowMatches(rig.sim, await rig.sys.db.getTask(String(id)), task()), timeoutMs);
  } catch (err) {
    // Show the difference, not just the timeout.
    const row = await rig.sys.db.getTask(String(id));
    expect(row === null ? null : comparableTask(row), (err as Error).message).toEqual(expectedTask(rig.sim, task()));
  }
}

function openLists(sim: TeamworkSimulator) {
  const projects = new Map(sim.data().projects.map((p) => [p.id, p]));
  return sim.data().tasklists.filter((l) => l.status !== 'completed' && projects.get(l.projectId)?.status === 'active');
}

describe.each([
  { name: 'v2 JSON', hook: { version: 2 as const, contentType: 'application/json' } },
  { name: 'v2 Form', hook: { version: 2 as const, contentType: 'application/x-www-form-urlencoded' } },
  { name: 'v1 Form', hook: { version: 1 as const } },
])('Teamwork task lifecycle through the connector ($name hooks)', ({ hook }) => {
  let rig: Rig | undefined;

  afterEach(async () => {
    await stopRig(rig);
    rig = undefined;
  });

  it('create -> update -> complete -> reopen -> move -> delete each arrive as the right row', async () => {
    rig = await startRig();
    const { sim, sys, clock } = rig;
    const hooks = sim.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TOKEN, ...hook });
    expect(hooks).toHaveLength(8);
    const users = sim.data().users;
    const tags = sim.data().tags;
    const [listA, listB] = openLists(sim);

    const task = await sim.createTask({
      name: 'System: Überprüfung der Zahlen – 检查 🚀',
      description: 'Line one\nLine two «quoted»',
      priority: 'high',
      startDate: '2026-11-02',
      dueDate: '2026-11-30',
      estimateMinutes: 90,
      assigneeUserIds: [users[0]!.id, users[1]!.id],
      tagIds: [tags[0]!.id, tags[1]!.id],
      tasklistId: listA!.id,
      actorId: users[1]!.id,
    });
    await expectStored(rig, task.id);
    expect(await sys.db.getTask(String(task.id))).toMatchObject({ status: 'new', deleted: false, completedAt: null, tasklistId: String(listA!.id) });

    clock.step();
    await sim.updateTask(task.id, { name: 'System: Q4 numbers', progress: 40, dueDate: '2026-12-15', priority: 'low', actorId: users[0]!.id });
    await expectStored(rig, task.id);

    clock.step();
    await sim.completeTask(task.id);
    await expectStored(rig, task.id);
    const completed = await sys.db.getTask(String(task.id));
    expect(completed).toMatchObject({ status: 'completed', deleted: false, deletedAt: null });
    expect(completed?.completedAt?.getTime()).toBe(sim.task(task.id)!.completedAt);

    clock.step();
    await sim.reopenTask(task.id);
    await expectStored(rig, task.id);
    expect(await sys.db.getTask(String(task.id))).toMatchObject({ status: 'reopened', completedAt: null, deleted: false });

    clock.step();
    await sim.moveTask(task.id, { tasklistId: listB!.id });
    await expectStored(rig, task.id);
    expect(await sys.db.getTask(String(task.id))).toMatchObject({ tasklistId: String(listB!.id), tasklistName: listB!.name });

    clock.step();
    await sim.deleteTask(task.id);
    await expectStored(rig, task.id);
    const deleted = await sys.db.getTask(String(task.id));
    expect(deleted).toMatchObject({ status: 'deleted', deleted: true, title: 'System: Q4 numbers' });
    expect(deleted?.deletedAt?.getTime()).toBe(sim.task(task.id)!.deletedAt);

    // Every delivery was answered 200, one event per delivery, none dead-lettered, one row.
    const sent = sim.deliveries.filter((d) => d.outcome === 'sent');
    expect(sent.map((d) => d.event)).toEqual(['TASK.CREATED', 'TASK.UPDATED', 'TASK.COMPLETED', 'TASK.REOPENED', 'TASK.MOVED', 'TASK.DELETED']);
    expect(sent.every((d) => d.status === 200)).toBe(true);
    const stats = await sys.waitIdle();
    expect(stats.deadLettered).toBe(0);
    expect(sys.counters.appendedEvents).toBe(6);
    expect((await sys.db.counts()).tasks).toBe(1);
  });
});

describe('Teamwork delivery faults through the connector (v2 JSON hooks)', () => {
  let rig: Rig;

  beforeAll(async () => {
    rig = await startRig();
    rig.sim.registerAllTaskWebhooks(`${rig.sys.url}/webhooks/teamwork`, { token: TOKEN });
  });

  afterAll(async () => {
    await stopRig(rig);
  });

  afterEach(() => {
    rig.sim.faults.reset();
  });

  const newTask = async (name: string): Promise<TwTask> => {
    const task = await rig.sim.createTask({ name, tasklistId: openLists(rig.sim)[0]!.id });
    await expectStored(rig, task.id);
    return task;
  };

  it('a dropped webhook is recovered by a backfill (reconcile)', async () => {
    const { sim, sys, clock } = rig;
    const task = await newTask('Drop: before');
    clock.step();
    sim.faults.set({ dropRate: 1 });
    await sim.updateTask(task.id, { name: 'Drop: after', progress: 60 });
    sim.faults.set({ dropRate: 0 });
    expect(sim.deliveries.at(-1)).toMatchObject({ event: 'TASK.UPDATED', outcome: 'dropped' });
    // Nothing reached the connector, so the row must still be the old one.
    await sys.waitIdle();
    expect((await sys.db.getTask(String(task.id)))?.title).toBe('Drop: before');

    await sys.connector.reconcile();
    await expectStored(rig, task.id);
    expect((await sys.db.getTask(String(task.id)))?.title).toBe('Drop: after');
  });

  it('duplicated deliveries leave one row with the newest state', async () => {
    const { sim, sys, clock } = rig;
    const task = await newTask('Duplicate: before');
    const appended = sys.counters.appendedEvents;
    const rows = (await sys.db.counts()).tasks;
    sim.faults.set({ duplicateRate: 1 });
    for (const progress of [10, 20, 30]) {
      clock.step();
      await sim.updateTask(task.id, { name: `Duplicate: ${progress}`, progress });
    }
    sim.faults.set({ duplicateRate: 0 });
    const sent = sim.deliveries.slice(-6);
    expect(sent.filter((d) => d.duplicate)).toHaveLength(3);
    expect(sent.every((d) => d.outcome === 'sent' && d.status === 200)).toBe(true);
    // Each second copy is the same bytes: answered 200 by the replay window and not enqueued again.
    expect(sys.counters.appendedEvents - appended).toBe(3);
    await sys.waitIdle();
    await expectStored(rig, task.id);
    expect(await sys.db.getTask(String(task.id))).toMatchObject({ title: 'Duplicate: 30', progress: 30 });
    expect((await sys.db.counts()).tasks).toBe(rows);
  });

  it('out-of-order deliveries leave the newest state', async () => {
    const { sim, sys, clock } = rig;
    const task = await newTask('Reorder: 0');
    const before = sim.deliveries.length;
    sim.faults.set({ reorder: true });
    for (const n of [1, 2, 3]) {
      clock.step();
      await sim.updateTask(task.id, { name: `Reorder: ${n}`, progress: n * 10 });
    }
    clock.step();
    await sim.completeTask(task.id);
    sim.faults.set({ reorder: false });
    await sim.flush();
    const sent = sim.deliveries.slice(before).filter((d) => d.outcome === 'sent');
    expect(sent).toHaveLength(4);
    const order = sent.map((d) => (JSON.parse(d.body) as { task: { name: string; status: string } }).task);
    // The newest change was not the last delivered: a connector that let the last delivery win would end
    // with an older state. (The seeded shuffle sends it first.)
    expect(order.map((t) => `${t.name}/${t.status}`).at(-1)).not.toBe('Reorder: 3/completed');
    await sys.waitIdle();
    await expectStored(rig, task.id);
    expect(await sys.db.getTask(String(task.id))).toMatchObject({ title: 'Reorder: 3', status: 'completed', progress: 100 });
  });
});

/**
 * API faults. The hooks are v1 (an id and nothing else), so every event makes the connector fetch the
 * task from the API, and a reconciliation runs during the fault too: the faults hit both paths.
 */
describe('Teamwork API faults through the connector (v1 hooks: every event fetches the task)', () => {
  let rig: Rig | undefined;

  afterEach(async () => {
    await stopRig(rig);
    rig = undefined;
  });

  /** Creates `n` tasks, updates and deletes existing ones, and reconciles, all while the fault is on. */
  async function churn(r: Rig, label: string): Promise<number[]> {
    const { sim } = r;
    const touched: number[] = [];
    const list = openLists(sim)[0]!;
    const existing = sim.data().tasks.filter((t) => t.status === 'new' || t.status === 'reopened').slice(0, 3);
    const reconciled = r.sys.connector.reconcile();
    for (let i = 0; i < 4; i++) touched.push((await sim.createTask({ name: `${label} ${i}`, tasklistId: list.id })).id);
    for (const task of existing.slice(0, 2)) touched.push((await sim.updateTask(task.id, { name: `${label}: renamed ${task.id}` })).id);
    touched.push((await sim.deleteTask(existing[2]!.id)).id);
    await reconciled;
    return touched;
  }

  async function expectAllStored(r: Rig, ids: number[]): Promise<void> {
    for (const id of ids) await expectStored(r, id, 5_000);
  }

  it('a 429 storm loses nothing', async () => {
    rig = await startRig();
    const { sim, sys } = rig;
    sim.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TOKEN, version: 1 });
    sim.faults.set({ rateLimitBurst: 6 });
    const touched = await churn(rig, '429 storm');
    const stats = await sys.waitIdle(45_000);
    expect(sim.faults.get().rateLimitBurst).toBe(0);
    expect(sim.requests.find((r) => r.status === 429)).toHaveLength(6);
    expect(sim.deliveries.every((d) => d.status === 200)).toBe(true);
    // The storm is shorter than the event's attempts (MAX_QUEUE_ATTEMPTS x the HTTP core's retries):
    // nothing may be dead-lettered.
    expect(stats.deadLettered).toBe(0);
    await expectAllStored(rig, touched);
  }, 60_000);

  it('20% 5xx answers lose nothing', async () => {
    rig = await startRig();
    const { sim, sys } = rig;
    sim.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TOKEN, version: 1 });
    sim.faults.set({ errorRate: 0.2 });
    const touched = await churn(rig, '5xx');
    const stats = await sys.waitIdle(45_000);
    sim.faults.reset();
    expect(sim.requests.find((r) => r.status === 503).length).toBeGreaterThan(0);
    expect(stats.deadLettered).toBe(0);
    await expectAllStored(rig, touched);
  }, 60_000);
});

describe('Teamwork: a storm longer than the attempts', () => {
  let rig: Rig | undefined;

  afterEach(async () => {
    await stopRig(rig);
    rig = undefined;
  });

  it('dead-letters the event after MAX_QUEUE_ATTEMPTS, and reconciliation recovers the state', async () => {
    rig = await startRig({ MAX_QUEUE_ATTEMPTS: '1' });
    const { sim, sys } = rig;
    sim.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TOKEN, version: 1 });
    sim.faults.set({ errorRate: 1 });
    const task = await sim.createTask({ name: 'Outlasts its attempts', tasklistId: openLists(sim)[0]!.id });
    const stats = await sys.waitIdle(40_000);
    expect(stats.deadLettered).toBe(1);
    expect(await sys.db.getTask(String(task.id))).toBeNull();
    const [letter] = await sys.connector.queue.listDeadLetters({ all: true });
    expect(letter).toMatchObject({ event: { type: 'TASK.CREATED', entityKey: `task:${task.id}` }, attempts: 1 });

    sim.faults.reset();
    await sys.connector.reconcile();
    await expectStored(rig, task.id);
  }, 60_000);
});

describe('Teamwork bad input through the running server', () => {
  let rig: Rig;
  let body: string;
  let headers: Record<string, string>;
  const MAX_BODY = 4096;

  beforeAll(async () => {
    rig = await startRig({ WEBHOOK_MAX_BODY_BYTES: String(MAX_BODY) });
    const { sim, sys } = rig;
    sim.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TOKEN });
    // A real delivery, as the simulator signed and sent it: the material every case starts from.
    const task = await sim.createTask({ name: 'Bad input: base', tasklistId: openLists(sim)[0]!.id });
    await expectStored(rig, task.id);
    const delivery = sim.deliveries.at(-1)!;
    body = delivery.body;
    headers = { 'content-type': delivery.headers['content-type']!, 'x-projects-event': 'TASK.UPDATED', 'x-projects-signature': delivery.headers['x-projects-signature']! };
    expect(Buffer.byteLength(body)).toBeLessThan(MAX_BODY);
    await rig.sys.waitIdle();
  });

  afterAll(async () => {
    await stopRig(rig);
  });

  const sign = (text: string | Buffer, token = TOKEN) => createHmac('sha256', token).update(text).digest('hex');
  const post = (payload: string | Buffer, h: Record<string, string>) => fetch(`${rig.sys.url}/webhooks/teamwork`, { method: 'POST', headers: h, body: payload });

  /** Posts, expects `status` (and `code`), and checks that the queue saw nothing new. */
  async function refused(payload: string | Buffer, h: Record<string, string>, status: number, code: string): Promise<void> {
    const before = await rig.sys.stats();
    const appended = rig.sys.counters.appendedEvents;
    const rejected = rig.sys.counters['delivery:rejected'];
    const response = await post(payload, h);
    expect(response.status).toBe(status);
    expect(await response.json()).toMatchObject({ error: code });
    expect(rig.sys.counters.appendedEvents).toBe(appended);
    expect(rig.sys.counters['delivery:rejected'], 'a delivery:rejected lifecycle event (what /metrics counts) for this refusal').toBe(rejected + 1);
    expect(await rig.sys.stats()).toEqual(before);
  }

  const without = (name: string) => Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name));

  it('missing signature: 401, nothing enqueued', async () => {
    await refused(body, without('x-projects-signature'), 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('wrong signature (another token): 401, nothing enqueued', async () => {
    await refused(body, { ...headers, 'x-projects-signature': sign(body, 'not-the-token') }, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('truncated signature: 401, nothing enqueued', async () => {
    await refused(body, { ...headers, 'x-projects-signature': headers['x-projects-signature']!.slice(0, 32) }, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('tampered body with the original signature: 401, nothing enqueued', async () => {
    await refused(body.replace('Bad input: base', 'Bad input: bas3'), headers, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('the same JSON re-serialised (other bytes) with the original signature: 401, nothing enqueued', async () => {
    const reserialised = JSON.stringify(JSON.parse(body), null, 1);
    expect(JSON.parse(reserialised)).toEqual(JSON.parse(body));
    await refused(reserialised, headers, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('wrong content type: 415, nothing enqueued', async () => {
    await refused(body, { ...headers, 'content-type': 'text/plain' }, 415, 'CONN_ERR_WEBHOOK_MEDIA_TYPE');
    await refused(body, { ...headers, 'content-type': 'application/xml' }, 415, 'CONN_ERR_WEBHOOK_MEDIA_TYPE');
  });

  it('a body over WEBHOOK_MAX_BODY_BYTES: 413, nothing enqueued', async () => {
    const big = JSON.stringify({ ...JSON.parse(body), padding: 'x'.repeat(MAX_BODY) });
    await refused(big, { ...headers, 'x-projects-signature': sign(big) }, 413, 'CONN_ERR_WEBHOOK_TOO_LARGE');
  });

  it('garbage bytes, correctly signed: 400, nothing enqueued', async () => {
    const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x22, 0xc3, 0x28, 0x9f, 0x10, 0x80]);
    await refused(garbage, { ...headers, 'x-projects-signature': sign(garbage) }, 400, 'CONN_ERR_WEBHOOK_MALFORMED');
    const notJson = '{"task": {"id": 1,';
    await refused(notJson, { ...headers, 'x-projects-signature': sign(notJson) }, 400, 'CONN_ERR_WEBHOOK_MALFORMED');
  });

  it('an upper-case signature passes (hex in any case) and the delivery is stored', async () => {
    const appended = rig.sys.counters.appendedEvents;
    // Other bytes than the delivery the simulator sent (the same bytes again are a replay, answered without enqueueing).
    const fresh = body.replace('Bad input: base', 'Bad input: BASE');
    const response = await post(fresh, { ...headers, 'x-projects-signature': sign(fresh).toUpperCase() });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true, events: 1 });
    expect(rig.sys.counters.appendedEvents).toBe(appended + 1);
    const stats = await rig.sys.waitIdle();
    expect(stats.deadLettered).toBe(0);
  });

  it('an event we do not store: 200 (so the hook stays active), nothing enqueued or stored', async () => {
    const project = JSON.stringify({ eventCreator: { id: 1 }, project: { id: 300001, name: 'A project' } });
    const appended = rig.sys.counters.appendedEvents;
    const tasks = (await rig.sys.db.counts()).tasks;
    const response = await post(project, { 'content-type': 'application/json', 'x-projects-event': 'PROJECT.UPDATED', 'x-projects-signature': sign(project) });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ ok: true, events: 0 });
    expect(rig.sys.counters.appendedEvents).toBe(appended);
    expect((await rig.sys.db.counts()).tasks).toBe(tasks);
  });
});
