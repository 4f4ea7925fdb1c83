/**
 * handleTeamworkEvent's decisions, one test per branch: without the API (payload only), and with the
 * simulator's API (404, deleted, lagging, restored). The full webhook flow is in integration.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../../src/db/sqlite/sqlite-database.ts';
import { FakeClock } from '../../../src/http/index.ts';
import { createLogger } from '../../../src/log.ts';
import type { QueueEvent } from '../../../src/model.ts';
import { TeamworkClient } from '../../../src/sources/teamwork/client.ts';
import { handleTeamworkEvent, type TeamworkHandlerDeps } from '../../../src/sources/teamwork/handler.ts';
import { parseTeamworkDelivery } from '../../../src/sources/teamwork/webhook.ts';
import { startTeamworkSimulator, type TeamworkSimulator, type TwTask } from '../../../simulators/teamwork/index.ts';
import { FORM_TYPE, delivery, fixtureBytes, fixtureJson } from './fixtures.ts';

const log = createLogger({ level: 'silent', console: false });
const context = { log, now: () => new Date() };
const RECEIVED = new Date('2026-11-06T12:00:00.000Z');

function eventFrom(body: string | Buffer, options: { event?: string; contentType?: string; receivedAt?: Date } = {}): QueueEvent {
  const parsed = parseTeamworkDelivery(delivery({ body, event: options.event, contentType: options.contentType, receivedAt: options.receivedAt ?? RECEIVED }));
  expect(parsed.events).toHaveLength(1);
  return parsed.events[0]!;
}

/** A v2 JSON body of the thin fixture (complete but for creators) with `dateUpdated` set to `value` (absent for undefined). */
function versioned(value: unknown, patch: Record<string, unknown> = {}): string {
  const body = fixtureJson<{ task: Record<string, unknown> }>('v2-json-task-updated-thin.json');
  if (value === undefined) delete body.task.dateUpdated;
  else body.task.dateUpdated = value;
  Object.assign(body.task, patch);
  return JSON.stringify(body);
}

async function memoryDb(): Promise<SqliteDatabase> {
  const db = new SqliteDatabase({ file: ':memory:' });
  await db.migrate();
  return db;
}

function withTaskId(fixture: string, id: number): string {
  const body = fixtureJson<{ task?: { id: number }; id?: number }>(fixture);
  if (body.task) body.task.id = id;
  else body.id = id;
  return JSON.stringify(body);
}

