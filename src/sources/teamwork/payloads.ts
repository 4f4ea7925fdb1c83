/**
 * Teamwork's payload shapes, as zod schemas. These schemas check types and nothing more: they never
 * rename, coerce or default a value, so what they return is the vendor object itself (kept as `raw`).
 * Normalising (ids to text, `0`/`""` to null, dates) is map.ts's job.
 *
 * They are deliberately tolerant of the type drift Teamwork is known for (reference §6.11): ids and
 * counts as numbers or numeric strings, `priority` null or "", `parentId` 0 or "" for "none", tag colours
 * with or without `#`, `responsible-party-ids` as a comma-separated string. Unknown keys are kept.
 *
 * Shapes (reference §1.3-1.5, §2.3-2.6, §3):
 * - v2 webhook, JSON: `{ eventCreator, task, project, taskList, users }`, camelCase, nested.
 * - v2 webhook, Form: the same structure flattened to dotted PascalCase keys (`Task.ID`, `Task.Name`);
 *   webhook.ts unflattens it, then it is read with the v2 schemas, whose keys match in any casing.
 * - v1 webhook, Form: `event`, `objectId`, `accountId`, `userId`, `projectId`, in any key casing.
 * - v3 REST: `{ task, included }` and `{ tasks, included, meta.page }`; relationships `{ id, type }`.
 * - v1 REST: `{ "todo-item": {...} }` with kebab-case keys.
 * - v1 webhooks API: `{ webhook: {...} }`, `{ webhooks: [...] }`.
 */
import { z } from 'zod';
import { canonicalTaskId } from '../../model.ts';

