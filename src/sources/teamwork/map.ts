/**
 * Teamwork shapes -> the canonical `Task`. Pure functions, one per vendor shape, no I/O.
 *
 * Rules shared by every shape (reference §3.4, §6):
 * - Ids become their canonical text (payloads.ts `canonicalId`: no leading zeros or spaces), the task's
 *   own and every id it refers to; `0`, `""` and null mean "none" where Teamwork uses them so (`parentId`).
 * - Timestamps become UTC `Date`s; a timestamp without a zone is UTC, as Teamwork documents.
 * - Start and due dates stay calendar days (`YYYY-MM-DD`): they are cut from the string, never parsed
 *   into a `Date`, so no time zone can move them. `YYYYMMDD` (v1) and a full timestamp (which the SDK
 *   tolerates by cutting at "T") are accepted.
 * - `priority` "", "none" and null all become null.
 * - Assignees: users get their name and email. Teams and companies (v3 assignees can be either) are
 *   kept, with a null email and an id prefixed by their kind (`team:12`, `company:3`) so that they can
 *   never be mistaken for the user with the same number.
 * - `updatedAt` is the vendor's own: v2 `dateUpdated`, v3 `updatedAt`, v1 `last-changed-on`.
 * - A deleted task is `deleted: true` with `deletedAt`; a completed task is not deleted.
 */
import type { Person, Task } from '../../model.ts';
import { canonicalId, type IdList, type Num, type Ref, type V1TodoItem, type V2Person, type V2WebhookBody, type V3Included, type V3Task, type V3User } from './payloads.ts';

export interface MapContext {
  /** Teamwork's base URL (`https://acme.teamwork.com`), for task links; null leaves `url` null. */
  baseUrl: string | null;
}

// ---------------------------------------------------------------------------------------------------
// Small normalisers

/** A link to the task in Teamwork's web app, or null without a base URL. */
export function taskUrl(baseUrl: string | null, id: string): string | null {
  return baseUrl === null ? null : `${baseUrl.replace(/\/+$/, '')}/app/tasks/${id}`;
}

/** An id as canonical text (canonicalId); null for absent, null, "", and 0 (Teamwork's "none"). */
export function refText(value: Ref | undefined): string | null {
  if (value === undefined || value === null) return null;
  const text = canonicalId(value);
  return text === '' || text === '0' ? null : text;
}

function numberOrNull(value: Num | undefined): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  const text = value.trim();
  return text === '' ? null : Number(text);
}

function textOrNull(value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  return value;
}

function priorityOrNull(value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  const text = value.trim();
  return text === '' || text.toLowerCase() === 'none' ? null : text;
}

function statusOrNull(value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  const text = value.trim();
  return text === '' ? null : text;
}

