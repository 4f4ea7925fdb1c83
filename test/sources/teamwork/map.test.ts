/**
 * Vendor shape -> canonical Task, from fixture payloads in every format the reference documents. Each
 * mapping test compares the whole Task, so every canonical field is asserted.
 */
import { describe, expect, it } from 'vitest';
import { Task } from '../../../src/model.ts';
import { includedFor, mapV1TodoItem, mapV2WebhookTask, mapV3Task, parseDateOnly, parseInstant, taskUrl } from '../../../src/sources/teamwork/map.ts';
import { V1TaskResponse, V2WebhookBody, V3TaskResponse } from '../../../src/sources/teamwork/payloads.ts';
import { decodeBody } from '../../../src/sources/teamwork/webhook.ts';
import { FORM_TYPE, delivery, fixtureBytes, fixtureJson } from './fixtures.ts';

const BASE = 'https://acme.teamwork.com';
const RECEIVED = new Date('2026-11-06T12:00:00.000Z');
const ada = { id: '238861', name: 'Ada Lovelace', email: 'ada@example.com' };
const grace = { id: '238862', name: 'Grace Hopper', email: 'grace@example.com' };

describe('mapV2WebhookTask (v2 JSON)', () => {
  it('maps a full TASK.CREATED body; the event creator is the creator and updater', () => {
    const raw = fixtureJson('v2-json-task-created.json');
    const { task, missing } = mapV2WebhookTask(V2WebhookBody.parse(raw), { baseUrl: BASE, eventName: 'TASK.CREATED', receivedAt: RECEIVED });
    expect(task).toEqual({
      id: '2468013',
      title: 'Draft the Q4 board report',
      description: 'Numbers from finance, charts from design.\n',
      status: 'new',
      priority: 'high',
      progress: 20,
      projectId: '512345',
      projectName: 'Board & Investors',
      tasklistId: '1518601',
      tasklistName: 'Quarterly reporting',
      parentTaskId: null,
      assignees: [ada, grace],
      tags: ['finance', 'board'],
      startDate: '2026-11-02',
      dueDate: '2026-11-30',
      estimateMinutes: 90,
      createdAt: new Date('2026-11-01T09:15:00Z'),
      updatedAt: new Date('2026-11-01T09:15:00Z'),
      completedAt: null,
      createdBy: ada,
      updatedBy: ada,
      url: 'https://acme.teamwork.com/app/tasks/2468013',
      deleted: false,
      deletedAt: null,
      raw,
    });
    expect(missing).toEqual([]);
    expect(Task.safeParse(task).success).toBe(true);
  });

  it('reports what a thin body lacks (no user records, no creator, no completion time) instead of guessing', () => {
    const raw = fixtureJson('v2-json-task-updated-thin.json');
    const { task, missing } = mapV2WebhookTask(V2WebhookBody.parse(raw), { baseUrl: null, eventName: 'TASK.COMPLETED', receivedAt: RECEIVED });
    expect(task).toEqual({
      id: '2468013',
      title: 'Draft the Q4 board report (v2)',
      description: '',
      status: 'completed',
      priority: null,
      progress: 100,
      projectId: '512345',
      projectName: 'Board & Investors',
      tasklistId: '1518601',
      tasklistName: 'Quarterly reporting',
      parentTaskId: null,
      assignees: [{ id: '238861', name: null, email: null }],
      tags: [],
      startDate: null,
      dueDate: null,
      estimateMinutes: 0,
      createdAt: new Date('2026-11-01T09:15:00Z'),
      updatedAt: new Date('2026-11-04T11:00:05Z'),
      completedAt: null,
      createdBy: null,
      updatedBy: { id: '238862', name: 'Grace Hopper', email: null },
      url: null,
      deleted: false,
      deletedAt: null,
      raw,
    });
    expect([...missing].sort()).toEqual(['assignees', 'completedAt', 'createdBy', 'updatedBy']);
  });

  it('marks the task deleted on TASK.DELETED, at the delivery time when the body gives none', () => {
    const raw = fixtureJson('v2-json-task-created.json');
    const { task, missing } = mapV2WebhookTask(V2WebhookBody.parse(raw), { baseUrl: BASE, eventName: 'TASK.DELETED', receivedAt: RECEIVED });
    expect(task).toMatchObject({ id: '2468013', status: 'deleted', deleted: true, deletedAt: RECEIVED, updatedAt: new Date('2026-11-01T09:15:00Z') });
    expect(missing).toEqual(['createdBy']);
  });

  it('reports every field of a body that has only the task id', () => {
    const { task, missing } = mapV2WebhookTask(V2WebhookBody.parse({ task: { id: '77' } }), { baseUrl: BASE, eventName: 'TASK.UPDATED', receivedAt: RECEIVED });
    expect(task.id).toBe('77');
    expect([...missing].sort()).toEqual(
      ['assignees', 'createdAt', 'createdBy', 'description', 'dueDate', 'estimateMinutes', 'parentTaskId', 'priority', 'progress', 'projectId', 'startDate', 'status', 'tags', 'tasklistId', 'title', 'updatedAt', 'updatedBy'].sort(),
    );
  });
});