/** A zod error as one line of paths and rules (never values: a body may hold customer data). */
export function describeIssues(error: z.ZodError): string {
  const list = error.issues.slice(0, 3).map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`);
  const more = error.issues.length > 3 ? ` (+${error.issues.length - 3} more)` : '';
  return list.join('; ') + more;
}

// ---------------------------------------------------------------------------------------------------
// Primitives

/**
 * An id: a whole number, sent as a number or (v1, forms) as a numeric string. A number beyond 2^53 is
 * refused: JavaScript could not keep it exactly (send it as a string).
 */
export const Id = z.union([z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER, 'expected a numeric id'), z.string().regex(/^\s*\d+\s*$/, 'expected a numeric id')]);
export type Id = z.infer<typeof Id>;

/**
 * The one text of an id, whatever its spelling: `4343`, `"04343"` and `" 004343 "` are all `4343`.
 * Every id we store or key by (the task id, the entity key, the ids a task refers to) goes through
 * this, so one task is one row on every path (webhooks in any format, API reads, backfill). The rule is
 * model.ts `canonicalTaskId`, which the database migrations share.
 */
export const canonicalId = canonicalTaskId;

/** An optional reference where `0`, `""` and null all mean "none" (v2 `parentId`, v1 `parentTaskId`). */
export const Ref = z.union([z.number().int().nonnegative(), z.string().regex(/^\s*\d*\s*$/, 'expected a numeric id or ""'), z.null()]);
export type Ref = z.infer<typeof Ref>;

/** A count or percentage: a number, a numeric string, "" or null. */
export const Num = z.union([z.number(), z.string().regex(/^\s*(-?\d+(\.\d+)?)?\s*$/, 'expected a number'), z.null()]);
export type Num = z.infer<typeof Num>;

/** Free text that may be absent or null. */
const Text = z.string().nullish();

/** A timestamp or date as the vendor wrote it (ISO-8601, `YYYY-MM-DD`, `YYYYMMDD`); parsed in map.ts. */
const Stamp = z.string().nullish();

/** A v1 boolean: true/false, 1/0, or the same as strings. */
export const Flag = z.union([z.boolean(), z.literal(0), z.literal(1), z.enum(['true', 'false', '1', '0', ''])]);

/**
 * A list of ids: a JSON array, one id, or (forms, v1) a comma-separated string. Kept as sent.
 */
export const IdList = z.union([z.array(Id), Id, z.string().regex(/^[\d\s,]*$/, 'expected comma-separated ids'), z.null()]);
export type IdList = z.infer<typeof IdList>;

/**
 * Reduces a key to letters and digits in lower case, so `objectId`, `ObjectID`, `object_id` and
 * `OBJECTID` are the same key.
 */
export function keyToken(key: string): string {
  return key.replace(/[^a-z0-9]/gi, '').toLowerCase();
}

/** A member of a body by name in any casing (as the payload schemas match keys); the exact name first. */
export function member(object: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(object, name)) return object[name];
  const token = keyToken(name);
  for (const key of Object.keys(object)) if (keyToken(key) === token) return object[key];
  return undefined;
}

/**
 * An object schema whose keys match in any casing (and with `_`/`-` ignored). The first spelling of a
 * known key wins when a body has several; unknown keys are kept as sent. Used for webhook bodies, whose
 * casing differs between Teamwork's own pages (reference §1.3) and between JSON and Form (§1.5).
 */
export function ciObject<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  const byToken = new Map(Object.keys(shape).map((k) => [keyToken(k), k]));
  return z.preprocess((input) => {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
    const out: Record<string, unknown> = {};
    const entries = Object.entries(input as Record<string, unknown>);
    for (const [key, value] of entries) if (key in shape) out[key] = value;
    for (const [key, value] of entries) {
      if (key in shape) continue;
      const known = byToken.get(keyToken(key));
      if (known === undefined) out[key] = value;
      else if (!(known in out)) out[known] = value;
    }
    return out;
  }, z.looseObject(shape));
}

/**
 * A nested object or list that may be absent; "" counts as null, because a v2 Form body writes null
 * as an empty value (`Project=`).
 */
function blankable<T extends z.ZodType>(schema: T) {
  return z.preprocess((input) => (input === '' ? null : input), schema.nullish());
}

/**
 * A map keyed by id; an array of objects with `id` is accepted and keyed by it. Keys are canonical
 * (canonicalId), so a lookup by a canonical id finds `"0123"` and `123` alike.
 */
function idMap<T extends z.ZodType>(item: T) {
  return z.preprocess((input) => {
    // A Map, then Object.fromEntries: every key (even `__proto__`) becomes an own property.
    const out = new Map<string, unknown>();
    if (Array.isArray(input)) {
      for (const entry of input) {
        const id = (entry as { id?: unknown } | null)?.id;
        if (typeof id === 'number' || typeof id === 'string') out.set(canonicalId(id), entry);
      }
      return Object.fromEntries(out);
    }
    if (typeof input !== 'object' || input === null) return input;
    for (const [key, entry] of Object.entries(input)) {
      const id = canonicalId(key);
      if (!out.has(id) || id === key) out.set(id, entry);
    }
    return Object.fromEntries(out);
  }, z.record(z.string(), item));
}

// ---------------------------------------------------------------------------------------------------
// v2 webhook bodies (JSON, and Form once unflattened)

export const V2Person = ciObject({
  id: Id.optional(),
  firstName: Text,
  lastName: Text,
  email: Text,
  emailAddress: Text,
});
export type V2Person = z.infer<typeof V2Person>;

export const V2Tag = z.union([
  ciObject({ id: Id.optional(), name: Text, color: Text }),
  z.string(),
]);
export type V2Tag = z.infer<typeof V2Tag>;

/** The `task` of a v2 webhook (reference §1.4, §3.2). Every field but `id` may be missing. */
export const V2Task = ciObject({
  id: Id,
  name: Text,
  description: Text,
  priority: Text,
  status: Text,
  assignedUserIds: IdList.optional(),
  parentId: Ref.optional(),
  taskListId: Ref.optional(),
  projectId: Ref.optional(),
  startDate: Stamp,
  dueDate: Stamp,
  progress: Num.optional(),
  estimatedMinutes: Num.optional(),
  tags: blankable(z.array(V2Tag)),
  dateCreated: Stamp,
  dateUpdated: Stamp,
  /** Not in the one published capture; read when present. */
  dateCompleted: Stamp,
  completedAt: Stamp,
  dateDeleted: Stamp,
  deletedAt: Stamp,
  createdBy: Ref.optional(),
  createdByUserId: Ref.optional(),
  hasCustomFields: z.union([z.boolean(), z.string()]).optional(),
});
export type V2Task = z.infer<typeof V2Task>;

export const V2Project = ciObject({ id: Id, name: Text });
export type V2Project = z.infer<typeof V2Project>;

export const V2TaskList = ciObject({ id: Id, name: Text, projectId: Ref.optional() });
export type V2TaskList = z.infer<typeof V2TaskList>;

/**
 * A v2 webhook body. There is no event name in it (it comes from `X-Projects-Event`); `event` is read
 * in case a relay adds one. A TASK.DELETED body may be only `{ id, eventCreator }` (reference §1.4).
 */
export const V2WebhookBody = ciObject({
  event: z.string().optional(),
  eventCreator: blankable(V2Person),
  task: blankable(V2Task),
  project: blankable(V2Project),
  taskList: blankable(V2TaskList),
  users: blankable(z.array(V2Person)),
  id: Id.optional(),
  /** A v1-style id in a JSON body (some relays re-encode v1 forms as JSON). */
  objectId: Id.optional(),
});
export type V2WebhookBody = z.infer<typeof V2WebhookBody>;

// ---------------------------------------------------------------------------------------------------
// v1 webhook body (Form)

/** The legacy v1 form: no task data, only what changed and who did it (reference §1.3). */
export const V1WebhookBody = ciObject({
  /** Absent when only the X-Projects-Event header names the event. */
  event: z.string().optional(),
  objectId: Id,
  accountId: z.string().optional(),
  userId: z.string().optional(),
  projectId: z.string().optional(),
});
export type V1WebhookBody = z.infer<typeof V1WebhookBody>;

// ---------------------------------------------------------------------------------------------------
// v3 REST

/** `{ id, type }`: a link to another record, resolved through `included` (reference §2.5). */
export const V3Relationship = z.looseObject({ id: Id, type: z.string().optional() });
export type V3Relationship = z.infer<typeof V3Relationship>;

/** A v3 task (reference §3.1). */
export const V3Task = z.looseObject({
  id: Id,
  name: Text,
  description: Text,
  priority: Text,
  progress: Num.optional(),
  status: Text,
  startDate: Stamp,
  dueDate: Stamp,
  estimateMinutes: Num.optional(),
  tasklist: V3Relationship.nullish(),
  tasklistId: Ref.optional(),
  projectId: Ref.optional(),
  parentTask: V3Relationship.nullish(),
  parentTaskId: Ref.optional(),
  assignees: z.array(V3Relationship).nullish(),
  tags: z.array(V3Relationship).nullish(),
  createdBy: Ref.optional(),
  updatedBy: Ref.optional(),
  completedBy: Ref.optional(),
  deletedBy: Ref.optional(),
  createdAt: Stamp,
  updatedAt: Stamp,
  completedAt: Stamp,
  deletedAt: Stamp,
});
export type V3Task = z.infer<typeof V3Task>;

export const V3User = z.looseObject({ id: Id, firstName: Text, lastName: Text, email: Text });
export type V3User = z.infer<typeof V3User>;
export const V3Tag = z.looseObject({ id: Id, name: Text, color: Text });
export type V3Tag = z.infer<typeof V3Tag>;
export const V3Tasklist = z.looseObject({ id: Id, name: Text, project: V3Relationship.nullish(), projectId: Ref.optional() });
export type V3Tasklist = z.infer<typeof V3Tasklist>;
export const V3Project = z.looseObject({ id: Id, name: Text });
export type V3Project = z.infer<typeof V3Project>;
/** Teams and companies can be assignees; only their names matter here. */
export const V3Named = z.looseObject({ id: Id, name: Text });
export type V3Named = z.infer<typeof V3Named>;

/** Side-loaded records, keyed by string id (reference §2.5). */
export const V3Included = z.looseObject({
  users: idMap(V3User).optional(),
  tags: idMap(V3Tag).optional(),
  tasklists: idMap(V3Tasklist).optional(),
  projects: idMap(V3Project).optional(),
  teams: idMap(V3Named).optional(),
  companies: idMap(V3Named).optional(),
});
export type V3Included = z.infer<typeof V3Included>;

/** `GET /projects/api/v3/tasks/{id}.json` (reference §2.3). */
export const V3TaskResponse = z.looseObject({ task: V3Task, included: V3Included.optional() });
export type V3TaskResponse = z.infer<typeof V3TaskResponse>;

/** `GET /projects/api/v3/tasks.json` (reference §2.2, §2.4). Paginate on `hasMore`, never `count`. */
export const V3TaskListResponse = z.looseObject({
  tasks: z.array(V3Task),
  included: V3Included.optional(),
  meta: z.looseObject({
    page: z.looseObject({
      pageOffset: z.number().optional(),
      pageSize: z.number().optional(),
      count: z.number().optional(),
      hasMore: z.union([z.boolean(), z.enum(['true', 'false'])]).optional(),
    }).optional(),
  }).optional(),
});
export type V3TaskListResponse = z.infer<typeof V3TaskListResponse>;

// ---------------------------------------------------------------------------------------------------
// v1 REST

const V1Tag = z.looseObject({ id: Id.optional(), name: Text, color: Text });

/** A v1 `todo-item` (reference §3.3). */
export const V1TodoItem = z.looseObject({
  id: Id,
  content: Text,
  description: Text,
  'project-id': Ref.optional(),
  'project-name': Text,
  'todo-list-id': Ref.optional(),
  'todo-list-name': Text,
  parentTaskId: Ref.optional(),
  status: Text,
  completed: Flag.optional(),
  completed_on: Stamp,
  'completed-on': Stamp,
  'start-date': Stamp,
  'due-date': Stamp,
  'created-on': Stamp,
  'last-changed-on': Stamp,
  'responsible-party-ids': z.union([z.string(), z.number(), z.null()]).optional(),
  'responsible-party-names': Text,
  'estimated-minutes': Num.optional(),
  progress: Num.optional(),
  priority: Text,
  'creator-id': Ref.optional(),
  'creator-firstname': Text,
  'creator-lastname': Text,
  'updater-id': Ref.optional(),
  'updater-firstname': Text,
  'updater-lastname': Text,
  tags: z.array(V1Tag).nullish(),
});
export type V1TodoItem = z.infer<typeof V1TodoItem>;

/** `GET /tasks/{id}.json` (reference §2.6). */
export const V1TaskResponse = z.looseObject({ STATUS: z.string().optional(), 'todo-item': V1TodoItem });
export type V1TaskResponse = z.infer<typeof V1TaskResponse>;

// ---------------------------------------------------------------------------------------------------
// Webhooks API (reference §5; shape partly unverified)

export const Webhook = z.looseObject({
  id: Id,
  event: z.string(),
  url: z.string(),
  version: z.union([z.string(), z.number()]).optional(),
  contentType: z.string().optional(),
  status: z.string().optional(),
});
export type Webhook = z.infer<typeof Webhook>;

export const WebhookListResponse = z.looseObject({ webhooks: z.array(Webhook) });
/** The create answer: `{ webhook: {...} }`; a bare `{ id }` is accepted too. */
export const WebhookCreateResponse = z
  .looseObject({ webhook: z.looseObject({ id: Id }).optional(), id: Id.optional() })
  .refine((v) => v.webhook !== undefined || v.id !== undefined, 'expected webhook.id or id');

// ---------------------------------------------------------------------------------------------------
// What our events carry on the queue

export const WEBHOOK_FORMATS = ['v2-json', 'v2-form', 'v1-form'] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

/** The payload of a webhook event: the body, already parsed (forms unflattened), and what we read from it. */
export const WebhookEventPayload = z.object({
  format: z.enum(WEBHOOK_FORMATS),
  taskId: z.string().regex(/^\d+$/),
  body: z.record(z.string(), z.unknown()),
});
export type WebhookEventPayload = z.infer<typeof WebhookEventPayload>;

/** The payload of a `task.snapshot` event: a v3 task and the side-loaded records it refers to. */
export const SnapshotEventPayload = z.object({ task: V3Task, included: V3Included });
export type SnapshotEventPayload = z.infer<typeof SnapshotEventPayload>;
