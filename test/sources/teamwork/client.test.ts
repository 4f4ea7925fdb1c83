/**
 * TeamworkClient against the Teamwork simulator (simulators/teamwork): auth, single task (v3 and v1),
 * the updated-since walk to the end, deleted tasks, rate limiting, faults, and the webhooks API.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/http/index.ts';
import { TeamworkClient, type TaskPage } from '../../../src/sources/teamwork/client.ts';
import { mapV1TodoItem, mapV3Task } from '../../../src/sources/teamwork/map.ts';
import { startTeamworkSimulator, type TeamworkData, type TeamworkSimulator, type TwTask } from '../../../simulators/teamwork/index.ts';

/** Tasks a complete listing must contain: not deleted, in a list and project that exist. */
function listable(data: TeamworkData): TwTask[] {
  const lists = new Map(data.tasklists.map((l) => [l.id, l]));
  const projects = new Set(data.projects.map((p) => p.id));
  return data.tasks.filter((t) => t.status !== 'deleted' && projects.has(lists.get(t.tasklistId)?.projectId ?? -1));
}

async function collect(pages: AsyncIterable<TaskPage>): Promise<TaskPage[]> {
  const out: TaskPage[] = [];
  for await (const page of pages) out.push(page);
  return out;
}

const ids = (pages: TaskPage[]): Set<number> => new Set(pages.flatMap((p) => p.tasks.map((t) => Number(t.id))));
const LONG_AGO = new Date('2020-01-01T00:00:00Z');