describe('mapV2WebhookTask (v2 Form, flattened dotted PascalCase)', () => {
  it('maps the unflattened form body like JSON', () => {
    const { body } = decodeBody(delivery({ body: fixtureBytes('v2-form-task-updated.txt'), contentType: FORM_TYPE }));
    const { task, missing } = mapV2WebhookTask(V2WebhookBody.parse(body), { baseUrl: BASE, eventName: 'TASK.UPDATED', receivedAt: RECEIVED, raw: body });
    expect(task).toEqual({
      id: '2468013',
      title: 'Draft the Q4 board report',
      description: 'Numbers from finance, charts from design.',
      status: 'reopened',
      priority: null,
      progress: 0,
      projectId: '512345',
      projectName: 'Board & Investors',
      tasklistId: '1518601',
      tasklistName: 'Quarterly reporting',
      parentTaskId: '2468000',
      assignees: [ada, grace],
      tags: ['finance'],
      startDate: null,
      dueDate: '2026-12-01',
      estimateMinutes: 45,
      createdAt: new Date('2026-11-01T09:15:00Z'),
      updatedAt: new Date('2026-11-03T16:45:10Z'),
      completedAt: null,
      createdBy: null,
      updatedBy: grace,
      url: 'https://acme.teamwork.com/app/tasks/2468013',
      deleted: false,
      deletedAt: null,
      raw: body,
    });
    expect(missing).toEqual(['createdBy']);
    // The raw body keeps the form's own keys, unflattened.
    expect((body as { Task: { AssignedUserIDs: string[] } }).Task.AssignedUserIDs).toEqual(['238861', '238862']);
  });
});