describe('handleTeamworkEvent without the API', () => {
  const deps: TeamworkHandlerDeps = { client: null, baseUrl: 'https://acme.teamwork.com' };

  it('stores a complete v2 body as it is', async () => {
    const changes = await handleTeamworkEvent(eventFrom(fixtureBytes('v2-json-task-created.json'), { event: 'TASK.CREATED' }), deps, context);
    expect(changes.tasks).toHaveLength(1);
    expect(changes.tasks[0]).toMatchObject({ id: '2468013', title: 'Draft the Q4 board report', createdBy: { email: 'ada@example.com' } });
    expect(changes.deletedTasks).toEqual([]);
  });

  it('stores what a thin v2 body has', async () => {
    const changes = await handleTeamworkEvent(eventFrom(fixtureBytes('v2-json-task-updated-thin.json'), { event: 'TASK.COMPLETED' }), deps, context);
    expect(changes.tasks[0]).toMatchObject({ status: 'completed', completedAt: null, createdBy: null, assignees: [{ id: '238861', name: null, email: null }] });
  });

  it('refuses a v1 body (an id and nothing else) with CONN_ERR_SOURCE_UNCONFIGURED', async () => {
    const event = eventFrom(fixtureBytes('v1-form-task-updated.txt'), { contentType: FORM_TYPE });
    await expect(handleTeamworkEvent(event, deps, context)).rejects.toMatchObject({ code: 'CONN_ERR_SOURCE_UNCONFIGURED', retryable: false });
  });

  it('TASK.DELETED with only an id: a deletion at the delivery time', async () => {
    for (const [body, contentType] of [
      [fixtureBytes('v2-json-task-deleted.json'), undefined],
      [fixtureBytes('v2-form-task-deleted.txt'), FORM_TYPE],
      [fixtureBytes('v1-form-task-deleted.txt'), FORM_TYPE],
    ] as const) {
      const changes = await handleTeamworkEvent(eventFrom(body, { event: 'TASK.DELETED', contentType }), deps, context);
      expect(changes).toEqual({ tasks: [], emails: [], deletedTasks: [{ id: '2468013', at: RECEIVED }], deletedEmails: [] });
    }
  });

  it('TASK.DELETED with a complete body: the task, deleted', async () => {
    const changes = await handleTeamworkEvent(eventFrom(fixtureBytes('v2-json-task-created.json'), { event: 'TASK.DELETED' }), { ...deps }, context);
    // The body lacks the creator on a delete, so it is not complete: a deletion keeps the stored row. The
    // deletion is dated by the body's dateUpdated (its version), not by its arrival.
    const dateUpdated = new Date('2026-11-01T09:15:00Z');
    expect(changes.deletedTasks).toEqual([{ id: '2468013', at: dateUpdated }]);
    const complete = fixtureJson<{ task: Record<string, unknown> }>('v2-json-task-created.json');
    complete.task.createdBy = 238861;
    const full = await handleTeamworkEvent(eventFrom(JSON.stringify(complete), { event: 'TASK.DELETED' }), deps, context);
    expect(full.tasks[0]).toMatchObject({ id: '2468013', deleted: true, status: 'deleted', deletedAt: dateUpdated, title: 'Draft the Q4 board report' });
  });

  it('a body without a trustworthy dateUpdated is dead-lettered naming the field and its value, and never overwrites the stored version', async () => {
    const db = await memoryDb();
    const handle = async (dateUpdated: unknown, title: string) => {
      const changes = await handleTeamworkEvent(eventFrom(versioned(dateUpdated, { name: title }), { event: 'TASK.UPDATED' }), deps, context);
      await db.apply(changes);
    };
    await handle('2026-11-04T12:00:00Z', 'twelve');
    for (const [bad, shown] of [
      ['garbage', '"garbage"'],
      [undefined, 'missing'],
      [null, 'null'],
      ['0000-01-01T00:00:00Z', '"0000-01-01T00:00:00Z"'],
      [1e308, '1e+308'],
      ['9999-12-31T23:59:59Z', '"9999-12-31T23:59:59Z"'],
      ['2026-11-08T12:00:00Z', '"2026-11-08T12:00:00Z"'],
    ] as const) {
      const err = await handle(bad, 'bad').catch((e: unknown) => e);
      expect(err, String(bad)).toMatchObject({ code: 'CONN_ERR_EVENT_INVALID', retryable: false });
      expect((err as Error).message).toContain('dateUpdated');
      expect((err as Error).message).toContain(shown);
    }
    await handle('2026-11-04T10:00:00Z', 'ten');
    expect(await db.getTask('2468013')).toMatchObject({ title: 'twelve', updatedAt: new Date('2026-11-04T12:00:00Z') });
    await db.close();
  });

  it('a TASK.DELETED replayed after a restore: the deletion carries the body version and is skipped as stale', async () => {
    const db = await memoryDb();
    // Deleted at 11:00 (the body's dateUpdated); restored at 12:00; the captured deletion replayed at 13:00.
    const deletedBody = versioned('2026-11-04T11:00:00Z');
    const first = await handleTeamworkEvent(eventFrom(deletedBody, { event: 'TASK.DELETED', receivedAt: new Date('2026-11-04T11:00:01Z') }), deps, context);
    await db.apply(first);
    expect((await db.getTask('2468013'))?.deleted).toBe(true);
    await db.apply(await handleTeamworkEvent(eventFrom(versioned('2026-11-04T12:00:00Z', { status: 'reopened' }), { event: 'TASK.REOPENED' }), deps, context));
    expect((await db.getTask('2468013'))?.deleted).toBe(false);

    const replay = await handleTeamworkEvent(eventFrom(deletedBody, { event: 'TASK.DELETED', receivedAt: new Date('2026-11-04T13:00:00Z') }), deps, context);
    expect(await db.apply(replay)).toEqual({ written: 0, stale: 1 });
    expect(await db.getTask('2468013')).toMatchObject({ deleted: false, status: 'reopened' });
    await db.close();
  });

  it('one task, one row: "id":4343, "id":"04343" and Task.ID=004343 are the same task', async () => {
    const db = await memoryDb();
    const bodies: Array<[string, string | undefined]> = [
      [versioned('2026-11-04T10:00:00Z', { id: 4343 }), undefined],
      [versioned('2026-11-04T11:00:00Z', { id: '04343' }), undefined],
      [`Task.ID=004343&Task.Name=form&Task.DateUpdated=2026-11-04T12%3A00%3A00Z&Task.ProjectId=0512345&Task.TaskListId=01518601&Task.ParentId=00&Task.AssignedUserIds=0238861`, FORM_TYPE],
    ];
    for (const [body, contentType] of bodies) {
      const event = eventFrom(body, { event: 'TASK.UPDATED', contentType });
      expect(event.entityKey).toBe('task:4343');
      const changes = await handleTeamworkEvent(event, deps, context);
      expect(changes.tasks[0]?.id).toBe('4343');
      await db.apply(changes);
    }
    expect((await db.counts()).tasks).toBe(1);
    expect(await db.getTask('4343')).toMatchObject({ title: 'form', projectId: '512345', tasklistId: '1518601', parentTaskId: null, assignees: [{ id: '238861' }] });
    const deletion = await handleTeamworkEvent(eventFrom('{"id":" 0004343 "}', { event: 'TASK.DELETED' }), deps, context);
    expect(deletion.deletedTasks).toEqual([{ id: '4343', at: RECEIVED }]);
    await db.close();
  });

  it('refuses events it cannot read with CONN_ERR_EVENT_INVALID', async () => {
    const base = eventFrom(fixtureBytes('v2-json-task-created.json'), { event: 'TASK.CREATED' });
    await expect(handleTeamworkEvent({ ...base, payload: { nonsense: true } }, deps, context)).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_INVALID' });
    await expect(handleTeamworkEvent({ ...base, type: 'COMMENT.CREATED' }, deps, context)).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_INVALID' });
    await expect(handleTeamworkEvent({ ...base, type: 'task.snapshot', payload: { task: { id: 'x' } } }, deps, context)).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_INVALID' });
  });

  it('a body with a field of the wrong type: CONN_ERR_EVENT_INVALID naming the field, never its value', async () => {
    const event = eventFrom('{"task": {"id": 1, "name": {"secret": "s3cr3t"}}}', { event: 'TASK.UPDATED' });
    const err = await handleTeamworkEvent(event, deps, context).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONN_ERR_EVENT_INVALID', retryable: false });
    expect((err as Error).message).toMatch(/task\.name/);
    expect((err as Error).message).not.toMatch(/s3cr3t/);
  });
});

