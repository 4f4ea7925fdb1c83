/**
 * Canonical records as table rows: the column names of DESIGN.md "Canonical records" and
 * docs/schema.md, shared by the SQL backends. Values are neutral: text, numbers, booleans, null,
 * `Date`s, and `json` wrappers for lists and raw payloads; each backend encodes them for its driver
 * (SQLite: ISO text, 0/1, JSON text; PostgreSQL: timestamptz, boolean, jsonb).
 */
import type { Attachment, Checkpoint, Email, Task } from '../model.ts';

/** A value to be stored as JSON (jsonb in PostgreSQL, text in SQLite). */
export class Json {
  constructor(readonly value: unknown) {}
}

export type CellValue = string | number | boolean | null | Date | Json;
export type Row = Record<string, CellValue>;

export const TASK_COLUMNS = [
  'id', 'title', 'description', 'status', 'priority', 'progress', 'project_id', 'project_name',
  'tasklist_id', 'tasklist_name', 'parent_task_id', 'assignees', 'tags', 'start_date', 'due_date',
  'estimate_minutes', 'created_at', 'updated_at', 'completed_at', 'created_by', 'updated_by', 'url',
  'deleted', 'deleted_at', 'raw', 'synced_at',
] as const;

export const EMAIL_COLUMNS = [
  'id', 'conversation_id', 'subject', 'preview', 'from_name', 'from_address', 'to', 'cc', 'bcc',
  'reply_to', 'body_html', 'body_text', 'delivered_at', 'created_at', 'updated_at', 'message_id_header',
  'in_reply_to', 'references', 'labels', 'assignees', 'conversation_url', 'draft', 'deleted', 'deleted_at',
  'raw', 'synced_at',
] as const;

export const ATTACHMENT_COLUMNS = ['id', 'email_id', 'filename', 'media_type', 'size', 'url', 'stored_path', 'sha256'] as const;

export const CHECKPOINT_COLUMNS = ['source', 'last_event_time', 'last_cursor', 'updated_at'] as const;

/** Columns whose values are dates with no time (kept as YYYY-MM-DD text in every backend). */
export const DATE_ONLY_COLUMNS = new Set(['start_date', 'due_date']);

export function taskRow(task: Task, syncedAt: Date): Row {
  return {
    id: task.id,
    title: task.title,
    description: task.description,
    status: task.status,
    priority: task.priority,
    progress: task.progress,
    project_id: task.projectId,
    project_name: task.projectName,
    tasklist_id: task.tasklistId,
    tasklist_name: task.tasklistName,
    parent_task_id: task.parentTaskId,
    assignees: new Json(task.assignees),
    tags: new Json(task.tags),
    start_date: task.startDate,
    due_date: task.dueDate,
    estimate_minutes: task.estimateMinutes,
    created_at: task.createdAt,
    updated_at: task.updatedAt,
    completed_at: task.completedAt,
    created_by: task.createdBy === null ? null : new Json(task.createdBy),
    updated_by: task.updatedBy === null ? null : new Json(task.updatedBy),
    url: task.url,
    deleted: task.deleted,
    deleted_at: task.deletedAt,
    raw: new Json(task.raw ?? null),
    synced_at: syncedAt,
  };
}

export function emailRow(email: Email, syncedAt: Date): Row {
  return {
    id: email.id,
    conversation_id: email.conversationId,
    subject: email.subject,
    preview: email.preview,
    from_name: email.fromName,
    from_address: email.fromAddress,
    to: new Json(email.to),
    cc: new Json(email.cc),
    bcc: new Json(email.bcc),
    reply_to: new Json(email.replyTo),
    body_html: email.bodyHtml,
    body_text: email.bodyText,
    delivered_at: email.deliveredAt,
    created_at: email.createdAt,
    updated_at: email.updatedAt,
    message_id_header: email.messageIdHeader,
    in_reply_to: new Json(email.inReplyTo),
    references: new Json(email.references),
    labels: new Json(email.labels),
    assignees: new Json(email.assignees),
    conversation_url: email.conversationUrl,
    draft: email.draft,
    deleted: email.deleted,
    deleted_at: email.deletedAt,
    raw: new Json(email.raw ?? null),
    synced_at: syncedAt,
  };
}

export function attachmentRow(attachment: Attachment): Row {
  return {
    id: attachment.id,
    email_id: attachment.emailId,
    filename: attachment.filename,
    media_type: attachment.mediaType,
    size: attachment.size,
    url: attachment.url,
    stored_path: attachment.storedPath,
    sha256: attachment.sha256,
  };
}

