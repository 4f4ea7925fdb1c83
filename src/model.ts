/**
 * Canonical records and the words we use for them.
 *
 * Glossary (code, logs, docs and tests use only these words):
 * - delivery     One HTTP request a vendor makes to one of our webhook endpoints. A delivery is verified,
 *                then turned into zero or more events. Vendors retry deliveries, so the same change may
 *                arrive more than once.
 * - event        One unit of work on the queue (`QueueEvent`): made from a delivery, or from an item a
 *                backfill found. Events are immutable once enqueued.
 * - source       A vendor integration (`teamwork`, `missive`): it verifies and parses deliveries, handles
 *                events and runs backfills. All vendor knowledge lives in `src/sources/<vendor>/`.
 * - handler      The part of a source that turns one event into changes, fetching the full object from
 *                the vendor API when the event carries too little.
 * - changes      What a handler returns: canonical records to upsert and ids to mark deleted. Sources
 *                never write to the database; the dispatcher does.
 * - backend      One implementation of the `Database` contract (sqlite, postgres, airtable).
 * - checkpoint   How far a source's backfill has got: the newest vendor update time seen and a cursor.
 * - attempt      One try at handling an event and writing its changes. Attempts are counted from 1.
 * - dead letter  An event that failed permanently, or `MAX_QUEUE_ATTEMPTS` times; kept in the dead-letter
 *                file with its error until an operator replays it.
 * - stale write  A write whose vendor update time is older than the stored one, or that has none while the
 *                stored row has one; skipped and counted.
 *
 * Times are `Date` objects in memory and UTC ISO-8601 strings on disk and in JSON. Date-only vendor
 * fields (a task's start and due dates) stay `YYYY-MM-DD` strings: shifting them by a time zone would
 * change the day.
 */
import { z } from 'zod';

export const SOURCE_NAMES = ['teamwork', 'missive'] as const;
export const SourceName = z.enum(SOURCE_NAMES);
export type SourceName = z.infer<typeof SourceName>;

/** A UTC instant. Accepts a Date or an ISO-8601 string with a zone; always yields a Date. */
const Instant = z.coerce.date();
/** A calendar day, `YYYY-MM-DD`, with no time zone. */
export const DateOnly = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD');

/** A person in a vendor: a Teamwork assignee or creator, a Missive user. */
export const Person = z.object({
  id: z.string().nullable(),
  name: z.string().nullable(),
  email: z.string().nullable(),
});
export type Person = z.infer<typeof Person>;

/** One email address with its display name, as in a From or To header. */
export const Address = z.object({
  name: z.string().nullable(),
  address: z.string(),
});
export type Address = z.infer<typeof Address>;

/**
 * One id, one spelling (issue 14, item 4): every id stored or keyed by goes through one of these, on
 * every path (webhooks in any format, API reads, backfill), so one vendor entity is one row.
 * - A Teamwork id is a whole number: its decimal text without leading zeros or surrounding space
 *   (`4343`, `"04343"` and `" 004343 "` are all `4343`). Text that is not a whole number is only trimmed.
 * - A Missive id is trimmed, and lower-cased when it is a UUID (Missive's are; a UUID's case carries
 *   no meaning).
 * The SQL migrations (version 2) and `airtable-setup` apply the same rules to rows stored before.
 */
