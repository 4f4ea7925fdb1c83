/**
 * Teamwork REST routes: v3 task list and single task, v1 single task, and the webhook registration
 * endpoints. Authentication and rate limiting run before these (see `index.ts`). Section numbers refer
 * to /work/shared/reference/teamwork.md.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { JsonCache, jsonArrayParts, jsonBytes, type SimClock } from '../common.ts';
import { isoSeconds, type TwTask, type TwWebhook } from './model.ts';
import { v1TodoItem, v3IncludedJson, v3Task, type TeamworkQuirks, type V3RenderOptions } from './payloads.ts';
import type { TeamworkState } from './state.ts';

export interface TeamworkApiContext {
  state: TeamworkState;
  quirks: TeamworkQuirks;
  clock: SimClock;
}

/** v3 errors. GUESS (reference: "v3 error body shape for 404/422" uncertain): JSON:API-style `errors`. */
function v3Error(reply: FastifyReply, status: number, title: string, detail: string): FastifyReply {
  return reply.code(status).send({ errors: [{ title, detail }] });
}

/** v1 errors: `{"MESSAGE": "...", "STATUS": "Error"}` (the classic v1 envelope). */
function v1Error(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send({ MESSAGE: message, STATUS: 'Error' });
}

class BadParam extends Error {}

type Query = Record<string, string | string[] | undefined>;

function one(query: Query, name: string): string | undefined {
  const value = query[name];
  return Array.isArray(value) ? value[value.length - 1] : value;
}

function flag(query: Query, name: string): boolean {
  const value = one(query, name);
  return value === 'true' || value === '1';
}

/** RFC 3339 time -> ms; rejects garbage and (for updatedAfter) dates before 2007-10-01 (reference 2.2). */
function time(query: Query, name: string, floor?: number): number | undefined {
  const value = one(query, name);
  if (value === undefined || value === '') return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new BadParam(`${name} must be an RFC 3339 date-time`);
  if (floor !== undefined && ms < floor) throw new BadParam(`${name} must not be before 2007-10-01`);
  return ms;
}

function date(query: Query, name: string): string | undefined {
  const value = one(query, name);
  if (value === undefined || value === '') return undefined;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new BadParam(`${name} must be YYYY-MM-DD`);
  return value;
}

function ids(query: Query, name: string): number[] | undefined {
  const value = one(query, name);
  if (value === undefined || value === '') return undefined;
  const out = value.split(',').map((s) => Number(s.trim()));
  if (out.some((n) => !Number.isInteger(n))) throw new BadParam(`${name} must be a comma-separated list of ids`);
  return out;
}

function int(query: Query, name: string, fallback: number): number {
  const value = one(query, name);
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new BadParam(`${name} must be an integer`);
  return n;
}

const ORDER_KEYS: Record<string, (t: TwTask) => number | string | null> = {
  duedate: (t) => t.dueDate,
  startdate: (t) => t.startDate,
  createdat: (t) => t.createdAt,
  updatedat: (t) => t.updatedAt,
  completedat: (t) => t.completedAt,
  id: (t) => t.id,
  name: (t) => t.name.toLowerCase(),
  priority: (t) => (t.priority === 'high' ? 3 : t.priority === 'medium' ? 2 : t.priority === 'low' ? 1 : 0),
};

const UPDATED_AFTER_FLOOR = Date.UTC(2007, 9, 1);
/** The most records one paged query may walk (reference 2.4, [M]). */
const MAX_RECORDS_PER_QUERY = 50_000;
const MAX_PAGE_SIZE = 500;

function renderOptions(query: Query): V3RenderOptions {
  const fields = one(query, 'fields[tasks]');
  return {
    related: flag(query, 'includeRelatedTasks'),
    completedSubtasks: flag(query, 'includeCompletedPredecessors'),
    fields: fields ? new Set(fields.split(',').map((f) => f.trim())) : null,
  };
}

function includeSet(query: Query): Set<string> {
  const value = one(query, 'include') ?? '';
  return new Set(value.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''));
}

/**
 * The v3 list (reference 2.2, 2.4): hidden unless asked for are completed tasks
 * (`includeCompletedTasks`), tasks of completed tasklists (`showCompletedLists`), tasks of archived
 * projects (`includeArchivedProjects`) and deleted tasks (see `TeamworkQuirks.deletedInLists`). Time
 * filters are strict (`updatedAfter=T` means updatedAt > T). Ordered by `orderBy` (default duedate,
 * nulls last) then id; `meta.page.count` follows the newer documented behaviour: page*pageSize+1 while
 * `hasMore`, the true total on the last page, absent with `skipCounts=true`.
 */