/** The ids in a v2 `assignedUserIds` / v1 `responsible-party-ids`: an array, one id, or "1,2". */
export function idListValues(value: IdList | undefined): string[] {
  if (value === undefined || value === null) return [];
  const parts = Array.isArray(value) ? value.map(String) : String(value).split(',');
  const ids: string[] = [];
  for (const part of parts) {
    const id = refText(part);
    if (id !== null && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

/**
 * A vendor timestamp as a UTC `Date`: ISO-8601 with or without a zone (none means UTC), a v1
 * `YYYYMMDDHHMMSS`, or a bare `YYYY-MM-DD` (midnight UTC). Anything else is null.
 */
export function parseInstant(value: string | null | undefined): Date | null {
  if (value === undefined || value === null) return null;
  const text = value.trim();
  if (text === '') return null;
  let iso: string;
  const compact = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(text);
  if (compact !== null) {
    const [, y, mo, d, h, mi, s] = compact;
    iso = `${y}-${mo}-${d}T${h}:${mi}:${s}Z`;
  } else if (/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    iso = `${text}T00:00:00Z`;
  } else if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) {
    iso = `${text.replace(' ', 'T')}Z`;
  } else if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(text)) {
    iso = text.replace(' ', 'T');
  } else {
    return null;
  }
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : new Date(ms);
}

/** No Teamwork version is older than this (Teamwork began in 2007): a year-0 or epoch time is a broken value. */
export const EARLIEST_VERSION = new Date('2000-01-01T00:00:00.000Z');
/** How far a version may lie after its reference time (receipt, or our clock for an API read): clock skew. */
export const VERSION_SKEW_MS = 60 * 60 * 1000;

/** A vendor update time checked for use as a version (see checkVersion). */
export type VersionCheck = { version: Date; problem: null } | { version: null; problem: string };

/**
 * A vendor update time (`dateUpdated`, `updatedAt`) as the stale-write guard's version, or why it
 * cannot be one: missing, not a timestamp, before EARLIEST_VERSION, or later than `reference` plus
 * VERSION_SKEW_MS (Teamwork cannot have changed a task after it told us, or after we asked). A version
 * in the far future would make every later write look stale, for good. `problem` shows the value as
 * JSON, cut to 60 characters: a time is not customer data, and an operator needs to see it.
 */
export function checkVersion(value: unknown, reference: Date): VersionCheck {
  if (value === undefined) return { version: null, problem: 'missing' };
  const shown = (JSON.stringify(value) ?? String(value)).slice(0, 60);
  const parsed = typeof value === 'string' ? parseInstant(value) : null;
  if (parsed === null) return { version: null, problem: `${shown}, not a timestamp` };
  if (parsed.getTime() < EARLIEST_VERSION.getTime()) return { version: null, problem: `${shown}, before ${EARLIEST_VERSION.toISOString()}` };
  const latest = reference.getTime() + VERSION_SKEW_MS;
  if (parsed.getTime() > latest) return { version: null, problem: `${shown}, later than ${new Date(latest).toISOString()}` };
  return { version: parsed, problem: null };
}

/**
 * A date-only field as `YYYY-MM-DD`, cut from the text so no zone can shift the day: `2026-11-05`,
 * `20261105`, or a timestamp whose date part is taken as written. An impossible day is null.
 */
export function parseDateOnly(value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  const text = value.trim();
  const match = /^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])/.exec(text) ?? /^(\d{4})(\d{2})(\d{2})(?:$|\d{6}$)/.exec(text);
  if (match === null) return null;
  const [, y, m, d] = match as unknown as [string, string, string, string];
  const check = new Date(Date.UTC(Number(y), Number(m) - 1, Number(d)));
  if (check.getUTCFullYear() !== Number(y) || check.getUTCMonth() !== Number(m) - 1 || check.getUTCDate() !== Number(d)) return null;
  return `${y}-${m}-${d}`;
}

function fullName(first: string | null | undefined, last: string | null | undefined): string | null {
  const name = [first, last].map((p) => (p ?? '').trim()).filter((p) => p !== '').join(' ');
  return name === '' ? null : name;
}

function v3Person(id: string | null, users: V3Included['users']): Person | null {
  if (id === null) return null;
  const user = users?.[id];
  return { id, name: fullName(user?.firstName, user?.lastName), email: textOrNull(user?.email) };
}

function v3UserPerson(id: string, user: V3User | undefined): Person {
  return { id, name: fullName(user?.firstName, user?.lastName), email: textOrNull(user?.email) };
}

// ---------------------------------------------------------------------------------------------------
// v3 task (+ included)

/** The side-loaded records a task refers to: what a `task.snapshot` event carries. */
export function includedFor(task: V3Task, included: V3Included | undefined): V3Included {
  const out: V3Included = {};
  if (included === undefined) return out;
  const pick = <K extends 'users' | 'tags' | 'tasklists' | 'projects' | 'teams' | 'companies'>(kind: K, id: string | null): void => {
    if (id === null) return;
    const record = included[kind]?.[id];
    if (record === undefined) return;
    const bucket = (out[kind] ??= {}) as Record<string, unknown>;
    bucket[id] = record;
  };
  for (const rel of task.assignees ?? []) pick(assigneeKind(rel.type), refText(rel.id));
  for (const rel of task.tags ?? []) pick('tags', refText(rel.id));
  for (const id of [task.createdBy, task.updatedBy, task.completedBy, task.deletedBy]) pick('users', refText(id));
  const tasklistId = refText(task.tasklist?.id) ?? refText(task.tasklistId);
  pick('tasklists', tasklistId);
  const tasklist = tasklistId === null ? undefined : included.tasklists?.[tasklistId];
  pick('projects', refText(task.projectId) ?? refText(tasklist?.project?.id) ?? refText(tasklist?.projectId));
  return out;
}

