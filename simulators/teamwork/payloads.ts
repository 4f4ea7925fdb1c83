/**
 * Every Teamwork wire format, rendered from the simulator's neutral records. Section numbers refer to
 * /work/shared/reference/teamwork.md. Choices where the reference is uncertain are marked GUESS and
 * are switchable through `TeamworkQuirks` where a client could reasonably depend on them.
 */
import { JsonCache, jsonObject } from '../common.ts';
import { isoSeconds, type TaskEvent, type TwProject, type TwTag, type TwTask, type TwTasklist, type TwUser } from './model.ts';
import type { TeamworkState } from './state.ts';

/** Switches for shapes the reference marks uncertain. */
export interface TeamworkQuirks {
  /**
   * Body of a v2 JSON TASK.DELETED delivery (reference 1.4, uncertain). `id-only` (default):
   * `{"id": <taskId>, "eventCreator": {...}}`, the JSON form of the `ID` + `EventCreator.*` keys Pipedream
   * reads from the Form body. `full`: the same shape as the other task events, with `task.status`
   * "deleted".
   */
  deletedPayload: 'id-only' | 'full';
  /**
   * How v2 webhook `task.startDate` / `task.dueDate` are written (reference: uncertain, only null seen).
   * `date` (default): `YYYY-MM-DD`; `timestamp`: `YYYY-MM-DDT00:00:00Z`.
   */
  webhookDates: 'date' | 'timestamp';
  /** Key casing of legacy v1 Form deliveries (reference 1.3: two official pages disagree). Default `camel`. */
  v1FormCasing: 'camel' | 'pascal';
  /** Sign v1 deliveries too when the hook has a token (reference 1.7: v1 "may be unsigned"). Default true. */
  signV1: boolean;
  /**
   * v1 `GET /tasks/{id}.json` for a deleted task (reference pitfall 7): `404` (default; "deleted items may
   * 404") or `status` (200 with `"status":"deleted"`).
   */
  v1DeletedTask: '404' | 'status';
  /**
   * Deleted tasks in v3 task lists (reference 2.2, uncertain). `deleted-after` (default): a list with
   * `deletedAfter=<time>` returns only tasks deleted after that time (like `completedAfter` returns only
   * completed ones); `showDeleted=true` adds deleted tasks to any list. `never`: lists never contain
   * deleted tasks (the pessimistic reading: only GET by id reveals them).
   */
  deletedInLists: 'deleted-after' | 'never';
}

export const DEFAULT_TEAMWORK_QUIRKS: TeamworkQuirks = {
  deletedPayload: 'id-only',
  webhookDates: 'date',
  v1FormCasing: 'camel',
  signV1: true,
  v1DeletedTask: '404',
  deletedInLists: 'deleted-after',
};

const iso = (ms: number | null): string | null => (ms === null ? null : isoSeconds(ms));
const rel = (id: number, type: string) => ({ id, type });

// ---------------------------------------------------------------------------------------------------
// v3 REST (reference 2.2, 2.3, 2.5, 3.1)

export interface V3RenderOptions {
  /** `includeRelatedTasks=true`: fill `subTaskIds` and `predecessors`. */
  related: boolean;
  /** `includeCompletedPredecessors=true`: completed subtasks stay in `subTaskIds`. */
  completedSubtasks: boolean;
  /** Sparse fieldset (`fields[tasks]=a,b`); null for every field. */
  fields: Set<string> | null;
}

/** A v3 task object. It has no `projectId`: the project comes through `tasklist` (reference 2.5). */
export function v3Task(task: TwTask, state: TeamworkState, options: V3RenderOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: task.id,
    name: task.name,
    description: task.description,
    descriptionContentType: task.description === null ? null : 'TEXT',
    priority: task.priority,
    progress: task.progress,
    startDate: task.startDate,
    dueDate: task.dueDate,
    estimateMinutes: task.estimateMinutes,
    tasklist: rel(task.tasklistId, 'tasklists'),
    parentTask: task.parentTaskId === null ? null : rel(task.parentTaskId, 'tasks'),
    assignees: [
      ...task.assigneeUserIds.map((id) => rel(id, 'users')),
      ...task.assigneeTeamIds.map((id) => rel(id, 'teams')),
    ],
    tags: task.tagIds.map((id) => rel(id, 'tags')),
    workflowStages: [],
    isPrivate: task.isPrivate,
    displayOrder: task.displayOrder,
    createdBy: task.createdBy,
    updatedBy: task.updatedBy,
    completedBy: task.completedBy,
    deletedBy: task.deletedBy,
    createdAt: iso(task.createdAt),
    updatedAt: iso(task.updatedAt),
    completedAt: iso(task.completedAt),
    deletedAt: iso(task.deletedAt),
    status: task.status,
  };
  if (options.related) {
    out.predecessors = [];
    out.subTaskIds = state.tasks
      .visible()
      .filter((t) => t.parentTaskId === task.id && t.status !== 'deleted')
      .filter((t) => options.completedSubtasks || t.status !== 'completed')
      .map((t) => t.id);
  }
  if (options.fields) {
    for (const key of Object.keys(out)) if (key !== 'id' && !options.fields.has(key)) delete out[key];
  }
  return out;
}

