/**
 * Contract tests of the Teamwork simulator's REST API against reference/teamwork.md: auth, rate-limit
 * headers, the v3 list (hidden work, filters, paging, ordering, sideloads), the v3 and v1 single task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../simulators/common.ts';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import type { TwTask } from '../../simulators/teamwork/model.ts';
import type { Json } from './common-receiver.ts';

let sim: TeamworkSimulator;
let auth: string;

beforeAll(async () => {
  sim = await startTeamworkSimulator({ seed: 11, limits: { perMinute: 100_000 } });
  auth = `Basic ${Buffer.from(`${sim.credentials.apiKey}:anything`).toString('base64')}`;
});
afterAll(async () => {
  await sim.stop();
});

async function get(path: string, headers: Record<string, string> = { authorization: auth }): Promise<{ status: number; headers: Headers; body: Json }> {
  const response = await fetch(`${sim.url}${path}`, { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? null : JSON.parse(text) };
}

/** Walks every page of a v3 list and returns the tasks. */
async function all(query: string): Promise<Json[]> {
  const out: Json[] = [];
  for (let page = 1; ; page++) {
    const { status, body } = await get(`/projects/api/v3/tasks.json?${query}&page=${page}&pageSize=37`);
    expect(status).toBe(200);
    out.push(...body.tasks);
    if (!body.meta.page.hasMore) return out;
  }
}

const ISO_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const lists = () => new Map(sim.data().tasklists.map((l) => [l.id, l]));
const projects = () => new Map(sim.data().projects.map((p) => [p.id, p]));

describe('auth', () => {
  it('accepts the API key as Basic user name with any password, and 401s otherwise', async () => {
    expect((await get('/projects/api/v3/tasks.json')).status).toBe(200);
    const other = `Basic ${Buffer.from(`${sim.credentials.apiKey}:`).toString('base64')}`;
    expect((await get('/projects/api/v3/tasks.json', { authorization: other })).status).toBe(200);
    const missing = await get('/projects/api/v3/tasks.json', {});
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Basic/);
    expect((await get('/tasks/1000001.json', { authorization: `Basic ${Buffer.from('wrong:x').toString('base64')}` })).status).toBe(401);
    expect((await get('/projects/api/v3/tasks.json', { authorization: `Bearer ${sim.credentials.apiKey}` })).status).toBe(401);
  });

  it('sends the rate-limit headers on every API response', async () => {
    const a = await get('/projects/api/v3/tasks.json?pageSize=1');
    const b = await get('/tasks/1000002.json');
    expect(a.headers.get('x-ratelimit-limit')).toBe('100000');
    expect(Number(a.headers.get('x-ratelimit-remaining'))).toBeGreaterThan(Number(b.headers.get('x-ratelimit-remaining')));
  });
});

describe('rate limit', () => {
  it('answers 429 with Limit/Remaining/Reset once the per-minute budget is spent, and recovers next window', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const small = await startTeamworkSimulator({ seed: 1, clock, data: { tasks: 5 }, limits: { perMinute: 3, windowScale: 0.005 } });
    try {
      const h = { authorization: `Basic ${Buffer.from(`${small.credentials.apiKey}:x`).toString('base64')}` };
      const statuses: number[] = [];
      let limited: Response | undefined;
      for (let i = 0; i < 4; i++) {
        const r = await fetch(`${small.url}/projects/api/v3/tasks.json`, { headers: h });
        statuses.push(r.status);
        if (r.status === 429) limited = r;
        await r.arrayBuffer();
      }
      expect(statuses).toEqual([200, 200, 200, 429]);
      expect(limited?.headers.get('x-ratelimit-limit')).toBe('3');
      expect(limited?.headers.get('x-ratelimit-remaining')).toBe('0');
      // The window opened with the first request and lasts 60 s * 0.005 = 0.3 s; reset is epoch seconds.
      expect(Number(limited?.headers.get('x-ratelimit-reset'))).toBe(Math.ceil((clock.now() + 300) / 1000));
      clock.advance(299);
      expect((await fetch(`${small.url}/projects/api/v3/tasks.json`, { headers: h })).status).toBe(429);
      clock.advance(1);
      const next = await fetch(`${small.url}/projects/api/v3/tasks.json`, { headers: h });
      expect(next.status).toBe(200);
      expect(next.headers.get('x-ratelimit-remaining')).toBe('2');
    } finally {
      await small.stop();
    }
  });
});