function assigneeKind(type: string | undefined): 'users' | 'teams' | 'companies' {
  const kind = (type ?? 'users').toLowerCase();
  if (kind === 'teams' || kind === 'team') return 'teams';
  if (kind === 'companies' || kind === 'company') return 'companies';
  return 'users';
}

/** A v3 task, names resolved through `included` (reference §2.5, §3.1). */
export function mapV3Task(task: V3Task, included: V3Included | undefined, context: MapContext): Task {
  const id = canonicalId(task.id);
  const inc = included ?? {};
  const tasklistId = refText(task.tasklist?.id) ?? refText(task.tasklistId);
  const tasklist = tasklistId === null ? undefined : inc.tasklists?.[tasklistId];
  const projectId = refText(task.projectId) ?? refText(tasklist?.project?.id) ?? refText(tasklist?.projectId);
  const project = projectId === null ? undefined : inc.projects?.[projectId];

  const assignees: Person[] = [];
  for (const rel of task.assignees ?? []) {
    const assigneeId = refText(rel.id);
    if (assigneeId === null) continue;
    const kind = assigneeKind(rel.type);
    let person: Person;
    if (kind === 'users') person = v3UserPerson(assigneeId, inc.users?.[assigneeId]);
    else person = { id: `${kind === 'teams' ? 'team' : 'company'}:${assigneeId}`, name: textOrNull(inc[kind]?.[assigneeId]?.name), email: null };
    if (!assignees.some((a) => a.id === person.id)) assignees.push(person);
  }

  const tags: string[] = [];
  for (const rel of task.tags ?? []) {
    const name = inc.tags?.[canonicalId(rel.id)]?.name;
    if (typeof name === 'string' && name !== '' && !tags.includes(name)) tags.push(name);
  }

  const status = statusOrNull(task.status);
  const updatedAt = parseInstant(task.updatedAt);
  const deletedAt = parseInstant(task.deletedAt);
  const deleted = status?.toLowerCase() === 'deleted' || deletedAt !== null;

  return {
    id,
    title: textOrNull(task.name),
    description: textOrNull(task.description),
    status,
    priority: priorityOrNull(task.priority),
    progress: numberOrNull(task.progress),
    projectId,
    projectName: textOrNull(project?.name),
    tasklistId,
    tasklistName: textOrNull(tasklist?.name),
    parentTaskId: refText(task.parentTask?.id) ?? refText(task.parentTaskId),
    assignees,
    tags,
    startDate: parseDateOnly(task.startDate),
    dueDate: parseDateOnly(task.dueDate),
    estimateMinutes: numberOrNull(task.estimateMinutes),
    createdAt: parseInstant(task.createdAt),
    updatedAt,
    completedAt: parseInstant(task.completedAt),
    createdBy: v3Person(refText(task.createdBy), inc.users),
    updatedBy: v3Person(refText(task.updatedBy), inc.users),
    url: taskUrl(context.baseUrl, id),
    deleted,
    deletedAt: deleted ? (deletedAt ?? updatedAt) : null,
    raw: { task, included: includedFor(task, included) },
  };
}

// ---------------------------------------------------------------------------------------------------
// v2 webhook (JSON, or Form unflattened)

/** Fields of the canonical task a v2 webhook body did not tell us (so the handler may fetch the task). */
export type MissingField =
  | 'title' | 'description' | 'status' | 'priority' | 'progress' | 'projectId' | 'projectName' | 'tasklistId'
  | 'tasklistName' | 'parentTaskId' | 'assignees' | 'tags' | 'startDate' | 'dueDate' | 'estimateMinutes'
  | 'createdAt' | 'updatedAt' | 'completedAt' | 'createdBy' | 'updatedBy';

export interface V2MapContext extends MapContext {
  /** The Teamwork event name (`TASK.UPDATED`); TASK.DELETED marks the task deleted. */
  eventName: string;
  /** When the delivery arrived: the deletion time when the body does not say. */
  receivedAt: Date;
  /** The body as received (a form's own keys), kept as `raw`. Default: `body`. */
  raw?: unknown;
}