export const V3_INCLUDES = ['users', 'tags', 'tasklists', 'projects', 'teams', 'companies'] as const;

const userJson = new JsonCache<TwUser>((user) => v3User(user));
const tagJson = new JsonCache<TwTag>((tag) => ({ id: tag.id, name: tag.name, color: `#${tag.color}`, project: tag.projectId === null ? null : rel(tag.projectId, 'projects') }));
const tasklistJson = new JsonCache<TwTasklist>((list) => ({
  id: list.id,
  name: list.name,
  description: list.description,
  project: rel(list.projectId, 'projects'),
  milestone: list.milestoneId === 0 ? null : rel(list.milestoneId, 'milestones'),
  createdAt: iso(list.createdAt),
  updatedAt: iso(list.updatedAt),
  status: list.status,
}));
const projectJson = new JsonCache<TwProject>((project) => ({
  id: project.id,
  name: project.name,
  description: project.description,
  startAt: project.startDate === null ? null : `${project.startDate}T00:00:00Z`,
  endAt: project.endDate === null ? null : `${project.endDate}T00:00:00Z`,
  company: rel(project.companyId, 'companies'),
  projectOwner: project.ownerId === null ? null : rel(project.ownerId, 'users'),
  tags: project.tagIds.map((id) => rel(id, 'tags')),
  createdAt: iso(project.createdAt),
  updatedAt: iso(project.updatedAt),
  completedAt: iso(project.completedAt),
  status: project.status,
}));
const namedJson = new JsonCache<{ id: number; name: string }>((x) => ({ id: x.id, name: x.name }));

/**
 * The `included` object as JSON: for each requested sideload, a map keyed by the string id (reference
 * 2.5). Users are everyone a task refers to (assignees, creator, updater, completer, deleter); projects
 * are those of the tasks' tasklists.
 */
export function v3IncludedJson(tasks: readonly TwTask[], include: ReadonlySet<string>, state: TeamworkState): string {
  const maps = new Map<string, Map<string, string>>();
  const want = (name: string): Map<string, string> | null => {
    if (!include.has(name)) return null;
    let map = maps.get(name);
    if (!map) {
      map = new Map();
      maps.set(name, map);
    }
    return map;
  };
  const users = want('users');
  const tags = want('tags');
  const tasklists = want('tasklists');
  const projects = want('projects');
  const teams = want('teams');
  const companies = want('companies');
  for (const task of tasks) {
    if (users) {
      for (const id of [...task.assigneeUserIds, task.createdBy, task.updatedBy, task.completedBy, task.deletedBy]) {
        const user = id === null ? undefined : state.users.get(id);
        if (user) users.set(String(user.id), userJson.get(user));
      }
    }
    if (tags) {
      for (const id of task.tagIds) {
        const tag = state.tags.get(id);
        if (tag) tags.set(String(id), tagJson.get(tag));
      }
    }
    const list = state.tasklists.get(task.tasklistId);
    if (tasklists && list) tasklists.set(String(list.id), tasklistJson.get(list));
    const project = list ? state.projects.get(list.projectId) : undefined;
    if (projects && project) projects.set(String(project.id), projectJson.get(project));
    if (teams) {
      for (const id of task.assigneeTeamIds) {
        const team = state.teams.get(id);
        if (team) teams.set(String(id), namedJson.get(team));
      }
    }
    if (companies && project) {
      const company = state.companies.get(project.companyId);
      if (company) companies.set(String(company.id), namedJson.get(company));
    }
  }
  return jsonObject([...maps].map(([name, map]) => [name, jsonObject(map)] as const));
}

function v3User(user: TwUser): Record<string, unknown> {
  return {
    id: user.id,
    firstName: user.firstName,
    lastName: user.lastName,
    email: user.email,
    title: user.title,
    type: 'account',
    isAdmin: user.isAdmin,
    company: rel(user.companyId, 'companies'),
    deleted: false,
    createdAt: iso(user.createdAt),
  };
}