export function checkpointRow(checkpoint: Checkpoint, now: Date): Row {
  return {
    source: checkpoint.source,
    last_event_time: checkpoint.lastEventTime,
    last_cursor: checkpoint.lastCursor,
    updated_at: checkpoint.updatedAt ?? now,
  };
}

/** How a backend's driver hands back dates, JSON and booleans. */
export interface CellDecoder {
  date(value: unknown): Date | null;
  json<T>(value: unknown, fallback: T): T;
  bool(value: unknown): boolean;
}

const str = (value: unknown) => (value === null || value === undefined ? null : String(value));
const num = (value: unknown) => (value === null || value === undefined ? null : Number(value));

export function rowToTask(row: Record<string, unknown>, cell: CellDecoder): Task {
  return {
    id: String(row.id),
    title: str(row.title),
    description: str(row.description),
    status: str(row.status),
    priority: str(row.priority),
    progress: num(row.progress),
    projectId: str(row.project_id),
    projectName: str(row.project_name),
    tasklistId: str(row.tasklist_id),
    tasklistName: str(row.tasklist_name),
    parentTaskId: str(row.parent_task_id),
    assignees: cell.json(row.assignees, []),
    tags: cell.json(row.tags, []),
    startDate: str(row.start_date),
    dueDate: str(row.due_date),
    estimateMinutes: num(row.estimate_minutes),
    createdAt: cell.date(row.created_at),
    updatedAt: cell.date(row.updated_at),
    completedAt: cell.date(row.completed_at),
    createdBy: cell.json(row.created_by, null),
    updatedBy: cell.json(row.updated_by, null),
    url: str(row.url),
    deleted: cell.bool(row.deleted),
    deletedAt: cell.date(row.deleted_at),
    raw: cell.json(row.raw, null),
  };
}

export function rowToEmail(row: Record<string, unknown>, attachments: Attachment[], cell: CellDecoder): Email {
  return {
    id: String(row.id),
    conversationId: str(row.conversation_id),
    subject: str(row.subject),
    preview: str(row.preview),
    fromName: str(row.from_name),
    fromAddress: str(row.from_address),
    to: cell.json(row.to, []),
    cc: cell.json(row.cc, []),
    bcc: cell.json(row.bcc, []),
    replyTo: cell.json(row.reply_to, []),
    bodyHtml: str(row.body_html),
    bodyText: str(row.body_text),
    deliveredAt: cell.date(row.delivered_at),
    createdAt: cell.date(row.created_at),
    updatedAt: cell.date(row.updated_at),
    messageIdHeader: str(row.message_id_header),
    inReplyTo: cell.json(row.in_reply_to, []),
    references: cell.json(row.references, []),
    labels: cell.json(row.labels, []),
    assignees: cell.json(row.assignees, []),
    conversationUrl: str(row.conversation_url),
    draft: cell.bool(row.draft),
    deleted: cell.bool(row.deleted),
    deletedAt: cell.date(row.deleted_at),
    attachments,
    raw: cell.json(row.raw, null),
  };
}

export function rowToAttachment(row: Record<string, unknown>): Attachment {
  return {
    id: String(row.id),
    emailId: String(row.email_id),
    filename: str(row.filename),
    mediaType: str(row.media_type),
    size: num(row.size),
    url: str(row.url),
    storedPath: str(row.stored_path),
    sha256: str(row.sha256),
  };
}

/**
 * The stale-write rule, in one place for every backend: an incoming version older than the stored
 * one is skipped. The stored version is the later of `updated_at` and, once deleted, `deleted_at`.
 * A record without a version cannot be ordered against anything, so it never replaces a stored row
 * that has one (it is stale against it); it writes only where nothing versioned is stored (no row, or
 * a row itself without a version, written before versions were required). Conversely a stored row
 * without a version is overwritten by any versioned record.
 */
export function isStale(incoming: Date | null, storedUpdatedAt: Date | null, storedDeletedAt: Date | null): boolean {
  if (storedUpdatedAt === null && storedDeletedAt === null) return false;
  if (incoming === null) return true;
  const stored = Math.max(storedUpdatedAt?.getTime() ?? -Infinity, storedDeletedAt?.getTime() ?? -Infinity);
  return incoming.getTime() < stored;
}

/** Merges several events' changes into one batch, keeping for each id only the newest record. */
export function newestById<T extends { id: string; updatedAt: Date | null }>(records: readonly T[]): T[] {
  const byId = new Map<string, T>();
  for (const record of records) {
    const seen = byId.get(record.id);
    if (seen === undefined || !isStale(record.updatedAt, seen.updatedAt, null)) byId.set(record.id, record);
  }
  return [...byId.values()];
}