export function canonicalTaskId(id: number | string): string {
  const text = trimIdSpace(String(id));
  return /^[0-9]+$/.test(text) ? text.replace(/^0+(?=[0-9])/, '') : text;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** See canonicalTaskId. */
export function canonicalEmailId(id: string): string {
  const text = trimIdSpace(id);
  return UUID.test(text) ? text.toLowerCase() : text;
}

/**
 * `text` without leading and trailing space, tab, line feed and carriage return: exactly what the SQL
 * migrations trim (`trim(x, ' ' || char(9, 10, 13))`, `btrim`), not String.prototype.trim's Unicode
 * set (no-break space, U+FEFF, ...), which SQL cannot match the same way in every database encoding;
 * test/db/canonical-ids.test.ts holds the three to one rule. A loop, not a regular expression: a
 * trailing-space pattern backtracks quadratically on hostile input.
 */
function trimIdSpace(text: string): string {
  const space = (code: number) => code === 32 || code === 9 || code === 10 || code === 13;
  let start = 0;
  let end = text.length;
  while (start < end && space(text.charCodeAt(start))) start += 1;
  while (end > start && space(text.charCodeAt(end - 1))) end -= 1;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** A Teamwork task. `id` is Teamwork's task id as text. */
export const Task = z.object({
  id: z.string().min(1),
  title: z.string().nullable(),
  description: z.string().nullable(),
  /** As Teamwork says it: new, active, completed, reopened, deleted, ... */
  status: z.string().nullable(),
  priority: z.string().nullable(),
  /** Percent complete, 0-100. */
  progress: z.number().nullable(),
  projectId: z.string().nullable(),
  projectName: z.string().nullable(),
  tasklistId: z.string().nullable(),
  tasklistName: z.string().nullable(),
  parentTaskId: z.string().nullable(),
  assignees: z.array(Person),
  tags: z.array(z.string()),
  startDate: DateOnly.nullable(),
  dueDate: DateOnly.nullable(),
  estimateMinutes: z.number().nullable(),
  createdAt: Instant.nullable(),
  /**
   * Teamwork's own update time: the version used by the stale-write guard. Every task a source hands
   * the database has one (the Teamwork handler checks it and dead-letters an event that has none it
   * can trust). It stays nullable in the type because records are also what the database gives back:
   * a tombstone (a deletion of an id never seen) and a row written before versions were required have
   * none. The database never lets a record without one overwrite a row that has one (rows.ts isStale).
   */
  updatedAt: Instant.nullable(),
  completedAt: Instant.nullable(),
  createdBy: Person.nullable(),
  updatedBy: Person.nullable(),
  /** A link to the task in Teamwork's web app. */
  url: z.string().nullable(),
  /** Deleted in Teamwork. A completed task is not deleted. */
  deleted: z.boolean(),
  deletedAt: Instant.nullable(),
  /** The vendor object the record was made from. */
  raw: z.unknown(),
});
export type Task = z.infer<typeof Task>;

/** A file attached to a Missive message. */
export const Attachment = z.object({
  id: z.string().min(1),
  emailId: z.string().min(1),
  filename: z.string().nullable(),
  mediaType: z.string().nullable(),
  /** Bytes. */
  size: z.number().nullable(),
  /** The vendor's download URL; Missive's are signed and expire. */
  url: z.string().nullable(),
  /** Where the content was stored by us, when attachment storage is on. */
  storedPath: z.string().nullable(),
  sha256: z.string().nullable(),
});
export type Attachment = z.infer<typeof Attachment>;

/** One Missive message. `id` is Missive's message id (not the RFC Message-ID). */
export const Email = z.object({
  id: z.string().min(1),
  conversationId: z.string().nullable(),
  subject: z.string().nullable(),
  preview: z.string().nullable(),
  fromName: z.string().nullable(),
  fromAddress: z.string().nullable(),
  to: z.array(Address),
  cc: z.array(Address),
  bcc: z.array(Address),
  replyTo: z.array(Address),
  bodyHtml: z.string().nullable(),
  bodyText: z.string().nullable(),
  deliveredAt: Instant.nullable(),
  createdAt: Instant.nullable(),
  /**
   * The version used by the stale-write guard (see missive/map.ts). Nullable for the reasons given at
   * `Task.updatedAt`: stored tombstones and rows written before versions were required have none.
   */
  updatedAt: Instant.nullable(),
  /** The RFC 5322 Message-ID header, angle brackets kept. */
  messageIdHeader: z.string().nullable(),
  inReplyTo: z.array(z.string()),
  references: z.array(z.string()),
  labels: z.array(z.string()),
  assignees: z.array(Person),
  conversationUrl: z.string().nullable(),
  draft: z.boolean(),
  /** The conversation was trashed by its users. */
  deleted: z.boolean(),
  deletedAt: Instant.nullable(),
  attachments: z.array(Attachment),
  raw: z.unknown(),
});
export type Email = z.infer<typeof Email>;

/** How far a source's backfill has got. */
export const Checkpoint = z.object({
  source: SourceName,
  /** The newest vendor update time seen by a completed backfill page. */
  lastEventTime: Instant.nullable(),
  /** An opaque vendor cursor, when the vendor's paging has one worth keeping. */
  lastCursor: z.string().nullable(),
  updatedAt: Instant.nullable(),
});
export type Checkpoint = z.infer<typeof Checkpoint>;

/** Where an event came from. */
export const EventOrigin = z.enum(['webhook', 'backfill', 'replay']);
export type EventOrigin = z.infer<typeof EventOrigin>;

/**
 * One unit of work on the queue. The queue stores it as JSON; the source that made it is the only
 * code that reads `type` and `payload`.
 */
export const QueueEvent = z.object({
  /** Unique per event; assigned when the event is made. */
  id: z.string().min(1),
  source: SourceName,
  /** The source's own name for what happened, e.g. `TASK.UPDATED` or `incoming_email`. */
  type: z.string().min(1),
  /**
   * The vendor entity the event is about (`task:123`, `conversation:<uuid>`), or null when unknown.
   * The dispatcher never runs two events with the same key at once.
   */
  entityKey: z.string().nullable(),
  origin: EventOrigin,
  /** When we received the delivery or found the backfill item. */
  receivedAt: Instant,
  /** The parsed vendor body (or backfill item). Only its source interprets it. */
  payload: z.unknown(),
});
export type QueueEvent = z.infer<typeof QueueEvent>;

const ORIGINS: ReadonlySet<string> = new Set(EventOrigin.options);
const SOURCES: ReadonlySet<string> = new Set(SOURCE_NAMES);

/**
 * `QueueEvent.safeParse`, with a fast path for what the sources make (every field already of its type,
 * `receivedAt` a valid Date): that is checked by hand and the event taken as it is, less any extra
 * keys. Anything else goes through the schema, which coerces (an ISO string to a Date) or explains.
 * Used on the webhook path, where the schema's copy of every event was a measurable cost.
 */
export function checkQueueEvent(input: unknown): ReturnType<typeof QueueEvent.safeParse> {
  const e = input as Partial<QueueEvent> | null;
  if (
    typeof e === 'object' &&
    e !== null &&
    typeof e.id === 'string' &&
    e.id !== '' &&
    typeof e.source === 'string' &&
    SOURCES.has(e.source) &&
    typeof e.type === 'string' &&
    e.type !== '' &&
    (e.entityKey === null || typeof e.entityKey === 'string') &&
    typeof e.origin === 'string' &&
    ORIGINS.has(e.origin) &&
    e.receivedAt instanceof Date &&
    !Number.isNaN(e.receivedAt.getTime()) &&
    'payload' in e
  ) {
    const { id, source, type, entityKey, origin, receivedAt, payload } = e as QueueEvent;
    return { success: true, data: { id, source, type, entityKey, origin, receivedAt, payload } } as ReturnType<typeof QueueEvent.safeParse>;
  }
  return QueueEvent.safeParse(input);
}

/** JSON texts already known for payload objects (see withPayloadJson). */
const payloadJson = new WeakMap<object, string>();

/**
 * Records that `json` is the JSON text of `payload`, so that the queue writes it as it is instead of
 * serialising the object again: a webhook source that parsed a body can hand over the body's own
 * bytes. The caller vouches that `JSON.parse(json)` equals `payload` and that `json` holds no line
 * break (the queue stores one event per line); eventJson checks the second and falls back otherwise.
 */
export function withPayloadJson<T extends object>(payload: T, json: string): T {
  payloadJson.set(payload, json);
  return payload;
}

/** An event as JSON (what the queue stores), reusing its payload's JSON text when a source gave one. */
export function eventJson(event: QueueEvent): string {
  const known = typeof event.payload === 'object' && event.payload !== null ? payloadJson.get(event.payload) : undefined;
  if (known === undefined || known.includes('\n') || known.includes('\r')) return JSON.stringify(event);
  const { payload: _payload, ...head } = event;
  // The date as text already: JSON.stringify calling Date's toJSON was a noticeable part of this.
  return `${JSON.stringify({ ...head, receivedAt: event.receivedAt.toISOString() }).slice(0, -1)},"payload":${known}}`;
}

/** A record to mark deleted when the vendor no longer has a full object to give us. */
export const Deletion = z.object({ id: z.string().min(1), at: Instant });
export type Deletion = z.infer<typeof Deletion>;

/** What a handler returns for one event. Empty arrays mean "nothing to write". */
export interface Changes {
  tasks: Task[];
  emails: Email[];
  deletedTasks: Deletion[];
  deletedEmails: Deletion[];
}

export function noChanges(): Changes {
  return { tasks: [], emails: [], deletedTasks: [], deletedEmails: [] };
}

/** A row that a change writes: which table, which id, and whether it marks the row deleted. */
export interface RowRef {
  table: 'tasks' | 'emails';
  id: string;
  deleted: boolean;
}

/** The rows `changes` writes, in the order the database applies them (upserts, then deletions). */
export function rowRefs(changes: Changes): RowRef[] {
  return [
    ...changes.tasks.map((t) => ({ table: 'tasks' as const, id: t.id, deleted: t.deleted })),
    ...changes.emails.map((e) => ({ table: 'emails' as const, id: e.id, deleted: e.deleted })),
    ...changes.deletedTasks.map((d) => ({ table: 'tasks' as const, id: d.id, deleted: true })),
    ...changes.deletedEmails.map((d) => ({ table: 'emails' as const, id: d.id, deleted: true })),
  ];
}
