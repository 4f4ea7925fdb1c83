/**
 * backfillTeamwork's own rules, against a small Fastify stand-in for the v3 task list (the simulator has
 * no switch for the cases here: a refused `deletedAfter`, a page that fails mid-walk, many tasks in one
 * second). The end-to-end backfill against the simulator is in integration.test.ts.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/http/index.ts';
import { createLogger } from '../../../src/log.ts';
import { QueueEvent } from '../../../src/model.ts';
import { backfillTeamwork, SNAPSHOT_EVENT } from '../../../src/sources/teamwork/backfill.ts';
import { TeamworkClient } from '../../../src/sources/teamwork/client.ts';
import { handleTeamworkEvent } from '../../../src/sources/teamwork/handler.ts';
import type { BackfillPage } from '../../../src/sources/source.ts';

interface FakeTask {
  id: number;
  updatedAt: string;
  status: 'new' | 'completed' | 'deleted';
  deletedAt: string | null;
  assignees: number[];
}

interface FakeOptions {
  tasks: FakeTask[];
  /** Answer 400 to any request with deletedAfter. */
  refuseDeletedAfter?: boolean;
  /** Status to answer instead of the page, by request number (1-based) or query. */
  failWhen?: (n: number, query: Record<string, string>) => number | null;
}

const servers: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A v3 task list: strict updatedAfter/deletedAfter, updatedat ascending, page/pageSize, hasMore. */
async function fakeTeamwork(options: FakeOptions): Promise<{ url: string; queries: Array<Record<string, string>> }> {
  const app = Fastify({ logger: false });
  servers.push(app);
  const queries: Array<Record<string, string>> = [];
  app.get('/projects/api/v3/tasks.json', async (request, reply) => {
    const q = request.query as Record<string, string>;
    queries.push(q);
    const failed = options.failWhen?.(queries.length, q) ?? null;
    if (failed !== null) return reply.code(failed).send({ errors: [{ title: 'failure' }] });
    if (q.deletedAfter !== undefined && options.refuseDeletedAfter) return reply.code(400).send({ errors: [{ title: 'Bad Request', detail: 'unknown parameter deletedAfter' }] });
    let rows = options.tasks;
    if (q.deletedAfter !== undefined) rows = rows.filter((t) => t.status === 'deleted' && Date.parse(t.deletedAt!) > Date.parse(q.deletedAfter!));
    else rows = rows.filter((t) => t.status !== 'deleted');
    if (q.updatedAfter !== undefined) rows = rows.filter((t) => Date.parse(t.updatedAt) > Date.parse(q.updatedAfter!));
    rows = [...rows].sort((a, b) => Date.parse(a.updatedAt) - Date.parse(b.updatedAt) || a.id - b.id);
    const page = Number(q.page);
    const size = Number(q.pageSize);
    const slice = rows.slice((page - 1) * size, page * size);
    return {
      tasks: slice.map((t) => ({ id: t.id, name: `Task ${t.id}`, status: t.status, updatedAt: t.updatedAt, deletedAt: t.deletedAt, tasklist: { id: 10, type: 'tasklists' }, assignees: t.assignees.map((id) => ({ id, type: 'users' })), tags: [] })),
      included: {
        users: { '1': { id: 1, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }, '2': { id: 2, firstName: 'Unused', lastName: 'User', email: 'u@example.com' } },
        tasklists: { '10': { id: 10, name: 'List', project: { id: 20, type: 'projects' } } },
        projects: { '20': { id: 20, name: 'Project' } },
      },
      meta: { page: { pageOffset: page - 1, pageSize: size, hasMore: page * size < rows.length } },
    };
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, queries };
}

function task(id: number, updatedAt: string, status: FakeTask['status'] = 'new', assignees: number[] = []): FakeTask {
  return { id, updatedAt, status, deletedAt: status === 'deleted' ? updatedAt : null, assignees };
}

function sinkLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'info', console: false, destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  return { log, lines };
}

async function run(url: string, since: Date, now: Date, pageSize = 2): Promise<BackfillPage[]> {
  const client = new TeamworkClient({ baseUrl: url, apiKey: 'k', pageSize, maxAttempts: 1, clock: new FakeClock({ now: now.getTime(), autoAdvance: true }) });
  const pages: BackfillPage[] = [];
  for await (const page of backfillTeamwork({ client, since, log: sinkLogger().log, now: () => now })) pages.push(page);
  return pages;
}

const SINCE = new Date('2026-11-01T00:00:00Z');
const NOW = new Date('2026-11-06T12:00:00Z');