describe('v3 task list', () => {
  it('hides completed tasks, tasks in completed lists, archived projects and deleted tasks by default', async () => {
    const tasks = await all('');
    const data = sim.data();
    const l = lists();
    const p = projects();
    const expected = data.tasks.filter((t) => {
      const list = l.get(t.tasklistId);
      return t.status !== 'completed' && t.status !== 'deleted' && list?.status !== 'completed' && p.get(list?.projectId ?? 0)?.status !== 'archived';
    });
    expect(tasks.map((t) => t.id).sort()).toEqual(expected.map((t) => t.id).sort());
    expect(expected.length).toBeGreaterThan(10);
  });

  it('shows each kind of hidden work only with its own flag', async () => {
    const data = sim.data();
    const l = lists();
    const p = projects();
    const everything = await all('includeCompletedTasks=true&showCompletedLists=true&includeArchivedProjects=true');
    expect(everything.length).toBe(data.tasks.filter((t) => t.status !== 'deleted').length);
    const completed = await all('includeCompletedTasks=true');
    expect(completed.some((t) => t.status === 'completed')).toBe(true);
    expect(completed.every((t) => l.get(t.tasklist.id)?.status !== 'completed')).toBe(true);
    const inCompletedLists = await all('showCompletedLists=true');
    expect(inCompletedLists.some((t) => l.get(t.tasklist.id)?.status === 'completed')).toBe(true);
    expect(inCompletedLists.every((t) => t.status !== 'completed')).toBe(true);
    const archived = await all('includeArchivedProjects=true');
    expect(archived.some((t) => p.get(l.get(t.tasklist.id)?.projectId ?? 0)?.status === 'archived')).toBe(true);
  });

  it('returns deleted tasks only for deletedAfter (or showDeleted)', async () => {
    const data = sim.data();
    const deleted = data.tasks.filter((t) => t.status === 'deleted');
    expect(deleted.length).toBeGreaterThan(0);
    const flags = 'includeCompletedTasks=true&showCompletedLists=true&includeArchivedProjects=true';
    const since = new Date(Math.min(...deleted.map((t) => t.deletedAt as number)) - 1000).toISOString();
    const rows = await all(`${flags}&deletedAfter=${since}`);
    expect(rows.map((t) => t.id).sort()).toEqual(deleted.map((t) => t.id).sort());
    for (const row of rows) {
      expect(row.status).toBe('deleted');
      expect(row.deletedAt).toMatch(ISO_Z);
      expect(typeof row.deletedBy).toBe('number');
    }
    const shown = await all(`${flags}&showDeleted=true`);
    expect(shown.length).toBe(data.tasks.length);
  });

  it('filters updatedAfter strictly and rejects bad times', async () => {
    const data = sim.data();
    const times = [...new Set(data.tasks.map((t) => t.updatedAt))].sort((a, b) => a - b);
    const pivot = times[Math.floor(times.length / 2)] as number;
    const flags = 'includeCompletedTasks=true&showCompletedLists=true&includeArchivedProjects=true';
    const rows = await all(`${flags}&updatedAfter=${encodeURIComponent(new Date(pivot).toISOString().replace('.000Z', 'Z'))}`);
    const expected = data.tasks.filter((t) => t.status !== 'deleted' && t.updatedAt > pivot);
    expect(rows.map((t) => t.id).sort()).toEqual(expected.map((t) => t.id).sort());
    expect((await get('/projects/api/v3/tasks.json?updatedAfter=yesterday')).status).toBe(400);
    expect((await get('/projects/api/v3/tasks.json?updatedAfter=2007-09-30T00:00:00Z')).status).toBe(400);
  });

  it('pages with meta.page {pageOffset, pageSize, count, hasMore} and caps pageSize at 500', async () => {
    const total = (await all('includeCompletedTasks=true')).length;
    const first = await get('/projects/api/v3/tasks.json?includeCompletedTasks=true&page=1&pageSize=10');
    expect(first.body.meta.page).toEqual({ pageOffset: 0, pageSize: 10, count: 11, hasMore: true });
    const lastPage = Math.ceil(total / 10);
    const last = await get(`/projects/api/v3/tasks.json?includeCompletedTasks=true&page=${lastPage}&pageSize=10`);
    expect(last.body.meta.page).toEqual({ pageOffset: lastPage - 1, pageSize: 10, count: total, hasMore: false });
    const noCount = await get('/projects/api/v3/tasks.json?pageSize=10&skipCounts=true');
    expect(noCount.body.meta.page.count).toBeUndefined();
    expect((await get('/projects/api/v3/tasks.json?pageSize=500')).status).toBe(200);
    const tooBig = await get('/projects/api/v3/tasks.json?pageSize=501');
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.errors[0].detail).toMatch(/pageSize/);
    const defaults = await get('/projects/api/v3/tasks.json');
    expect(defaults.body.meta.page.pageSize).toBe(50);
  });

  it('orders by orderBy/orderMode with id as the tie-breaker', async () => {
    const desc = await all('includeCompletedTasks=true&orderBy=updatedat&orderMode=desc');
    for (let i = 1; i < desc.length; i++) {
      const a = Date.parse(desc[i - 1].updatedAt);
      const b = Date.parse(desc[i].updatedAt);
      expect(a > b || (a === b && desc[i - 1].id < desc[i].id)).toBe(true);
    }
    const due = await all('orderBy=duedate');
    const dates = due.map((t) => t.dueDate);
    const firstNull = dates.indexOf(null);
    if (firstNull >= 0) expect(dates.slice(firstNull).every((d) => d === null)).toBe(true);
    const nonNull = dates.filter((d) => d !== null);
    expect([...nonNull].sort()).toEqual(nonNull);
    expect((await get('/projects/api/v3/tasks.json?orderBy=colour')).status).toBe(400);
  });

  it('side-loads users, tags, tasklists and projects as maps keyed by string id', async () => {
    const { body } = await get('/projects/api/v3/tasks.json?include=users,tags,tasklists,projects&pageSize=100&includeCompletedTasks=true');
    const { users, tags, tasklists, projects: projs } = body.included;
    for (const task of body.tasks) {
      for (const a of task.assignees.filter((x: Json) => x.type === 'users')) expect(users[String(a.id)].id).toBe(a.id);
      for (const t of task.tags) {
        expect(t.type).toBe('tags');
        expect(tags[String(t.id)].name).toEqual(expect.any(String));
      }
      const list = tasklists[String(task.tasklist.id)];
      expect(list.project.type).toBe('projects');
      expect(projs[String(list.project.id)].id).toBe(list.project.id);
      expect(users[String(task.createdBy)]).toBeDefined();
    }
    const anyUser = Object.values(users)[0] as Json;
    expect(Object.keys(anyUser)).toEqual(expect.arrayContaining(['id', 'firstName', 'lastName', 'email', 'company']));
    const noInclude = await get('/projects/api/v3/tasks.json?pageSize=1');
    expect(noInclude.body.included).toBeUndefined();
  });

  it('lists by project and tasklist path and by ids', async () => {
    const list = sim.data().tasklists.find((l) => l.status === 'new') as { id: number; projectId: number };
    const byList = await get(`/projects/api/v3/tasklists/${list.id}/tasks.json?pageSize=500&includeCompletedTasks=true`);
    expect(byList.body.tasks.length).toBeGreaterThan(0);
    expect(byList.body.tasks.every((t: Json) => t.tasklist.id === list.id)).toBe(true);
    const byProject = await get(`/projects/api/v3/projects/${list.projectId}/tasks.json?pageSize=500`);
    const ids = new Set(sim.data().tasklists.filter((l) => l.projectId === list.projectId).map((l) => l.id));
    expect(byProject.body.tasks.every((t: Json) => ids.has(t.tasklist.id))).toBe(true);
    const some = byList.body.tasks.slice(0, 2).map((t: Json) => t.id);
    const byIds = await get(`/projects/api/v3/tasks.json?ids=${some.join(',')}&includeCompletedTasks=true`);
    expect(byIds.body.tasks.map((t: Json) => t.id).sort()).toEqual(some.sort());
  });
});