export interface V2MapResult {
  task: Task;
  /** Canonical fields the body did not carry (absent keys, unresolved names); empty when complete. */
  missing: MissingField[];
}

/**
 * A v2 webhook body's task (reference §1.4, §3.2). Keys missing from the body are recorded in
 * `missing` rather than guessed; `null` in the body is a value ("no due date") and is not missing.
 * The event creator is the task's `updatedBy` (and its `createdBy` on TASK.CREATED). A person (assignee,
 * creator, updater) is complete only with a name and an email, which only the body's `users` can give.
 */
export function mapV2WebhookTask(body: V2WebhookBody, context: V2MapContext): V2MapResult {
  const t = body.task;
  if (t === undefined || t === null) throw new TypeError('mapV2WebhookTask needs a body with a task');
  const missing = new Set<MissingField>();
  const need = <T>(field: MissingField, value: T | undefined): T | undefined => {
    if (value === undefined) missing.add(field);
    return value;
  };
  const id = canonicalId(t.id);
  const users = new Map<string, V2Person>();
  for (const user of body.users ?? []) {
    const userId = refText(user.id);
    if (userId !== null) users.set(userId, user);
  }
  const v2Person = (personId: string | null, fallback?: V2Person | null): Person | null => {
    if (personId === null) return null;
    const user = users.get(personId) ?? fallback ?? undefined;
    return { id: personId, name: fullName(user?.firstName, user?.lastName), email: textOrNull(user?.email ?? user?.emailAddress) };
  };

  // Assignees: names and emails only come from `users`.
  const assignees: Person[] = [];
  if (need('assignees', t.assignedUserIds) !== undefined) {
    for (const userId of idListValues(t.assignedUserIds)) {
      const person = v2Person(userId) as Person;
      if (person.name === null || person.email === null) missing.add('assignees');
      assignees.push(person);
    }
  }

  // Project and tasklist: ids from the task, names from the sibling objects when their ids match.
  let projectId: string | null = null;
  if (t.projectId !== undefined) projectId = refText(t.projectId);
  else if (body.project) projectId = refText(body.project.id);
  else if (body.taskList?.projectId !== undefined) projectId = refText(body.taskList.projectId);
  else missing.add('projectId');
  const projectName = projectId !== null && body.project && refText(body.project.id) === projectId ? textOrNull(body.project.name) : null;
  if (projectId !== null && projectName === null) missing.add('projectName');

  let tasklistId: string | null = null;
  if (t.taskListId !== undefined) tasklistId = refText(t.taskListId);
  else if (body.taskList) tasklistId = refText(body.taskList.id);
  else missing.add('tasklistId');
  const tasklistName = tasklistId !== null && body.taskList && refText(body.taskList.id) === tasklistId ? textOrNull(body.taskList.name) : null;
  if (tasklistId !== null && tasklistName === null) missing.add('tasklistName');

  const tags: string[] = [];
  if (t.tags === undefined) missing.add('tags');
  for (const tag of t.tags ?? []) {
    const name = typeof tag === 'string' ? tag : textOrNull(tag.name);
    if (name === null || name === '') missing.add('tags');
    else if (!tags.includes(name)) tags.push(name);
  }

  const eventName = context.eventName.toUpperCase();
  const isDelete = eventName === 'TASK.DELETED';
  let status = statusOrNull(need('status', t.status));
  if (isDelete) {
    status = 'deleted';
    missing.delete('status');
  }
  const completedAt = parseInstant(t.dateCompleted ?? t.completedAt);
  if (status?.toLowerCase() === 'completed' && completedAt === null) missing.add('completedAt');

  const creatorId = refText(t.createdBy ?? t.createdByUserId ?? null);
  const eventCreatorId = refText(body.eventCreator?.id);
  // People count as known only with name and email: `eventCreator` has no email, `users` may.
  const complete = (person: Person | null): boolean => person !== null && person.name !== null && person.email !== null;
  let createdBy: Person | null = null;
  if (creatorId !== null) createdBy = v2Person(creatorId);
  else if (eventName === 'TASK.CREATED' && eventCreatorId !== null) createdBy = v2Person(eventCreatorId, body.eventCreator);
  if (!complete(createdBy)) missing.add('createdBy');
  const updatedBy = v2Person(eventCreatorId, body.eventCreator);
  if (!complete(updatedBy)) missing.add('updatedBy');

  const deletedAt = parseInstant(t.dateDeleted ?? t.deletedAt);
  const deleted = isDelete || status?.toLowerCase() === 'deleted' || deletedAt !== null;

  const task: Task = {
    id,
    title: textOrNull(need('title', t.name)),
    description: textOrNull(need('description', t.description)),
    status,
    priority: priorityOrNull(need('priority', t.priority)),
    progress: numberOrNull(need('progress', t.progress)),
    projectId,
    projectName,
    tasklistId,
    tasklistName,
    parentTaskId: refText(need('parentTaskId', t.parentId)),
    assignees,
    tags,
    startDate: parseDateOnly(need('startDate', t.startDate)),
    dueDate: parseDateOnly(need('dueDate', t.dueDate)),
    estimateMinutes: numberOrNull(need('estimateMinutes', t.estimatedMinutes)),
    createdAt: parseInstant(need('createdAt', t.dateCreated)),
    updatedAt: parseInstant(need('updatedAt', t.dateUpdated)),
    completedAt,
    createdBy,
    updatedBy,
    url: taskUrl(context.baseUrl, id),
    deleted,
    deletedAt: deleted ? (deletedAt ?? context.receivedAt) : null,
    raw: context.raw ?? body,
  };
  if (task.updatedAt === null) missing.add('updatedAt');
  return { task, missing: [...missing] };
}