describe('mapV1TodoItem (v1 REST todo-item)', () => {
  it('maps quoted ids, YYYYMMDD dates, comma/pipe assignees and "" for none', () => {
    const raw = V1TaskResponse.parse(fixtureJson('v1-todo-item.json'))['todo-item'];
    expect(mapV1TodoItem(raw, { baseUrl: BASE })).toEqual({
      id: '2468013',
      title: 'Draft the Q4 board report',
      description: 'Numbers from finance, charts from design.',
      status: 'new',
      priority: null,
      progress: 20,
      projectId: '512345',
      projectName: 'Board & Investors',
      tasklistId: '1518601',
      tasklistName: 'Quarterly reporting',
      parentTaskId: null,
      assignees: [
        { id: '238861', name: 'Ada L.', email: null },
        { id: '238862', name: 'Grace H.', email: null },
      ],
      tags: ['finance', 'board'],
      startDate: '2026-11-02',
      dueDate: '2026-11-30',
      estimateMinutes: 90,
      createdAt: new Date('2026-11-01T09:15:00Z'),
      updatedAt: new Date('2026-11-02T10:20:30Z'),
      completedAt: null,
      createdBy: { id: '238861', name: 'Ada Lovelace', email: null },
      updatedBy: { id: '238862', name: 'Grace Hopper', email: null },
      url: 'https://acme.teamwork.com/app/tasks/2468013',
      deleted: false,
      deletedAt: null,
      raw,
    });
  });

  it('treats absent responsible-party-ids as unassigned and a completed/deleted status as such', () => {
    const base = V1TaskResponse.parse(fixtureJson('v1-todo-item.json'))['todo-item'];
    const { ['responsible-party-ids']: _ids, ['responsible-party-names']: _names, ...unassigned } = base;
    const completed = mapV1TodoItem({ ...unassigned, status: 'completed', completed: true, completed_on: '2026-11-03T08:00:00Z' }, { baseUrl: null });
    expect(completed).toMatchObject({ assignees: [], status: 'completed', completedAt: new Date('2026-11-03T08:00:00Z'), deleted: false, deletedAt: null, url: null });
    const deleted = mapV1TodoItem({ ...base, status: 'deleted' }, { baseUrl: null });
    expect(deleted).toMatchObject({ deleted: true, deletedAt: new Date('2026-11-02T10:20:30Z') });
  });
});

describe('mapV3Task (v3 task with side-loads)', () => {
  it('gives every id its canonical text: leading zeros and spaces dropped, in the task and in what it refers to', () => {
    const body = fixtureJson<{ task: Record<string, unknown>; included: Record<string, Record<string, unknown>> }>('v3-task-completed.json');
    body.task.id = '02468013';
    body.task.assignees = [{ id: ' 0238861', type: 'users' }];
    body.task.tags = [{ id: '07001', type: 'tags' }];
    body.task.tasklist = { id: '01518601', type: 'tasklists' };
    const response = V3TaskResponse.parse(body);
    const task = mapV3Task(response.task, response.included, { baseUrl: null });
    expect(task).toMatchObject({ id: '2468013', tasklistId: '1518601', tasklistName: 'Quarterly reporting', projectId: '512345', assignees: [ada], tags: ['finance'] });
    const v1 = V1TaskResponse.parse({ 'todo-item': { ...fixtureJson<{ 'todo-item': Record<string, unknown> }>('v1-todo-item.json')['todo-item'], id: '002468013' } });
    expect(mapV1TodoItem(v1['todo-item'], { baseUrl: null }).id).toBe('2468013');
    // A number beyond 2^53 is not an id we could keep exactly: refused by the schema.
    expect(V3TaskResponse.safeParse({ task: { id: 2 ** 60 } }).success).toBe(false);
  });

  it('resolves project through the tasklist, names, emails, tags; keeps teams and companies without email', () => {
    const response = V3TaskResponse.parse(fixtureJson('v3-task-completed.json'));
    const task = mapV3Task(response.task, response.included, { baseUrl: `${BASE}/` });
    expect(task).toEqual({
      id: '2468013',
      title: 'Draft the Q4 board report',
      description: 'Numbers from finance, charts from design.',
      status: 'completed',
      priority: 'medium',
      progress: 100,
      projectId: '512345',
      projectName: 'Board & Investors',
      tasklistId: '1518601',
      tasklistName: 'Quarterly reporting',
      parentTaskId: '2468000',
      assignees: [ada, { id: 'team:31', name: 'Finance team', email: null }, { id: 'company:4001', name: null, email: null }],
      tags: ['finance', 'board'],
      startDate: '2026-11-02',
      dueDate: '2026-11-30',
      estimateMinutes: 90,
      createdAt: new Date('2026-11-01T09:15:00Z'),
      updatedAt: new Date('2026-11-05T17:02:11Z'),
      completedAt: new Date('2026-11-05T17:02:11Z'),
      createdBy: ada,
      updatedBy: grace,
      url: 'https://acme.teamwork.com/app/tasks/2468013',
      deleted: false,
      deletedAt: null,
      raw: { task: response.task, included: includedFor(response.task, response.included) },
    });
    // raw keeps only the side-loads this task refers to.
    const raw = task.raw as { included: { users: Record<string, unknown> } };
    expect(Object.keys(raw.included.users).sort()).toEqual(['238861', '238862']);
  });

  it('maps a deleted task (200, status "deleted") as deleted, with its deletion time', () => {
    const response = V3TaskResponse.parse(fixtureJson('v3-task-deleted.json'));
    expect(mapV3Task(response.task, response.included, { baseUrl: BASE })).toEqual({
      id: '2468014',
      title: 'Old draft',
      description: null,
      status: 'deleted',
      priority: null,
      progress: 0,
      projectId: '512345',
      projectName: 'Board & Investors',
      tasklistId: '1518601',
      tasklistName: 'Quarterly reporting',
      parentTaskId: null,
      assignees: [],
      tags: [],
      startDate: null,
      dueDate: null,
      estimateMinutes: 0,
      createdAt: new Date('2026-10-01T08:00:00Z'),
      updatedAt: new Date('2026-11-06T12:00:00Z'),
      completedAt: null,
      createdBy: ada,
      updatedBy: grace,
      url: 'https://acme.teamwork.com/app/tasks/2468014',
      deleted: true,
      deletedAt: new Date('2026-11-06T12:00:00Z'),
      raw: { task: response.task, included: includedFor(response.task, response.included) },
    });
  });

  it('leaves names null when side-loads are missing, and accepts included as arrays', () => {
    const response = V3TaskResponse.parse(fixtureJson('v3-task-completed.json'));
    const bare = mapV3Task(response.task, undefined, { baseUrl: null });
    expect(bare).toMatchObject({ projectId: null, projectName: null, tasklistName: null, tags: [], createdBy: { id: '238861', name: null, email: null } });
    const arrays = V3TaskResponse.parse({ task: { id: 1, tasklist: { id: 5, type: 'tasklists' } }, included: { tasklists: [{ id: 5, name: 'L', project: { id: 9 } }], projects: [{ id: 9, name: 'P' }] } });
    expect(mapV3Task(arrays.task, arrays.included, { baseUrl: null })).toMatchObject({ tasklistName: 'L', projectId: '9', projectName: 'P' });
  });
});