describe('TeamworkClient (simulator)', () => {
  let sim: TeamworkSimulator;
  const clients: TeamworkClient[] = [];
  const client = (options: Partial<ConstructorParameters<typeof TeamworkClient>[0]> = {}): TeamworkClient => {
    const made = new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, clock: new FakeClock({ now: Date.now(), autoAdvance: true }), ...options });
    clients.push(made);
    return made;
  };

  beforeAll(async () => {
    sim = await startTeamworkSimulator({ seed: 11, limits: { perMinute: 1_000_000 } });
  });
  afterAll(async () => {
    await sim.stop();
  });
  afterEach(() => {
    sim.faults.reset();
    sim.requests.clear();
  });

  it('getTask: v3 with side-loads, Basic auth with the key and "x"', async () => {
    const data = sim.data();
    const source = data.tasks.find((t) => t.status !== 'deleted' && t.assigneeUserIds.length > 0 && t.tagIds.length > 0) as TwTask;
    const result = await client().getTask(String(source.id));
    expect(result).not.toBeNull();
    const task = mapV3Task(result!.task, result!.included, { baseUrl: sim.url });
    const list = data.tasklists.find((l) => l.id === source.tasklistId)!;
    const project = data.projects.find((p) => p.id === list.projectId)!;
    const user = data.users.find((u) => u.id === source.assigneeUserIds[0])!;
    expect(task).toMatchObject({
      id: String(source.id),
      title: source.name,
      status: source.status,
      projectId: String(project.id),
      projectName: project.name,
      tasklistId: String(list.id),
      tasklistName: list.name,
      updatedAt: new Date(source.updatedAt),
      url: `${sim.url}/app/tasks/${source.id}`,
    });
    expect(task.assignees).toContainEqual({ id: String(user.id), name: `${user.firstName} ${user.lastName}`, email: user.email });
    expect(task.tags).toEqual(source.tagIds.map((id) => data.tags.find((t) => t.id === id)!.name));

    const seen = sim.requests.entries.at(-1)!;
    expect(seen.path).toBe(`/projects/api/v3/tasks/${source.id}.json`);
    expect(seen.query.include).toBe('users,tags,tasklists,projects');
    expect(seen.headers.authorization).toBe(`Basic ${Buffer.from(`${sim.credentials.apiKey}:x`).toString('base64')}`);
  });

  it('getTask: a deleted task comes back with status "deleted"; an unknown id is null', async () => {
    const deleted = sim.data().tasks.find((t) => t.status === 'deleted') as TwTask;
    const result = await client().getTask(String(deleted.id));
    expect(result?.task.status).toBe('deleted');
    expect(mapV3Task(result!.task, result!.included, { baseUrl: null })).toMatchObject({ deleted: true, deletedAt: new Date(deleted.deletedAt!) });
    expect(await client().getTask('999999999')).toBeNull();
  });

  it('getTaskV1: the todo-item; null for a deleted task (v1 404s it)', async () => {
    const data = sim.data();
    const live = data.tasks.find((t) => t.status === 'completed') as TwTask;
    const item = await client().getTaskV1(String(live.id));
    expect(mapV1TodoItem(item!, { baseUrl: null })).toMatchObject({ id: String(live.id), title: live.name, status: 'completed', completedAt: new Date(live.completedAt!), updatedAt: new Date(live.updatedAt) });
    const deleted = data.tasks.find((t) => t.status === 'deleted') as TwTask;
    expect(await client().getTaskV1(String(deleted.id))).toBeNull();
  });

  it('a wrong API key fails with CONN_ERR_HTTP_AUTH at once', async () => {
    await expect(client({ apiKey: 'wrong' }).getTask('1')).rejects.toMatchObject({ code: 'CONN_ERR_HTTP_AUTH', retryable: false, status: 401 });
    expect(sim.requests.entries).toHaveLength(1);
  });

  it('listTasksUpdatedSince walks to the end: completed, completed lists and archived projects included', async () => {
    const data = sim.data();
    const pages = await collect(client({ pageSize: 20 }).listTasksUpdatedSince(LONG_AGO));
    const expected = listable(data);
    expect(expected.length).toBeGreaterThan(100);
    expect(ids(pages)).toEqual(new Set(expected.map((t) => t.id)));
    expect(expected.some((t) => t.status === 'completed')).toBe(true);
    expect(expected.some((t) => data.tasklists.find((l) => l.id === t.tasklistId)?.status === 'completed')).toBe(true);
    expect(expected.some((t) => data.projects.find((p) => p.id === data.tasklists.find((l) => l.id === t.tasklistId)?.projectId)?.status === 'archived')).toBe(true);
    expect(pages.at(-1)?.hasMore).toBe(false);
    expect(pages.slice(0, -1).every((p) => p.hasMore)).toBe(true);

    const first = sim.requests.entries[0]!;
    expect(first.path).toBe('/projects/api/v3/tasks.json');
    expect(first.query).toMatchObject({
      updatedAfter: '2019-12-31T23:59:59Z',
      includeCompletedTasks: 'true',
      showCompletedLists: 'true',
      includeArchivedProjects: 'true',
      include: 'users,tags,tasklists,projects',
      orderBy: 'updatedat',
      orderMode: 'asc',
      page: '1',
      pageSize: '20',
    });
    // The walk moves updatedAfter forward; pages never approach the 50,000-record cap.
    const keys = sim.requests.entries.map((r) => r.query.updatedAfter);
    expect(new Set(keys).size).toBeGreaterThan(3);
    expect(sim.requests.entries.every((r) => Number(r.query.page) * 20 < 50_000)).toBe(true);
  });

  it('asks for 500 tasks a page by default and includes a task updated exactly at `since`', async () => {
    const target = listable(sim.data()).sort((a, b) => a.updatedAt - b.updatedAt)[50]!;
    const pages = await collect(client().listTasksUpdatedSince(new Date(target.updatedAt)));
    expect(sim.requests.entries[0]?.query.pageSize).toBe('500');
    expect(ids(pages).has(target.id)).toBe(true);
  });

  it('a task edited during the walk does not push another one out of sight', async () => {
    const before = listable(sim.data());
    const walk = client({ pageSize: 10 }).listTasksUpdatedSince(LONG_AGO);
    const seen = new Set<number>();
    let edited = false;
    for await (const page of walk) {
      for (const task of page.tasks) seen.add(Number(task.id));
      if (!edited) {
        // Moves a task of the first page to the end of the order (newest update).
        await sim.updateTask(Number(page.tasks[0]!.id), { progress: 55 });
        edited = true;
      }
    }
    for (const task of before) expect(seen.has(task.id), `task ${task.id}`).toBe(true);
  });

  it('listTasksDeletedSince lists the deleted tasks', async () => {
    const deleted = sim.data().tasks.filter((t) => t.status === 'deleted');
    expect(deleted.length).toBeGreaterThan(0);
    const pages = await collect(client({ pageSize: 3 }).listTasksDeletedSince(LONG_AGO));
    expect(ids(pages)).toEqual(new Set(deleted.map((t) => t.id)));
    expect(pages.flatMap((p) => p.tasks).every((t) => t.status === 'deleted')).toBe(true);
    expect(sim.requests.entries[0]?.query.deletedAfter).toBe('2019-12-31T23:59:59Z');
  });

  it('a 429 storm and 20% 5xx lose nothing', async () => {
    sim.faults.set({ errorRate: 0.2, rateLimitBurst: 5 });
    const pages = await collect(client({ pageSize: 25, maxAttempts: 10 }).listTasksUpdatedSince(LONG_AGO));
    sim.faults.reset();
    expect(ids(pages)).toEqual(new Set(listable(sim.data()).map((t) => t.id)));
    const statuses = sim.requests.entries.map((r) => r.status);
    expect(statuses.filter((s) => s === 429)).toHaveLength(5);
    expect(statuses.some((s) => s >= 500)).toBe(true);
  });

  it('webhooks: create (v2 JSON with token), list, delete; deleting twice says false', async () => {
    const c = client();
    const id = await c.createWebhook({ event: 'TASK.UPDATED', url: 'https://hooks.example.com/webhooks/teamwork', token: 'tok-1' });
    expect(id).toMatch(/^\d+$/);
    const post = sim.requests.entries.find((r) => r.method === 'POST')!;
    expect(post.path).toBe('/projects/api/v1/webhooks.json');
    const stored = sim.listWebhooks().find((h) => String(h.id) === id)!;
    expect(stored).toMatchObject({ event: 'TASK.UPDATED', url: 'https://hooks.example.com/webhooks/teamwork', version: 2, contentType: 'application/json', token: 'tok-1' });
    expect((await c.listWebhooks()).map((h) => String(h.id))).toContain(id);
    expect(await c.deleteWebhook(id)).toBe(true);
    expect(await c.deleteWebhook(id)).toBe(false);
    expect(sim.listWebhooks().some((h) => String(h.id) === id)).toBe(false);
  });
});