describe('backfillTeamwork', () => {
  it('yields deleted tasks first (newestUpdate null), then updates with the newest update so far', async () => {
    const { url } = await fakeTeamwork({
      tasks: [
        task(1, '2026-11-02T10:00:00Z', 'new', [1]),
        task(2, '2026-11-03T10:00:00Z', 'completed'),
        task(3, '2026-11-04T10:00:00Z'),
        task(4, '2026-11-05T10:00:00Z', 'deleted'),
        task(5, '2026-10-01T10:00:00Z'), // before `since`
      ],
    });
    const pages = await run(url, SINCE, NOW);
    expect(pages.map((p) => [p.events.map((e) => e.entityKey), p.newestUpdate?.toISOString() ?? null])).toEqual([
      [['task:4'], null],
      [['task:1', 'task:2'], '2026-11-03T10:00:00.000Z'],
      [['task:3'], '2026-11-04T10:00:00.000Z'],
    ]);
    const event = pages[1]!.events[0]!;
    expect(QueueEvent.safeParse(event).success).toBe(true);
    expect(event).toMatchObject({ source: 'teamwork', type: SNAPSHOT_EVENT, origin: 'backfill', entityKey: 'task:1' });
    // The snapshot carries only the side-loads its task refers to, and maps without the API.
    const payload = event.payload as { included: { users: Record<string, unknown> } };
    expect(Object.keys(payload.included.users)).toEqual(['1']);
    const changes = await handleTeamworkEvent(event, { client: null, baseUrl: 'https://acme.teamwork.com' }, { log: sinkLogger().log, now: () => NOW });
    expect(changes.tasks[0]).toMatchObject({ id: '1', assignees: [{ id: '1', name: 'Ada Lovelace', email: 'ada@example.com' }], tasklistName: 'List', projectName: 'Project', url: 'https://acme.teamwork.com/app/tasks/1' });
    const deleted = await handleTeamworkEvent(pages[0]!.events[0]!, { client: null, baseUrl: null }, { log: sinkLogger().log, now: () => NOW });
    expect(deleted.tasks[0]).toMatchObject({ id: '4', deleted: true, deletedAt: new Date('2026-11-05T10:00:00Z') });
  });

  it('never reports a checkpoint later than the start of the deleted pass', async () => {
    const { url } = await fakeTeamwork({ tasks: [task(1, '2026-11-02T10:00:00Z'), task(2, '2026-11-07T09:00:00Z')] });
    const pages = await run(url, SINCE, NOW);
    expect(pages.at(-1)?.newestUpdate).toEqual(NOW);
    expect(pages.flatMap((p) => p.events).map((e) => e.entityKey)).toEqual(['task:1', 'task:2']);
  });

  it('skips the deleted pass with a warning when Teamwork refuses deletedAfter', async () => {
    const { url } = await fakeTeamwork({ tasks: [task(1, '2026-11-02T10:00:00Z'), task(2, '2026-11-07T09:00:00Z')], refuseDeletedAfter: true });
    const client = new TeamworkClient({ baseUrl: url, apiKey: 'k', maxAttempts: 1 });
    const { log, lines } = sinkLogger();
    const pages: BackfillPage[] = [];
    for await (const page of backfillTeamwork({ client, since: SINCE, log, now: () => NOW })) pages.push(page);
    expect(pages.flatMap((p) => p.events).map((e) => e.entityKey)).toEqual(['task:1', 'task:2']);
    // No deleted pass ran, so nothing bounds the checkpoint.
    expect(pages.at(-1)?.newestUpdate?.toISOString()).toBe('2026-11-07T09:00:00.000Z');
    expect(lines.some((l) => l.level === 'warn' && /deletedAfter/.test(String(l.msg)))).toBe(true);
  });

  it('a page that fails is never yielded; the pages before it are', async () => {
    const tasks = [1, 2, 3, 4, 5].map((i) => task(i, `2026-11-0${i + 1}T10:00:00Z`));
    const { url } = await fakeTeamwork({ tasks, failWhen: (n) => (n === 3 ? 503 : null) });
    const client = new TeamworkClient({ baseUrl: url, apiKey: 'k', pageSize: 2, maxAttempts: 1 });
    const pages: BackfillPage[] = [];
    const walk = async () => {
      for await (const page of backfillTeamwork({ client, since: SINCE, log: sinkLogger().log, now: () => NOW })) pages.push(page);
    };
    await expect(walk()).rejects.toMatchObject({ code: 'CONN_ERR_HTTP_SERVER', retryable: true });
    // Request 1: deleted pass (empty); request 2: tasks 1-2; request 3 failed.
    expect(pages.map((p) => p.events.map((e) => e.entityKey))).toEqual([[], ['task:1', 'task:2']]);
    expect(pages.at(-1)?.newestUpdate?.toISOString()).toBe('2026-11-03T10:00:00.000Z');
  });

  it('a deleted pass that fails for another reason fails the backfill', async () => {
    const { url } = await fakeTeamwork({ tasks: [task(1, '2026-11-02T10:00:00Z')], failWhen: (_n, q) => (q.deletedAfter !== undefined ? 500 : null) });
    const client = new TeamworkClient({ baseUrl: url, apiKey: 'k', maxAttempts: 1 });
    const pages: BackfillPage[] = [];
    const walk = async () => {
      for await (const page of backfillTeamwork({ client, since: SINCE, log: sinkLogger().log, now: () => NOW })) pages.push(page);
    };
    await expect(walk()).rejects.toMatchObject({ code: 'CONN_ERR_HTTP_SERVER' });
    expect(pages).toEqual([]);
  });

  it('walks through many tasks in one second without losing or repeating any', async () => {
    const tasks = [
      ...Array.from({ length: 7 }, (_, i) => task(100 + i, '2026-11-02T10:00:00Z')),
      ...Array.from({ length: 5 }, (_, i) => task(200 + i, `2026-11-02T10:00:0${i + 1}Z`)),
    ];
    const { url, queries } = await fakeTeamwork({ tasks });
    const pages = await run(url, SINCE, NOW, 3);
    const keys = pages.flatMap((p) => p.events.map((e) => e.entityKey));
    expect(keys.sort()).toEqual(tasks.map((t) => `task:${t.id}`).sort());
    expect(new Set(keys).size).toBe(keys.length);
    // The second-long run of tasks was paged with page numbers, then the key moved on.
    const updated = queries.filter((q) => q.updatedAfter !== undefined);
    expect(updated.some((q) => q.page === '3')).toBe(true);
    expect(new Set(updated.map((q) => q.updatedAfter)).size).toBeGreaterThan(1);
  });
});