describe('handleTeamworkEvent with the API (simulator)', () => {
  let sim: TeamworkSimulator;
  let deps: TeamworkHandlerDeps;
  let live: TwTask;
  let deleted: TwTask;

  beforeAll(async () => {
    sim = await startTeamworkSimulator({ seed: 31, limits: { perMinute: 1_000_000 } });
    deps = { client: new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, clock: new FakeClock({ now: Date.now(), autoAdvance: true }) }), baseUrl: sim.url };
    live = sim.data().tasks.find((t) => t.status === 'new')!;
    deleted = sim.data().tasks.find((t) => t.status === 'deleted')!;
  });
  afterAll(async () => {
    await sim.stop();
  });

  it('a complete v2 body needs no API call', async () => {
    sim.requests.clear();
    await handleTeamworkEvent(eventFrom(fixtureBytes('v2-json-task-created.json'), { event: 'TASK.CREATED' }), deps, context);
    expect(sim.requests.entries).toHaveLength(0);
  });

  it('a body with a field of the wrong type: the task is read from the API instead', async () => {
    sim.requests.clear();
    const event = eventFrom(`{"task": {"id": ${live.id}, "name": {"secret": "s3cr3t"}}}`, { event: 'TASK.UPDATED' });
    const changes = await handleTeamworkEvent(event, deps, context);
    expect(changes.tasks).toHaveLength(1);
    expect(changes.tasks[0]).toMatchObject({ id: String(live.id), title: live.name });
    expect(sim.requests.entries.length).toBeGreaterThan(0);
  });

  it('a v1 body is fetched and mapped from v3', async () => {
    const event = eventFrom(`event=TASK.UPDATED&objectId=${live.id}`, { contentType: FORM_TYPE });
    const changes = await handleTeamworkEvent(event, deps, context);
    expect(changes.tasks[0]).toMatchObject({ id: String(live.id), title: live.name, updatedAt: new Date(live.updatedAt), url: `${sim.url}/app/tasks/${live.id}` });
  });

  it('a thin body is fetched; an API older than the body is not ready yet', async () => {
    const body = fixtureJson<{ task: Record<string, unknown> }>('v2-json-task-updated-thin.json');
    body.task.id = live.id;
    body.task.dateUpdated = new Date(live.updatedAt + 60_000).toISOString();
    const receivedAt = new Date(live.updatedAt + 61_000);
    await expect(handleTeamworkEvent(eventFrom(JSON.stringify(body), { event: 'TASK.UPDATED', receivedAt }), deps, context)).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_NOT_READY', retryable: true });
    body.task.dateUpdated = new Date(live.updatedAt).toISOString();
    const changes = await handleTeamworkEvent(eventFrom(JSON.stringify(body), { event: 'TASK.UPDATED', receivedAt }), deps, context);
    expect(changes.tasks[0]).toMatchObject({ id: String(live.id), title: live.name });
  });

  it('TASK.DELETED: 200 "deleted" -> the deleted task; 404 -> a deletion', async () => {
    const changes = await handleTeamworkEvent(eventFrom(withTaskId('v2-json-task-deleted.json', deleted.id), { event: 'TASK.DELETED' }), deps, context);
    expect(changes.tasks[0]).toMatchObject({ id: String(deleted.id), deleted: true, deletedAt: new Date(deleted.deletedAt!), title: deleted.name });
    const gone = await handleTeamworkEvent(eventFrom(withTaskId('v2-json-task-deleted.json', 987654321), { event: 'TASK.DELETED' }), deps, context);
    expect(gone.deletedTasks).toEqual([{ id: '987654321', at: RECEIVED }]);
  });

  it('TASK.DELETED for a task the API still shows: not ready when older than the delivery, restored when newer', async () => {
    const after = new Date(live.updatedAt + 10_000);
    await expect(handleTeamworkEvent(eventFrom(withTaskId('v2-json-task-deleted.json', live.id), { event: 'TASK.DELETED', receivedAt: after }), deps, context)).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_NOT_READY' });
    const before = new Date(live.updatedAt - 10_000);
    const restored = await handleTeamworkEvent(eventFrom(withTaskId('v2-json-task-deleted.json', live.id), { event: 'TASK.DELETED', receivedAt: before }), deps, context);
    expect(restored.tasks[0]).toMatchObject({ id: String(live.id), deleted: false });
  });

  it('a body whose dateUpdated cannot be trusted: the task and its version are read from the API', async () => {
    for (const bad of ['garbage', '9999-12-31T23:59:59Z', '0000-01-01T00:00:00Z']) {
      const body = JSON.parse(versioned(bad, { id: live.id })) as { task: Record<string, unknown>; users: unknown[] };
      body.users = [{ id: 238862, firstName: 'Grace', lastName: 'Hopper', email: 'grace@example.com' }, { id: 238861, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }];
      body.task.createdBy = 238861;
      sim.requests.clear();
      const changes = await handleTeamworkEvent(eventFrom(JSON.stringify(body), { event: 'TASK.UPDATED', receivedAt: new Date() }), deps, context);
      expect(changes.tasks[0]).toMatchObject({ id: String(live.id), title: live.name, updatedAt: new Date(live.updatedAt) });
      expect(sim.requests.entries.length).toBeGreaterThan(0);
    }
  });

  it('a TASK.DELETED replayed after the task was restored stores the task as the API shows it, not a deletion', async () => {
    // The captured deletion says the task was deleted before its current version; it arrives now.
    const body = JSON.parse(versioned(new Date(live.updatedAt - 60_000).toISOString(), { id: live.id, status: 'deleted' })) as Record<string, unknown>;
    const changes = await handleTeamworkEvent(eventFrom(JSON.stringify(body), { event: 'TASK.DELETED', receivedAt: new Date(live.updatedAt + 3_600_000) }), deps, context);
    expect(changes.deletedTasks).toEqual([]);
    expect(changes.tasks[0]).toMatchObject({ id: String(live.id), deleted: false, updatedAt: new Date(live.updatedAt) });
  });

  it('a task the API does not know: the body when there is one, else nothing', async () => {
    const body = fixtureJson<{ task: Record<string, unknown> }>('v2-json-task-updated-thin.json');
    body.task.id = 987654321;
    const withBody = await handleTeamworkEvent(eventFrom(JSON.stringify(body), { event: 'TASK.UPDATED' }), deps, context);
    expect(withBody.tasks[0]).toMatchObject({ id: '987654321', title: 'Draft the Q4 board report (v2)' });
    const thin = await handleTeamworkEvent(eventFrom('event=TASK.UPDATED&objectId=987654321', { contentType: FORM_TYPE }), deps, context);
    expect(thin).toEqual({ tasks: [], emails: [], deletedTasks: [], deletedEmails: [] });
  });
});