describe('date and time normalisation', () => {
  it('keeps date-only fields as the calendar day written, whatever the zone', () => {
    expect(parseDateOnly('2026-11-30')).toBe('2026-11-30');
    expect(parseDateOnly('20261130')).toBe('2026-11-30');
    expect(parseDateOnly('2026-11-30T00:00:00Z')).toBe('2026-11-30');
    expect(parseDateOnly('2026-11-30T23:30:00-05:00')).toBe('2026-11-30');
    expect(parseDateOnly('2026-12-01T00:30:00+14:00')).toBe('2026-12-01');
    expect(parseDateOnly('')).toBeNull();
    expect(parseDateOnly('2026-02-30')).toBeNull();
    expect(parseDateOnly('next week')).toBeNull();
  });

  it('reads timestamps as UTC: with a zone, without one, and v1 compact', () => {
    expect(parseInstant('2026-11-01T09:15:00Z')?.toISOString()).toBe('2026-11-01T09:15:00.000Z');
    expect(parseInstant('2026-11-01T10:15:00+01:00')?.toISOString()).toBe('2026-11-01T09:15:00.000Z');
    expect(parseInstant('2026-11-01 09:15:00')?.toISOString()).toBe('2026-11-01T09:15:00.000Z');
    expect(parseInstant('20261101091500')?.toISOString()).toBe('2026-11-01T09:15:00.000Z');
    expect(parseInstant('')).toBeNull();
    expect(parseInstant('yesterday')).toBeNull();
  });

  it('links to the task only when a base URL is known', () => {
    expect(taskUrl('https://acme.eu.teamwork.com', '5')).toBe('https://acme.eu.teamwork.com/app/tasks/5');
    expect(taskUrl(null, '5')).toBeNull();
  });
});