// ---------------------------------------------------------------------------------------------------
// v1 REST (reference 2.6, 3.3)

const yyyymmdd = (date: string | null): string => (date === null ? '' : date.replace(/-/g, ''));

/**
 * A v1 `todo-item`: ids quoted, dates `YYYYMMDD` or "", `responsible-party-*` absent when nobody is
 * assigned, `parentTaskId` "" when none, priority "" when none (reference 3.3).
 */
export function v1TodoItem(task: TwTask, state: TeamworkState): Record<string, unknown> {
  const list = state.tasklists.get(task.tasklistId);
  const project = list ? state.projects.get(list.projectId) : undefined;
  const company = project ? state.companies.get(project.companyId) : undefined;
  const creator = state.users.get(task.createdBy);
  const updater = state.users.get(task.updatedBy);
  const item: Record<string, unknown> = {
    id: String(task.id),
    content: task.name,
    description: task.description ?? '',
    'project-id': String(project?.id ?? ''),
    'project-name': project?.name ?? '',
    'todo-list-id': String(task.tasklistId),
    'todo-list-name': list?.name ?? '',
    'company-id': String(company?.id ?? ''),
    'company-name': company?.name ?? '',
    parentTaskId: task.parentTaskId === null ? '' : String(task.parentTaskId),
    status: task.status,
    completed: task.status === 'completed',
    'start-date': yyyymmdd(task.startDate),
    'due-date': yyyymmdd(task.dueDate),
    'due-date-base': yyyymmdd(task.dueDate),
    'created-on': isoSeconds(task.createdAt),
    'last-changed-on': isoSeconds(task.updatedAt),
    'estimated-minutes': task.estimateMinutes,
    progress: task.progress,
    priority: task.priority ?? '',
    private: task.isPrivate ? 1 : 0,
    'creator-id': String(task.createdBy),
    'creator-firstname': creator?.firstName ?? '',
    'creator-lastname': creator?.lastName ?? '',
    'updater-id': String(task.updatedBy),
    'updater-firstname': updater?.firstName ?? '',
    'updater-lastname': updater?.lastName ?? '',
    tags: task.tagIds.map((id) => {
      const tag = state.tags.get(id);
      return { id, name: tag?.name ?? '', color: `#${tag?.color ?? '000000'}` };
    }),
    predecessors: [],
    canComplete: true,
    canEdit: true,
    DLM: 0,
    order: task.displayOrder,
    position: task.displayOrder,
  };
  if (task.completedAt !== null) {
    item.completed_on = isoSeconds(task.completedAt);
    item.completer_id = String(task.completedBy ?? '');
  }
  const assignees = task.assigneeUserIds.map((id) => state.users.get(id)).filter((u): u is TwUser => u !== undefined);
  if (assignees.length > 0) {
    const short = (u: TwUser) => `${u.firstName} ${u.lastName.slice(0, 1)}.`;
    item['responsible-party-ids'] = assignees.map((u) => u.id).join(',');
    item['responsible-party-names'] = assignees.map(short).join('|');
    item['responsible-party-type'] = 'Person';
    item['responsible-party-firstname'] = (assignees[0] as TwUser).firstName;
    item['responsible-party-summary'] = assignees.length === 1 ? short(assignees[0] as TwUser) : `${short(assignees[0] as TwUser)} + ${assignees.length - 1}`;
  }
  return item;
}

// ---------------------------------------------------------------------------------------------------
// Webhooks (reference 1.3 - 1.5)

/** `eventCreator` of a v2 delivery. */
export function eventCreator(user: TwUser | undefined): Record<string, unknown> {
  return {
    id: user?.id ?? 0,
    firstName: user?.firstName ?? '',
    lastName: user?.lastName ?? '',
    avatar: user?.avatarUrl ?? '',
  };
}

const webhookDate = (date: string | null, quirks: TeamworkQuirks): string | null =>
  date === null ? null : quirks.webhookDates === 'timestamp' ? `${date}T00:00:00Z` : date;

/**
 * The v2 JSON body of a task event (reference 1.4): `eventCreator`, `task`, `project`, `taskList`,
 * `users`. No event name in the body; it travels in `X-Projects-Event`. TASK.DELETED follows
 * `quirks.deletedPayload`.
 */
