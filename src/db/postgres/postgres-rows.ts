/**
 * Rows to and from PostgreSQL. A batch travels as ONE json parameter (an array of row objects keyed by
 * column name) that the statement expands with `json_populate_recordset`, so a batch of any size is one
 * statement with one parameter, and the server converts each field to its column's type (ISO strings
 * to timestamptz, nested values to jsonb).
 *
 * PostgreSQL cannot store two things JavaScript strings can hold:
 * - NUL (U+0000): `text` values cannot contain it, and `json`/`jsonb` reject the `\u0000` escape
 *   ("unsupported Unicode escape sequence"). One NUL anywhere would make the whole batch fail forever,
 *   so NULs are removed from every string and every object key before sending. Vendors send them
 *   rarely (a pasted binary fragment); dropping them loses nothing a reader could see.
 * - A lone UTF-16 surrogate: the driver sends `text` as UTF-8, where a lone surrogate becomes U+FFFD,
 *   but in JSON it is the escape `\ud800`, which the server rejects. We replace lone surrogates with
 *   U+FFFD ourselves so that both paths store the same thing.
 */
import type { Attachment, Email, Task } from '../../model.ts';
import { Json, type Row } from '../rows.ts';

const NUL = '\u0000';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const ANY_SURROGATE = /[\uD800-\uDFFF]/;

/** `text` as PostgreSQL can store it: NULs removed, lone surrogates replaced by U+FFFD. */
export function storableText(text: string): string {
  const withoutNul = text.includes(NUL) ? text.replaceAll(NUL, '') : text;
  return ANY_SURROGATE.test(withoutNul) ? withoutNul.replace(LONE_SURROGATE, '\uFFFD') : withoutNul;
}

/** JSON.stringify replacer applying `storableText` to every string value and object key. */
function storable(_key: string, value: unknown): unknown {
  if (typeof value === 'string') return storableText(value);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.some((k) => storableText(k) !== k)) {
      return Object.fromEntries(keys.map((k) => [storableText(k), (value as Record<string, unknown>)[k]]));
    }
  }
  return value;
}

/** The JSON text of `value`, safe to send as a `json` parameter. Dates become ISO-8601 UTC strings. */
export function toJsonParam(value: unknown): string {
  return JSON.stringify(value, storable);
}

/** A neutral row (rows.ts) as a plain object for `toJsonParam`: Json wrappers unwrapped. */
export function plainRow(row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) out[column] = value instanceof Json ? (value.value ?? null) : value;
  return out;
}

// Reading: the driver already gives Dates for timestamptz, parsed values for jsonb, booleans and
// numbers; bigint (attachments.size) arrives as a string.

const str = (value: unknown) => (value === null || value === undefined ? null : String(value));
const num = (value: unknown) => (value === null || value === undefined ? null : Number(value));
const date = (value: unknown) => (value instanceof Date ? value : value === null || value === undefined ? null : new Date(String(value)));
const list = <T>(value: unknown): T[] => (Array.isArray(value) ? (value as T[]) : []);
const orNull = <T>(value: unknown): T | null => (value === undefined ? null : (value as T | null));

export function rowToTask(row: Record<string, unknown>): Task {
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
    assignees: list(row.assignees),
    tags: list(row.tags),
    startDate: str(row.start_date),
    dueDate: str(row.due_date),
    estimateMinutes: num(row.estimate_minutes),
    createdAt: date(row.created_at),
    updatedAt: date(row.updated_at),
    completedAt: date(row.completed_at),
    createdBy: orNull(row.created_by),
    updatedBy: orNull(row.updated_by),
    url: str(row.url),
    deleted: row.deleted === true,
    deletedAt: date(row.deleted_at),
    raw: orNull(row.raw),
  };
}

export function rowToEmail(row: Record<string, unknown>, attachments: Attachment[]): Email {
  return {
    id: String(row.id),
    conversationId: str(row.conversation_id),
    subject: str(row.subject),
    preview: str(row.preview),
    fromName: str(row.from_name),
    fromAddress: str(row.from_address),
    to: list(row.to),
    cc: list(row.cc),
    bcc: list(row.bcc),
    replyTo: list(row.reply_to),
    bodyHtml: str(row.body_html),
    bodyText: str(row.body_text),
    deliveredAt: date(row.delivered_at),
    createdAt: date(row.created_at),
    updatedAt: date(row.updated_at),
    messageIdHeader: str(row.message_id_header),
    inReplyTo: list(row.in_reply_to),
    references: list(row.references),
    labels: list(row.labels),
    assignees: list(row.assignees),
    conversationUrl: str(row.conversation_url),
    draft: row.draft === true,
    deleted: row.deleted === true,
    deletedAt: date(row.deleted_at),
    attachments,
    raw: orNull(row.raw),
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