describe('v3 single task', () => {
  const pick = (f: (t: TwTask) => boolean) => sim.data().tasks.find(f) as TwTask;

  it('has the documented fields and types, and no projectId', async () => {
    const task = pick((t) => t.parentTaskId !== null && t.assigneeUserIds.length > 0 && t.status !== 'deleted');
    const { status, body } = await get(`/projects/api/v3/tasks/${task.id}.json?include=tasklists`);
    expect(status).toBe(200);
    const t = body.task;
    expect(t).toMatchObject({
      id: task.id,
      name: task.name,
      tasklist: { id: task.tasklistId, type: 'tasklists' },
      parentTask: { id: task.parentTaskId, type: 'tasks' },
      status: task.status,
      estimateMinutes: task.estimateMinutes,
    });
    expect(t.assignees).toEqual(expect.arrayContaining(task.assigneeUserIds.map((id) => ({ id, type: 'users' }))));
    expect(t.createdAt).toMatch(ISO_Z);
    expect(t.updatedAt).toMatch(ISO_Z);
    expect(typeof t.progress).toBe('number');
    expect(t.projectId).toBeUndefined();
    expect(body.included.tasklists[String(task.tasklistId)].id).toBe(task.tasklistId);
    if (t.dueDate !== null) expect(t.dueDate).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect([null, 'low', 'medium', 'high']).toContain(t.priority);
  });

  it('returns a deleted task with status deleted, 404 with hideDeleted=true, 404 for an unknown id', async () => {
    const task = pick((t) => t.status === 'deleted');
    const shown = await get(`/projects/api/v3/tasks/${task.id}.json`);
    expect(shown.status).toBe(200);
    expect(shown.body.task.status).toBe('deleted');
    expect((await get(`/projects/api/v3/tasks/${task.id}.json?hideDeleted=true`)).status).toBe(404);
    expect((await get('/projects/api/v3/tasks/999.json')).status).toBe(404);
  });
});