function listTasks(ctx: TeamworkApiContext, query: Query, scope: { projectId?: number; tasklistId?: number }) {
  const { state, quirks } = ctx;
  const page = int(query, 'page', 1);
  const pageSize = int(query, 'pageSize', 50);
  if (page < 1) throw new BadParam('page must be 1 or more');
  if (pageSize < 1 || pageSize > MAX_PAGE_SIZE) throw new BadParam(`pageSize must be between 1 and ${MAX_PAGE_SIZE}`);
  if ((page - 1) * pageSize >= MAX_RECORDS_PER_QUERY) throw new BadParam(`a query may page through at most ${MAX_RECORDS_PER_QUERY} records`);

  const updatedAfter = time(query, 'updatedAfter', UPDATED_AFTER_FLOOR);
  const updatedBefore = time(query, 'updatedBefore');
  const createdAfter = time(query, 'createdAfter');
  const createdBefore = time(query, 'createdBefore');
  const completedAfter = time(query, 'completedAfter');
  const completedBefore = time(query, 'completedBefore');
  const deletedAfter = time(query, 'deletedAfter');
  const dueAfter = date(query, 'dueAfter');
  const dueBefore = date(query, 'dueBefore');
  const projectIds = ids(query, 'projectIds');
  const tasklistIds = ids(query, 'tasklistIds');
  const taskIds = ids(query, 'ids');
  const responsible = ids(query, 'responsiblePartyIds');
  const creators = ids(query, 'createdByUserIds');
  const tagIds = ids(query, 'tagIds');
  const matchAllTags = flag(query, 'matchAllTags');
  const parentTaskId = one(query, 'parentTaskId');
  const search = one(query, 'searchTerm')?.toLowerCase();
  const includeCompleted = flag(query, 'includeCompletedTasks');
  const showCompletedLists = flag(query, 'showCompletedLists');
  const includeArchived = flag(query, 'includeArchivedProjects');
  const showDeleted = flag(query, 'showDeleted');
  const onlyUnassigned = flag(query, 'onlyUnassignedTasks');
  const orderBy = (one(query, 'orderBy') ?? 'duedate').toLowerCase();
  const orderMode = (one(query, 'orderMode') ?? 'asc').toLowerCase();
  const key = ORDER_KEYS[orderBy];
  if (!key) throw new BadParam(`orderBy must be one of ${Object.keys(ORDER_KEYS).join(', ')}`);
  if (orderMode !== 'asc' && orderMode !== 'desc') throw new BadParam('orderMode must be asc or desc');

  const matches = state.tasks.visible().filter((task) => {
    const list = state.tasklists.get(task.tasklistId);
    const project = list ? state.projects.get(list.projectId) : undefined;
    if (!list || !project) return false;
    if (task.status === 'deleted') {
      if (quirks.deletedInLists === 'never') return false;
      const asked = showDeleted || (deletedAfter !== undefined && task.deletedAt !== null && task.deletedAt > deletedAfter);
      if (!asked) return false;
    } else if (deletedAfter !== undefined) {
      return false;
    }
    if (task.status === 'completed' && !includeCompleted) return false;
    if (list.status === 'completed' && !showCompletedLists) return false;
    if (project.status === 'archived' && !includeArchived) return false;
    if (scope.projectId !== undefined && project.id !== scope.projectId) return false;
    if (scope.tasklistId !== undefined && list.id !== scope.tasklistId) return false;
    if (projectIds && !projectIds.includes(project.id)) return false;
    if (tasklistIds && !tasklistIds.includes(list.id)) return false;
    if (taskIds && !taskIds.includes(task.id)) return false;
    if (parentTaskId !== undefined && parentTaskId !== '' && String(task.parentTaskId ?? 0) !== parentTaskId) return false;
    if (updatedAfter !== undefined && !(task.updatedAt > updatedAfter)) return false;
    if (updatedBefore !== undefined && !(task.updatedAt < updatedBefore)) return false;
    if (createdAfter !== undefined && !(task.createdAt > createdAfter)) return false;
    if (createdBefore !== undefined && !(task.createdAt < createdBefore)) return false;
    if (completedAfter !== undefined && !(task.completedAt !== null && task.completedAt > completedAfter)) return false;
    if (completedBefore !== undefined && !(task.completedAt !== null && task.completedAt < completedBefore)) return false;
    if (dueAfter !== undefined && !(task.dueDate !== null && task.dueDate > dueAfter)) return false;
    if (dueBefore !== undefined && !(task.dueDate !== null && task.dueDate < dueBefore)) return false;
    if (responsible && !task.assigneeUserIds.some((id) => responsible.includes(id))) return false;
    if (onlyUnassigned && task.assigneeUserIds.length + task.assigneeTeamIds.length > 0) return false;
    if (creators && !creators.includes(task.createdBy)) return false;
    if (tagIds) {
      const hit = matchAllTags ? tagIds.every((id) => task.tagIds.includes(id)) : tagIds.some((id) => task.tagIds.includes(id));
      if (!hit) return false;
    }
    if (search && !`${task.name}\n${task.description ?? ''}`.toLowerCase().includes(search)) return false;
    return true;
  });

  const direction = orderMode === 'desc' ? -1 : 1;
  matches.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    if (ka !== kb) {
      if (ka === null) return 1;
      if (kb === null) return -1;
      return (ka < kb ? -1 : 1) * direction;
    }
    return a.id - b.id;
  });

  const start = (page - 1) * pageSize;
  const rows = matches.slice(start, start + pageSize);
  const hasMore = start + pageSize < matches.length;
  const meta: Record<string, unknown> = { pageOffset: page - 1, pageSize, hasMore };
  if (!flag(query, 'skipCounts')) meta.count = hasMore ? page * pageSize + 1 : matches.length;
  const options = renderOptions(query);
  const parts: Array<string | Buffer> = ['{"tasks":', ...jsonArrayParts(rows.map((t) => v3TaskBytes(t, state, options))), `,"meta":${JSON.stringify({ page: meta })}`];
  const include = includeSet(query);
  if (include.size > 0) parts.push(`,"included":${v3IncludedJson(rows, include, state)}`);
  parts.push('}');
  return jsonBytes(parts);
}

