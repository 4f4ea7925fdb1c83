/**
 * Contract tests of the Teamwork simulator's webhooks against reference/teamwork.md: the registration
 * API, the v2 JSON / v2 Form / v1 Form bodies of every task event, headers, and signatures checked with
 * an independent HMAC (node:crypto here, not the product's helper).
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import type { TaskEvent, TwTask } from '../../simulators/teamwork/model.ts';
import { startReceiver, type Json, type Receiver } from './common-receiver.ts';

const TOKEN = 'tw-token-ünïcode-🔑';
const hmac = (secret: string, raw: string) => createHmac('sha256', secret).update(Buffer.from(raw, 'utf8')).digest('hex');

let sim: TeamworkSimulator;
let receiver: Receiver;
let auth: string;

beforeEach(async () => {
  sim = await startTeamworkSimulator({ seed: 5, webhookRetryDelaysMs: [] });
  receiver = await startReceiver();
  auth = `Basic ${Buffer.from(`${sim.credentials.apiKey}:x`).toString('base64')}`;
});
afterEach(async () => {
  await sim.stop();
  await receiver.close();
});

const openTask = () =>
  sim.data().tasks.find((t) => t.status === 'new' && t.assigneeUserIds.length > 0 && t.tagIds.length > 0) as TwTask;

async function api(method: string, path: string, body?: unknown) {
  const response = await fetch(`${sim.url}${path}`, {
    method,
    headers: { authorization: auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

describe('registration API', () => {
  it('creates, lists and deletes webhooks on /projects/api/v1 and the legacy paths', async () => {
    const created = await api('POST', '/projects/api/v1/webhooks.json', {
      webhook: { event: 'TASK.CREATED', url: `${receiver.url}/tw`, version: '2', contentType: 'application/json', token: TOKEN },
    });
    expect(created.status).toBe(201);
    expect(created.body.webhook).toMatchObject({ event: 'TASK.CREATED', url: `${receiver.url}/tw`, version: '2', contentType: 'application/json' });
    expect(typeof created.body.webhook.id).toBe('number');
    const legacy = await api('POST', '/webhooks.json', { webhook: { event: 'TASK', status: 'UPDATED', url: `${receiver.url}/tw`, version: 2 } });
    expect(legacy.body.webhook.event).toBe('TASK.UPDATED');
    const listed = await api('GET', '/projects/api/v1/webhooks.json');
    expect(listed.body.webhooks.map((w: Json) => w.id).sort()).toEqual([created.body.webhook.id, legacy.body.webhook.id].sort());
    expect((await api('DELETE', `/projects/api/v1/webhooks/${created.body.webhook.id}.json`)).status).toBe(200);
    expect((await api('DELETE', `/webhooks/${legacy.body.webhook.id}.json`)).status).toBe(200);
    expect((await api('GET', '/webhooks.json')).body.webhooks).toEqual([]);
    expect((await api('DELETE', '/webhooks/1.json')).status).toBe(404);
  });

  it('rejects malformed registrations with 400', async () => {
    expect((await api('POST', '/projects/api/v1/webhooks.json', { event: 'TASK.CREATED' })).status).toBe(400);
    expect((await api('POST', '/projects/api/v1/webhooks.json', { webhook: { event: 'TASK.CREATED' } })).status).toBe(400);
    expect((await api('POST', '/projects/api/v1/webhooks.json', { webhook: { event: 'created', url: 'http://x' } })).status).toBe(400);
    expect((await api('POST', '/projects/api/v1/webhooks.json', { webhook: { event: 'TASK.CREATED', url: 'http://x', contentType: 'application/xml' } })).status).toBe(400);
  });
});

describe('v2 JSON deliveries', () => {
  it('sends every task event with X-Projects-Event and a valid X-Projects-Signature over the raw body', async () => {
    sim.registerAllTaskWebhooks(`${receiver.url}/tw`, { token: TOKEN });
    const task = openTask();
    const created = await sim.createTask({ name: 'Prüfung 🚀 "quoted" <b>', tasklistId: task.tasklistId, assigneeUserIds: [task.assigneeUserIds[0] as number], dueDate: '2026-12-24' });
    await sim.updateTask(created.id, { description: 'Beschreibung\n', priority: 'high' });
    await sim.completeTask(created.id);
    await sim.reopenTask(created.id);
    const otherList = sim.data().tasklists.find((l) => l.id !== task.tasklistId && l.status === 'new') as { id: number };
    await sim.moveTask(created.id, { tasklistId: otherList.id });
    const tagId = sim.data().tags[0]?.id as number;
    await sim.tagTask(created.id, [tagId]);
    await sim.untagTask(created.id, [tagId]);
    await sim.deleteTask(created.id);
    const events = receiver.received.map((r) => r.headers['x-projects-event']);
    expect(events).toEqual(['TASK.CREATED', 'TASK.UPDATED', 'TASK.COMPLETED', 'TASK.REOPENED', 'TASK.MOVED', 'TASK.TAGGED', 'TASK.UNTAGGED', 'TASK.DELETED']);
    for (const r of receiver.received) {
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['x-projects-signature']).toMatch(/^[0-9a-f]{64}$/);
      expect(r.headers['x-projects-signature']).toBe(hmac(TOKEN, r.raw));
    }
    const bodies = receiver.received.map((r) => JSON.parse(r.raw));
    const first = bodies[0];
    expect(Object.keys(first).sort()).toEqual(['eventCreator', 'project', 'task', 'taskList', 'users']);
    expect(first.event).toBeUndefined();
    expect(first.eventCreator).toEqual({ id: sim.credentials.userId, firstName: expect.any(String), lastName: expect.any(String), avatar: expect.any(String) });
    expect(first.task).toMatchObject({
      id: created.id,
      name: 'Prüfung 🚀 "quoted" <b>',
      description: '',
      priority: null,
      status: 'new',
      assignedUserIds: [task.assigneeUserIds[0]],
      parentId: 0,
      taskListId: task.tasklistId,
      startDate: null,
      dueDate: '2026-12-24',
      progress: 0,
      estimatedMinutes: 0,
      tags: [],
      projectId: sim.data().tasklists.find((l) => l.id === task.tasklistId)?.projectId,
      hasCustomFields: false,
    });
    expect(first.task.dateCreated).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(first.task.dateUpdated).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(first.taskList).toMatchObject({ id: task.tasklistId, milestoneId: expect.any(Number), templateId: null });
    expect(first.project).toMatchObject({ id: first.task.projectId, status: 'active', companyId: expect.any(Number) });
    expect(first.users.map((u: Json) => u.id)).toEqual([task.assigneeUserIds[0]]);
    expect(bodies[1].task).toMatchObject({ description: 'Beschreibung\n', priority: 'high' });
    expect(bodies[2].task.status).toBe('completed');
    expect(bodies[3].task.status).toBe('reopened');
    expect(bodies[4].task.taskListId).toBe(otherList.id);
    expect(bodies[5].task.tags).toEqual([{ id: tagId, name: expect.any(String), color: expect.stringMatching(/^[0-9a-f]{6}$/) }]);
    expect(bodies[6].task.tags).toEqual([]);
    // TASK.DELETED: id + eventCreator only (default quirk).
    expect(bodies[7]).toEqual({ id: created.id, eventCreator: first.eventCreator });
  });

  it('sends the full shape for TASK.DELETED with the deletedPayload=full quirk, and timestamps for dates when asked', async () => {
    const other = await startTeamworkSimulator({ seed: 5, quirks: { deletedPayload: 'full', webhookDates: 'timestamp' } });
    try {
      other.registerWebhook({ event: 'TASK.DELETED', url: `${receiver.url}/tw`, token: TOKEN });
      other.registerWebhook({ event: 'TASK.CREATED', url: `${receiver.url}/tw`, token: TOKEN });
      const created = await other.createTask({ name: 'x', dueDate: '2027-01-02' });
      await other.deleteTask(created.id);
      const [createdBody, deletedBody] = receiver.received.map((r) => JSON.parse(r.raw));
      expect(createdBody.task.dueDate).toBe('2027-01-02T00:00:00Z');
      expect(deletedBody.task).toMatchObject({ id: created.id, status: 'deleted' });
    } finally {
      await other.stop();
    }
  });

  it('sends a project-level hook only the changes of its project', async () => {
    const [p1, p2] = sim.data().projects;
    const list1 = sim.data().tasklists.find((l) => l.projectId === p1?.id && l.status === 'new') as { id: number };
    const list2 = sim.data().tasklists.find((l) => l.projectId === p2?.id && l.status === 'new') as { id: number };
    const hook = await api('POST', `/projects/api/v1/projects/${p1?.id}/webhooks.json`, { webhook: { event: 'TASK.CREATED', url: `${receiver.url}/p1` } });
    expect(hook.body.webhook.projectId).toBe(p1?.id);
    await sim.createTask({ name: 'in p2', tasklistId: list2.id });
    await sim.createTask({ name: 'in p1', tasklistId: list1.id });
    expect(receiver.received.map((r) => JSON.parse(r.raw).task.name)).toEqual(['in p1']);
    // No token: no signature header.
    expect(receiver.received[0]?.headers['x-projects-signature']).toBeUndefined();
  });
});

describe('form deliveries', () => {
  it('flattens v2 Form bodies to dotted PascalCase keys, signed over the form bytes', async () => {
    for (const event of ['TASK.UPDATED', 'TASK.DELETED'] as TaskEvent[]) {
      sim.registerWebhook({ event, url: `${receiver.url}/form`, version: 2, contentType: 'application/x-www-form-urlencoded', token: TOKEN });
    }
    const task = openTask();
    await sim.updateTask(task.id, { name: 'Ä & B = C' });
    await sim.deleteTask(task.id);
    const [updated, deleted] = receiver.received;
    expect(updated?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(updated?.headers['x-projects-signature']).toBe(hmac(TOKEN, updated?.raw ?? ''));
    const form = new URLSearchParams(updated?.raw);
    expect(form.get('Task.ID')).toBe(String(task.id));
    expect(form.get('Task.Name')).toBe('Ä & B = C');
    expect(form.get('Task.DateUpdated')).toMatch(/Z$/);
    expect(form.get('Task.TaskListID')).toBe(String(task.tasklistId));
    expect(form.get('Task.AssignedUserIDs.0')).toBe(String(task.assigneeUserIds[0]));
    expect(form.get('EventCreator.FirstName')).toEqual(expect.any(String));
    expect(form.get('Project.ID')).toEqual(expect.any(String));
    const del = new URLSearchParams(deleted?.raw);
    expect(del.get('ID')).toBe(String(task.id));
    expect(del.get('EventCreator.FirstName')).toEqual(expect.any(String));
    expect(del.get('EventCreator.LastName')).toEqual(expect.any(String));
    expect(del.get('Task.ID')).toBeNull();
    expect(deleted?.headers['x-projects-event']).toBe('TASK.DELETED');
  });

  it('sends legacy v1 form bodies with event, objectId, accountId, userId (+ projectId on delete)', async () => {
    sim.registerWebhook({ event: 'TASK.COMPLETED', url: `${receiver.url}/v1`, version: 1, token: TOKEN });
    sim.registerWebhook({ event: 'TASK.DELETED', url: `${receiver.url}/v1`, version: 1 });
    const task = openTask();
    await sim.completeTask(task.id);
    await sim.deleteTask(task.id);
    const [completed, deleted] = receiver.received;
    expect(Object.fromEntries(new URLSearchParams(completed?.raw))).toEqual({
      accountId: String(sim.credentials.accountId),
      event: 'TASK.COMPLETED',
      objectId: String(task.id),
      userId: String(sim.credentials.userId),
    });
    expect(completed?.headers['x-projects-signature']).toBe(hmac(TOKEN, completed?.raw ?? ''));
    expect(completed?.headers['x-projects-event']).toBe('TASK.COMPLETED');
    const projectId = sim.data().tasklists.find((l) => l.id === task.tasklistId)?.projectId;
    expect(new URLSearchParams(deleted?.raw).get('projectId')).toBe(String(projectId));
    expect(deleted?.headers['x-projects-signature']).toBeUndefined();
  });

  it('uses the other documented casing with v1FormCasing=pascal', async () => {
    const other = await startTeamworkSimulator({ seed: 5, quirks: { v1FormCasing: 'pascal' } });
    try {
      other.registerWebhook({ event: 'TASK.CREATED', url: `${receiver.url}/v1`, version: 1 });
      await other.createTask({ name: 'x' });
      expect([...new URLSearchParams(receiver.received[0]?.raw).keys()]).toEqual(['AccountID', 'Event', 'ObjectID', 'UserId']);
    } finally {
      await other.stop();
    }
  });
});

describe('delivery failures', () => {
  it('counts anything but 200 as not received and deactivates a hook after 3 discarded deliveries', async () => {
    const other = await startTeamworkSimulator({ seed: 5, webhookRetryDelaysMs: [5] });
    try {
      receiver.status = 201;
      const hook = other.registerWebhook({ event: 'TASK.UPDATED', url: `${receiver.url}/tw` });
      const task = other.data().tasks.find((t) => t.status === 'new') as TwTask;
      for (let i = 0; i < 3; i++) {
        await other.updateTask(task.id, { progress: i });
        await receiver.waitFor(2 * (i + 1));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(other.listWebhooks().find((h) => h.id === hook.id)?.status).toBe('inactive');
      const before = receiver.received.length;
      await other.updateTask(task.id, { progress: 99 });
      expect(receiver.received.length).toBe(before);
    } finally {
      await other.stop();
    }
  });
});