describe('v3 options', () => {
  it('honours sparse fieldsets and fills subTaskIds with includeRelatedTasks', async () => {
    const data = sim.data();
    const parent = data.tasks.find((t) => t.status !== 'deleted' && data.tasks.some((c) => c.parentTaskId === t.id && c.status === 'new')) as TwTask;
    const sparse = await get(`/projects/api/v3/tasks/${parent.id}.json?fields[tasks]=name,status`);
    expect(Object.keys(sparse.body.task).sort()).toEqual(['id', 'name', 'status']);
    const related = await get(`/projects/api/v3/tasks/${parent.id}.json?includeRelatedTasks=true`);
    const open = data.tasks.filter((c) => c.parentTaskId === parent.id && c.status !== 'deleted' && c.status !== 'completed').map((c) => c.id);
    expect([...related.body.task.subTaskIds].sort()).toEqual(open.sort());
    expect(related.body.task.predecessors).toEqual([]);
    expect((await get(`/projects/api/v3/tasks/${parent.id}.json`)).body.task.subTaskIds).toBeUndefined();
  });
});

describe('v1 single task', () => {
  const pick = (f: (t: TwTask) => boolean) => sim.data().tasks.find(f) as TwTask;

  it('wraps the todo-item with STATUS OK, quotes ids, and writes YYYYMMDD dates', async () => {
    const task = pick((t) => t.assigneeUserIds.length > 1 && t.dueDate !== null && t.status !== 'deleted');
    const { status, body } = await get(`/tasks/${task.id}.json`);
    expect(status).toBe(200);
    expect(body.STATUS).toBe('OK');
    const item = body['todo-item'];
    expect(item.id).toBe(String(task.id));
    expect(item.content).toBe(task.name);
    expect(item['todo-list-id']).toBe(String(task.tasklistId));
    expect(typeof item['project-id']).toBe('string');
    expect(item['due-date']).toBe((task.dueDate as string).replace(/-/g, ''));
    expect(item['due-date']).toMatch(/^\d{8}$/);
    expect(item['last-changed-on']).toMatch(ISO_Z);
    expect(item['created-on']).toMatch(ISO_Z);
    expect(item['responsible-party-ids']).toBe(task.assigneeUserIds.join(','));
    expect(item['responsible-party-names'].split('|')).toHaveLength(task.assigneeUserIds.length);
    expect(item.parentTaskId).toBe(task.parentTaskId === null ? '' : String(task.parentTaskId));
    expect(item.priority).toBe(task.priority ?? '');
    expect(item.completed).toBe(task.status === 'completed');
  });

  it('leaves responsible-party-ids out when nobody is assigned and writes "" for missing dates', async () => {
    const task = pick((t) => t.assigneeUserIds.length === 0 && t.startDate === null && t.status !== 'deleted');
    const item = (await get(`/tasks/${task.id}.json`)).body['todo-item'];
    expect('responsible-party-ids' in item).toBe(false);
    expect('responsible-party-names' in item).toBe(false);
    expect(item['start-date']).toBe('');
  });

  it('adds completed_on for completed tasks and 404s for deleted ones', async () => {
    const done = pick((t) => t.status === 'completed');
    const item = (await get(`/tasks/${done.id}.json`)).body['todo-item'];
    expect(item.completed).toBe(true);
    expect(item.completed_on).toMatch(ISO_Z);
    const gone = pick((t) => t.status === 'deleted');
    const r = await get(`/tasks/${gone.id}.json`);
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ MESSAGE: 'Not found', STATUS: 'Error' });
  });

  it('can show deleted tasks with status "deleted" instead (quirk)', async () => {
    const other = await startTeamworkSimulator({ seed: 11, quirks: { v1DeletedTask: 'status' } });
    try {
      const gone = other.data().tasks.find((t) => t.status === 'deleted') as TwTask;
      const h = { authorization: `Basic ${Buffer.from(`${other.credentials.apiKey}:x`).toString('base64')}` };
      const body = (await (await fetch(`${other.url}/tasks/${gone.id}.json`, { headers: h })).json()) as Json;
      expect(body['todo-item'].status).toBe('deleted');
    } finally {
      await other.stop();
    }
  });
});