/**
 * Rendered task JSON, cached per task version for the common case (no related tasks, no sparse
 * fieldset). The v1 view is cached the same way; both depend only on the version and on records the
 * simulator replaces rather than edits.
 */
function v3TaskBytes(task: TwTask, state: TeamworkState, options: V3RenderOptions): Buffer {
  if (options.related || options.fields) return Buffer.from(JSON.stringify(v3Task(task, state, options)), 'utf8');
  let cache = v3Caches.get(state);
  if (!cache) {
    cache = new JsonCache<TwTask>((t) => v3Task(t, state, options));
    v3Caches.set(state, cache);
  }
  return cache.bytes(task);
}
const v3Caches = new WeakMap<TeamworkState, JsonCache<TwTask>>();
const v1Caches = new WeakMap<TeamworkState, JsonCache<TwTask>>();

function v1ItemBytes(task: TwTask, state: TeamworkState): Buffer {
  let cache = v1Caches.get(state);
  if (!cache) {
    cache = new JsonCache<TwTask>((t) => v1TodoItem(t, state));
    v1Caches.set(state, cache);
  }
  return cache.bytes(task);
}

/** The webhook record as the registration API shows it. GUESS (reference 5, [L]): fields echo the request. */
export function webhookJson(hook: TwWebhook): Record<string, unknown> {
  return {
    id: hook.id,
    event: hook.event,
    url: hook.url,
    version: String(hook.version),
    contentType: hook.contentType,
    token: hook.token,
    projectId: hook.projectId,
    status: hook.status,
    createdAt: isoSeconds(hook.createdAt),
  };
}

export interface WebhookRegistry {
  register(input: WebhookInput): TwWebhook;
  update(id: number, input: Partial<WebhookInput>): TwWebhook | undefined;
  remove(id: number): boolean;
  list(projectId?: number): TwWebhook[];
}

export interface WebhookInput {
  event: string;
  url: string;
  version?: 1 | 2 | '1' | '2';
  contentType?: string;
  token?: string;
  projectId?: number;
}

/** Reads `{"webhook": {...}}`; accepts the split `event:"TASK"` + `status:"CREATED"` form too (reference 5). */
function readWebhookBody(body: unknown): Partial<WebhookInput> {
  const hook = (body as { webhook?: Record<string, unknown> } | null)?.webhook;
  if (!hook || typeof hook !== 'object') throw new BadParam('body must be {"webhook": {...}}');
  let event = typeof hook.event === 'string' ? hook.event : undefined;
  if (event !== undefined && !event.includes('.') && typeof hook.status === 'string') event = `${event}.${hook.status}`;
  const out: Partial<WebhookInput> = {};
  if (event !== undefined) out.event = event.toUpperCase();
  if (typeof hook.url === 'string') out.url = hook.url;
  if (hook.version !== undefined) out.version = String(hook.version) as '1' | '2';
  if (typeof hook.contentType === 'string') out.contentType = hook.contentType;
  if (typeof hook.token === 'string') out.token = hook.token;
  return out;
}