describe('TeamworkClient rate limiting (simulator)', () => {
  let sim: TeamworkSimulator;
  beforeAll(async () => {
    sim = await startTeamworkSimulator({ seed: 12, limits: { perMinute: 3 } });
  });
  afterAll(async () => {
    await sim.stop();
  });

  it('spends at most requestsPerMinute (default 120) per minute, on its clock', async () => {
    const clock = new FakeClock({ now: Date.now() });
    expect(new TeamworkClient({ baseUrl: sim.url, apiKey: 'k', clock }).limiter.stats().windows).toEqual([{ limit: 120, intervalMs: 60_000, used: 0 }]);

    const slow = new TeamworkClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k', clock, requestsPerMinute: 2 });
    // Two slots are free now; a third acquisition must wait for the window to move on.
    const a = await slow.limiter.acquire();
    const b = await slow.limiter.acquire();
    a();
    b();
    let third = false;
    const pending = slow.limiter.acquire().then((release) => {
      third = true;
      release();
    });
    await clock.advance(59_000);
    expect(third).toBe(false);
    await clock.advance(1_000);
    await pending;
    expect(third).toBe(true);
  });

  it('slows down when x-ratelimit-remaining runs low', async () => {
    const clock = new FakeClock({ now: Date.now() });
    const c = new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, clock });
    const task = sim.data().tasks[0]!;
    await c.getTask(String(task.id));
    // The simulator allows 3 a minute: 2 remain after this call, at the low-water mark (at least 2), so
    // the rest of the minute is spread over the 2 remaining plus one: a 20 s pause for everyone.
    expect(sim.requests.entries.at(-1)?.headers).toBeDefined();
    expect(c.limiter.stats().pausedUntil).toBe(clock.now() + 20_000);
  });
});