// ---------------------------------------------------------------------------------------------------
// v1 todo-item

/** A v1 `todo-item` (reference §3.3). v1 has no emails; assignees carry names only. */
export function mapV1TodoItem(item: V1TodoItem, context: MapContext): Task {
  const id = canonicalId(item.id);
  const ids = idListValues(item['responsible-party-ids'] === undefined || item['responsible-party-ids'] === null ? undefined : String(item['responsible-party-ids']));
  const names = (item['responsible-party-names'] ?? '').split('|').map((n) => n.trim());
  const assignees: Person[] = ids.map((assigneeId, i) => ({ id: assigneeId, name: names[i] ? names[i] : null, email: null }));

  const tags: string[] = [];
  for (const tag of item.tags ?? []) {
    const name = textOrNull(tag.name);
    if (name !== null && name !== '' && !tags.includes(name)) tags.push(name);
  }

  const completedFlag = item.completed === true || item.completed === 1 || item.completed === 'true' || item.completed === '1';
  const status = statusOrNull(item.status) ?? (completedFlag ? 'completed' : null);
  const updatedAt = parseInstant(item['last-changed-on']);
  const deleted = status?.toLowerCase() === 'deleted';
  const person = (personId: string | null, first: string | null | undefined, last: string | null | undefined): Person | null =>
    personId === null ? null : { id: personId, name: fullName(first, last), email: null };

  return {
    id,
    title: textOrNull(item.content),
    description: textOrNull(item.description),
    status,
    priority: priorityOrNull(item.priority),
    progress: numberOrNull(item.progress),
    projectId: refText(item['project-id']),
    projectName: textOrNull(item['project-name']),
    tasklistId: refText(item['todo-list-id']),
    tasklistName: textOrNull(item['todo-list-name']),
    parentTaskId: refText(item.parentTaskId),
    assignees,
    tags,
    startDate: parseDateOnly(item['start-date']),
    dueDate: parseDateOnly(item['due-date']),
    estimateMinutes: numberOrNull(item['estimated-minutes']),
    createdAt: parseInstant(item['created-on']),
    updatedAt,
    completedAt: parseInstant(item.completed_on ?? item['completed-on']),
    createdBy: person(refText(item['creator-id']), item['creator-firstname'], item['creator-lastname']),
    updatedBy: person(refText(item['updater-id']), item['updater-firstname'], item['updater-lastname']),
    url: taskUrl(context.baseUrl, id),
    deleted,
    deletedAt: deleted ? updatedAt : null,
    raw: item,
  };
}