export function registerTeamworkRoutes(app: FastifyInstance, ctx: TeamworkApiContext, registry: WebhookRegistry): void {
  const { state } = ctx;

  const list = (scope: (params: Record<string, string>) => { projectId?: number; tasklistId?: number }) =>
    async (request: { query: unknown; params: unknown }, reply: FastifyReply) => {
      try {
        return reply.type('application/json; charset=utf-8').send(listTasks(ctx, request.query as Query, scope(request.params as Record<string, string>)));
      } catch (err) {
        if (err instanceof BadParam) return v3Error(reply, 400, 'Bad Request', err.message);
        throw err;
      }
    };
  app.get('/projects/api/v3/tasks.json', list(() => ({})));
  app.get('/projects/api/v3/projects/:projectId/tasks.json', list((p) => ({ projectId: Number(p.projectId) })));
  app.get('/projects/api/v3/tasklists/:tasklistId/tasks.json', list((p) => ({ tasklistId: Number(p.tasklistId) })));

  // Single task (reference 2.3): deleted -> 200 with status "deleted", or 404 with hideDeleted=true.
  app.get('/projects/api/v3/tasks/:id.json', async (request, reply) => {
    const query = request.query as Query;
    const id = Number((request.params as { id: string }).id);
    const task = Number.isInteger(id) ? state.visibleTask(id) : undefined;
    if (!task || (task.status === 'deleted' && flag(query, 'hideDeleted'))) {
      return v3Error(reply, 404, 'Not Found', `task ${(request.params as { id: string }).id} not found`);
    }
    const body = jsonBytes(['{"task":', v3TaskBytes(task, state, renderOptions(query)), `,"included":${v3IncludedJson([task], includeSet(query), state)}}`]);
    return reply.type('application/json; charset=utf-8').send(body);
  });

  // v1 single task (reference 2.6, 3.3).
  app.get('/tasks/:id.json', async (request, reply) => {
    const id = Number((request.params as { id: string }).id);
    const task = Number.isInteger(id) ? state.visibleTask(id) : undefined;
    if (!task || (task.status === 'deleted' && ctx.quirks.v1DeletedTask === '404')) {
      return v1Error(reply, 404, 'Not found');
    }
    return reply.type('application/json; charset=utf-8').send(jsonBytes(['{"STATUS":"OK","todo-item":', v1ItemBytes(task, state), '}']));
  });

  // Webhook registration (reference 5; [L]). Site-level and project-level, under /projects/api/v1 and
  // at the legacy root paths.
  const create = (projectId: (p: Record<string, string>) => number) =>
    async (request: { body: unknown; params: unknown }, reply: FastifyReply) => {
      try {
        const input = readWebhookBody(request.body);
        if (!input.event || !input.url) throw new BadParam('webhook.event and webhook.url are required');
        const hook = registry.register({ ...input, event: input.event, url: input.url, projectId: projectId(request.params as Record<string, string>) });
        return reply.code(201).send({ webhook: webhookJson(hook) });
      } catch (err) {
        if (err instanceof BadParam || err instanceof WebhookInputError) return v1Error(reply, 400, err.message);
        throw err;
      }
    };
  const listHooks = (projectId: (p: Record<string, string>) => number | undefined) =>
    async (request: { params: unknown }) => ({ webhooks: registry.list(projectId(request.params as Record<string, string>)).map(webhookJson) });
  const update = async (request: { body: unknown; params: unknown }, reply: FastifyReply) => {
    try {
      const hook = registry.update(Number((request.params as { id: string }).id), readWebhookBody(request.body));
      if (!hook) return v1Error(reply, 404, 'Webhook not found');
      return { webhook: webhookJson(hook) };
    } catch (err) {
      if (err instanceof BadParam || err instanceof WebhookInputError) return v1Error(reply, 400, err.message);
      throw err;
    }
  };
  const remove = async (request: { params: unknown }, reply: FastifyReply) => {
    if (!registry.remove(Number((request.params as { id: string }).id))) return v1Error(reply, 404, 'Webhook not found');
    return { STATUS: 'OK' };
  };
  for (const prefix of ['/projects/api/v1', '']) {
    app.post(`${prefix}/webhooks.json`, create(() => 0));
    app.get(`${prefix}/webhooks.json`, listHooks(() => undefined));
    app.post(`${prefix}/projects/:projectId/webhooks.json`, create((p) => Number(p.projectId)));
    app.get(`${prefix}/projects/:projectId/webhooks.json`, listHooks((p) => Number(p.projectId)));
    app.put(`${prefix}/webhooks/:id.json`, update);
    app.delete(`${prefix}/webhooks/:id.json`, remove);
  }
}

/** A registration the simulator refuses (bad event, URL or content type). */
export class WebhookInputError extends Error {}