export function v2TaskPayload(
  event: TaskEvent,
  task: TwTask,
  actor: TwUser | undefined,
  state: TeamworkState,
  quirks: TeamworkQuirks,
): Record<string, unknown> {
  if (event === 'TASK.DELETED' && quirks.deletedPayload === 'id-only') {
    return { id: task.id, eventCreator: eventCreator(actor) };
  }
  const list = state.tasklists.get(task.tasklistId);
  const project = list ? state.projects.get(list.projectId) : undefined;
  const tagObjects = (ids: readonly number[]) =>
    ids.map((id) => state.tags.get(id)).filter((t) => t !== undefined).map((t) => ({ id: t.id, name: t.name, color: t.color }));
  return {
    eventCreator: eventCreator(actor),
    task: {
      id: task.id,
      name: task.name,
      description: task.description ?? '',
      priority: task.priority,
      status: task.status,
      assignedUserIds: task.assigneeUserIds,
      parentId: task.parentTaskId ?? 0,
      taskListId: task.tasklistId,
      startDate: webhookDate(task.startDate, quirks),
      dueDate: webhookDate(task.dueDate, quirks),
      progress: task.progress,
      estimatedMinutes: task.estimateMinutes,
      tags: tagObjects(task.tagIds),
      projectId: project?.id ?? 0,
      dateCreated: isoSeconds(task.createdAt),
      dateUpdated: isoSeconds(task.updatedAt),
      hasCustomFields: false,
    },
    project: project
      ? {
          id: project.id,
          name: project.name,
          description: project.description,
          status: project.status,
          startDate: project.startDate,
          endDate: project.endDate,
          tags: tagObjects(project.tagIds),
          ownerId: project.ownerId ?? 0,
          companyId: project.companyId,
          categoryId: project.categoryId,
          dateCreated: isoSeconds(project.createdAt),
        }
      : null,
    taskList: list
      ? {
          id: list.id,
          name: list.name,
          description: list.description,
          status: list.status,
          milestoneId: list.milestoneId,
          projectId: list.projectId,
          templateId: null,
          tags: [],
        }
      : null,
    // GUESS (reference 1.4 [L]): the assignees, as user records.
    users: task.assigneeUserIds
      .map((id) => state.users.get(id))
      .filter((u): u is TwUser => u !== undefined)
      .map((u) => ({ id: u.id, firstName: u.firstName, lastName: u.lastName, email: u.email, avatar: u.avatarUrl })),
  };
}

/**
 * Go-style PascalCase of a camelCase key, with the `Id`/`Ids` initialism upper-cased as Go names do:
 * `taskListId` -> `TaskListID`, `assignedUserIds` -> `AssignedUserIDs`, `id` -> `ID`.
 */
export function pascalKey(key: string): string {
  const pascal = key.charAt(0).toUpperCase() + key.slice(1);
  return pascal.replace(/Id$/, 'ID').replace(/Ids$/, 'IDs');
}

/**
 * The v2 Form body: the JSON payload flattened to dotted PascalCase keys (`Task.ID`, `Task.Name`,
 * `EventCreator.FirstName`; reference 1.5). GUESS: arrays flatten with an index segment
 * (`Task.AssignedUserIDs.0`, `Task.Tags.0.Name`), null becomes "", booleans "true"/"false".
 */
export function flattenForm(value: unknown, prefix = '', out: Array<[string, string]> = []): Array<[string, string]> {
  if (Array.isArray(value)) {
    value.forEach((item, i) => flattenForm(item, `${prefix}.${i}`, out));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      flattenForm(child, prefix === '' ? pascalKey(key) : `${prefix}.${pascalKey(key)}`, out);
    }
  } else {
    out.push([prefix, value === null || value === undefined ? '' : String(value)]);
  }
  return out;
}

/**
 * A legacy v1 Form body (reference 1.3): `event`, `objectId`, `accountId`, `userId`, plus `projectId`
 * for TASK.DELETED (the item can no longer be looked up). Casing per `quirks.v1FormCasing`.
 */
export function v1FormFields(
  event: TaskEvent,
  task: TwTask,
  actorId: number,
  state: TeamworkState,
  quirks: TeamworkQuirks,
): Array<[string, string]> {
  const pascal = quirks.v1FormCasing === 'pascal';
  const fields: Array<[string, string]> = [
    [pascal ? 'AccountID' : 'accountId', String(state.accountId)],
    [pascal ? 'Event' : 'event', event],
    [pascal ? 'ObjectID' : 'objectId', String(task.id)],
    [pascal ? 'UserId' : 'userId', String(actorId)],
  ];
  if (event === 'TASK.DELETED') fields.push([pascal ? 'ProjectID' : 'projectId', String(state.projectIdOf(task))]);
  return fields;
}
