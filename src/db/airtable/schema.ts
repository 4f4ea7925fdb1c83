/**
 * The Airtable tables ("Tasks", "Emails") and how canonical records map onto their fields. The
 * fields are the columns of DESIGN.md "Canonical records" with readable names ("Task ID", "Due
 * Date", ...); the key field ("Task ID", "Email ID") is the primary field and the upsert merge field.
 *
 * How values are stored, so that a record reads back exactly as it was written:
 * - text -> singleLineText / multilineText; times -> dateTime in UTC; calendar days -> date (ISO);
 *   numbers -> number; booleans -> checkbox; links -> url.
 * - Lists of names (tags, labels) -> multipleSelects, so Airtable users can filter and group by them.
 * - Structured values (people, addresses, message ids, attachment metadata, the raw vendor object) ->
 *   JSON in a long-text field.
 * - An attachment with a URL is also written to the "Attachments" field by URL; Airtable downloads it
 *   (asynchronously; its copy's URL expires after 2 hours). "Attachment Details" keeps our metadata.
 * - Empty values are written as null (cleared), so an update never leaves an old value behind.
 *
 * Airtable refuses text over 100,000 characters in a cell. Longer text is cut and ends with a visible
 * marker, "… [truncated by connector: N characters omitted]", so the cell is never refused and nobody
 * mistakes it for the whole text. A cut JSON field no longer parses; it then reads back as its text
 * (Raw) or as empty (lists).
 */
import { createHash } from 'node:crypto';
import type { Attachment, Email, Person, Task, Address } from '../../model.ts';
import type { FieldSpec } from './airtable-client.ts';

/** Longest text Airtable stores in one cell (single line and long text), in characters. */
export const AIRTABLE_TEXT_LIMIT = 100_000;

export interface TableDef {
  name: string;
  description: string;
  /** The primary field, and the one upserts merge on. */
  key: string;
  fields: readonly FieldSpec[];
}

const text = (name: string, description?: string): FieldSpec => (description === undefined ? { name, type: 'singleLineText' } : { name, type: 'singleLineText', description });
const longText = (name: string, description?: string): FieldSpec => (description === undefined ? { name, type: 'multilineText' } : { name, type: 'multilineText', description });
const instant = (name: string): FieldSpec => ({ name, type: 'dateTime', options: { dateFormat: { name: 'iso' }, timeFormat: { name: '24hour' }, timeZone: 'utc' } });
const day = (name: string): FieldSpec => ({ name, type: 'date', options: { dateFormat: { name: 'iso' } } });
const whole = (name: string): FieldSpec => ({ name, type: 'number', options: { precision: 0 } });
const flag = (name: string): FieldSpec => ({ name, type: 'checkbox', options: { icon: 'check', color: 'greenBright' } });
const choice = (name: string, choices: readonly string[]): FieldSpec => ({ name, type: 'singleSelect', options: { choices: choices.map((c) => ({ name: c })) } });
const names = (name: string): FieldSpec => ({ name, type: 'multipleSelects', options: { choices: [] } });
const link = (name: string): FieldSpec => ({ name, type: 'url' });

/** Field names, one place: the mapping functions and the stale-write guard use these. */
export const F = {
  taskId: 'Task ID',
  emailId: 'Email ID',
  updatedAt: 'Updated At',
  deleted: 'Deleted',
  deletedAt: 'Deleted At',
  syncedAt: 'Synced At',
  attachmentDetails: 'Attachment Details',
  attachmentCount: 'Attachment Count',
  attachments: 'Attachments',
} as const;

export const TASKS_TABLE: TableDef = {
  name: 'Tasks',
  description: 'Teamwork tasks, kept in sync by the Teamwork & Missive connector. Edits made here are overwritten.',
  key: F.taskId,
  fields: [
    text(F.taskId, 'Teamwork task id (the key the connector upserts on)'),
    text('Title'),
    longText('Description'),
    choice('Status', ['new', 'active', 'completed', 'reopened', 'deleted']),
    choice('Priority', ['low', 'medium', 'high']),
    whole('Progress'),
    text('Project ID'),
    text('Project Name'),
    text('Tasklist ID'),
    text('Tasklist Name'),
    text('Parent Task ID'),
    longText('Assignees', 'JSON: [{id, name, email}]'),
    names('Tags'),
    day('Start Date'),
    day('Due Date'),
    whole('Estimate Minutes'),
    instant('Created At'),
    instant(F.updatedAt),
    instant('Completed At'),
    longText('Created By', 'JSON: {id, name, email}'),
    longText('Updated By', 'JSON: {id, name, email}'),
    link('URL'),
    flag(F.deleted),
    instant(F.deletedAt),
    longText('Raw', 'The Teamwork task as JSON'),
    instant(F.syncedAt),
  ],
};

export const EMAILS_TABLE: TableDef = {
  name: 'Emails',
  description: 'Missive messages, one row each, kept in sync by the Teamwork & Missive connector. Edits made here are overwritten.',
  key: F.emailId,
  fields: [
    text(F.emailId, 'Missive message id (the key the connector upserts on)'),
    text('Conversation ID'),
    text('Subject'),
    longText('Preview'),
    text('From Name'),
    text('From Address'),
    longText('To', 'JSON: [{name, address}]'),
    longText('Cc', 'JSON: [{name, address}]'),
    longText('Bcc', 'JSON: [{name, address}]'),
    longText('Reply-To', 'JSON: [{name, address}]'),
    longText('Body HTML'),
    longText('Body Text'),
    instant('Delivered At'),
    instant('Created At'),
    instant(F.updatedAt),
    text('Message-ID Header'),
    longText('In-Reply-To', 'JSON: list of Message-IDs'),
    longText('References', 'JSON: list of Message-IDs'),
    names('Labels'),
    longText('Assignees', 'JSON: [{id, name, email}]'),
    link('Conversation URL'),
    flag('Draft'),
    flag(F.deleted),
    instant(F.deletedAt),
    { name: F.attachments, type: 'multipleAttachments' },
    longText(F.attachmentDetails, 'JSON: [{id, emailId, filename, mediaType, size, url, storedPath, sha256}]'),
    whole(F.attachmentCount),
    longText('Raw', 'The Missive message as JSON'),
    instant(F.syncedAt),
  ],
};

export const AIRTABLE_TABLES: readonly TableDef[] = [TASKS_TABLE, EMAILS_TABLE];

/**
 * `value` cut to at most `limit` characters (UTF-16 code units, never splitting a surrogate pair),
 * ending in a marker saying how much was left out; unchanged when it fits.
 */
export function cutText(value: string, limit: number = AIRTABLE_TEXT_LIMIT): string {
  if (value.length <= limit) return value;
  let keep = limit;
  for (;;) {
    const marker = `… [truncated by connector: ${value.length - keep} characters omitted]`;
    if (keep + marker.length <= limit) {
      const code = value.charCodeAt(keep - 1);
      const cutAt = code >= 0xd800 && code <= 0xdbff ? keep - 1 : keep;
      return `${value.slice(0, cutAt)}… [truncated by connector: ${value.length - cutAt} characters omitted]`;
    }
    keep = limit - marker.length;
  }
}

const cell = (value: string | null): string | null => (value === null || value === '' ? null : cutText(value));
const iso = (value: Date | null): string | null => (value === null ? null : value.toISOString());
const json = (value: unknown): string | null => (value === null || value === undefined ? null : cutText(JSON.stringify(value)));
const jsonList = (value: readonly unknown[]): string | null => (value.length === 0 ? null : json(value));

/** The fields written for a task: every field, empties as null. */
export function taskFields(task: Task, syncedAt: Date): Record<string, unknown> {
  return {
    [F.taskId]: task.id,
    Title: cell(task.title),
    Description: cell(task.description),
    Status: cell(task.status),
    Priority: cell(task.priority),
    Progress: task.progress,
    'Project ID': cell(task.projectId),
    'Project Name': cell(task.projectName),
    'Tasklist ID': cell(task.tasklistId),
    'Tasklist Name': cell(task.tasklistName),
    'Parent Task ID': cell(task.parentTaskId),
    Assignees: jsonList(task.assignees),
    Tags: uniqueNames(task.tags),
    'Start Date': task.startDate,
    'Due Date': task.dueDate,
    'Estimate Minutes': task.estimateMinutes,
    'Created At': iso(task.createdAt),
    [F.updatedAt]: iso(task.updatedAt),
    'Completed At': iso(task.completedAt),
    'Created By': json(task.createdBy),
    'Updated By': json(task.updatedBy),
    URL: cell(task.url),
    [F.deleted]: task.deleted,
    [F.deletedAt]: iso(task.deletedAt),
    Raw: json(task.raw ?? null),
    [F.syncedAt]: syncedAt.toISOString(),
  };
}

/**
 * The fields written for an email. `Attachments` (the files, by URL) is left out when `sameFiles`
 * says the stored record already has exactly these files, so Airtable does not download them again.
 */
export function emailFields(email: Email, syncedAt: Date, options: { sameFiles: boolean }): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    [F.emailId]: email.id,
    'Conversation ID': cell(email.conversationId),
    Subject: cell(email.subject),
    Preview: cell(email.preview),
    'From Name': cell(email.fromName),
    'From Address': cell(email.fromAddress),
    To: jsonList(email.to),
    Cc: jsonList(email.cc),
    Bcc: jsonList(email.bcc),
    'Reply-To': jsonList(email.replyTo),
    'Body HTML': cell(email.bodyHtml),
    'Body Text': cell(email.bodyText),
    'Delivered At': iso(email.deliveredAt),
    'Created At': iso(email.createdAt),
    [F.updatedAt]: iso(email.updatedAt),
    'Message-ID Header': cell(email.messageIdHeader),
    'In-Reply-To': jsonList(email.inReplyTo),
    References: jsonList(email.references),
    Labels: uniqueNames(email.labels),
    Assignees: jsonList(email.assignees),
    'Conversation URL': cell(email.conversationUrl),
    Draft: email.draft,
    [F.deleted]: email.deleted,
    [F.deletedAt]: iso(email.deletedAt),
    [F.attachmentDetails]: jsonList(email.attachments),
    [F.attachmentCount]: email.attachments.length,
    Raw: json(email.raw ?? null),
    [F.syncedAt]: syncedAt.toISOString(),
  };
  if (!options.sameFiles) fields[F.attachments] = attachmentFiles(email.attachments);
  return fields;
}

/** The files Airtable should hold for these attachments: the ones with a URL, written by URL. */
function attachmentFiles(attachments: readonly Attachment[]): Array<{ url: string; filename?: string }> | null {
  const files = attachments
    .filter((a) => a.url !== null && /^https?:\/\//i.test(a.url))
    .map((a) => (a.filename === null ? { url: a.url as string } : { url: a.url as string, filename: a.filename }));
  return files.length === 0 ? null : files;
}

/**
 * A fingerprint of the files an email's Attachments field gets (their ids and URLs, in order): a
 * SHA-256 digest, 43 characters however many files and however long their URLs, because the version
 * cache keeps one per email.
 */
export function filesFingerprint(attachments: readonly Pick<Attachment, 'id' | 'url'>[]): string {
  const files = attachments.filter((a) => a.url !== null && /^https?:\/\//i.test(a.url)).map((a) => [a.id, a.url]);
  return createHash('sha256').update(JSON.stringify(files)).digest('base64url');
}

/** The fields written to mark a record deleted (or to store a tombstone for one never seen). */
export function deletionFields(key: string, id: string, at: Date, syncedAt: Date): Record<string, unknown> {
  return { [key]: id, [F.deleted]: true, [F.deletedAt]: at.toISOString(), [F.syncedAt]: syncedAt.toISOString() };
}

function uniqueNames(values: readonly string[]): string[] | null {
  const out = [...new Set(values.filter((v) => v !== ''))];
  return out.length === 0 ? null : out;
}

const str = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);
const num = (value: unknown): number | null => (typeof value === 'number' ? value : null);
const date = (value: unknown): Date | null => {
  if (typeof value !== 'string' || value === '') return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms);
};
const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);

function parsed<T>(value: unknown, fallback: T): T {
  if (typeof value !== 'string' || value === '') return fallback;
  try {
    return JSON.parse(value) as T;
  } catch {
    return fallback;
  }
}

/** The raw vendor object; a cut (unparseable) one reads back as its text. */
function raw(value: unknown): unknown {
  if (typeof value !== 'string' || value === '') return null;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return value;
  }
}

/** A task from a record's fields (an Airtable answer leaves empty fields out). */
export function taskFromFields(fields: Record<string, unknown>): Task {
  return {
    id: String(fields[F.taskId] ?? ''),
    title: str(fields.Title),
    description: str(fields.Description),
    status: str(fields.Status),
    priority: str(fields.Priority),
    progress: num(fields.Progress),
    projectId: str(fields['Project ID']),
    projectName: str(fields['Project Name']),
    tasklistId: str(fields['Tasklist ID']),
    tasklistName: str(fields['Tasklist Name']),
    parentTaskId: str(fields['Parent Task ID']),
    assignees: parsed<Person[]>(fields.Assignees, []),
    tags: strings(fields.Tags),
    startDate: str(fields['Start Date']),
    dueDate: str(fields['Due Date']),
    estimateMinutes: num(fields['Estimate Minutes']),
    createdAt: date(fields['Created At']),
    updatedAt: date(fields[F.updatedAt]),
    completedAt: date(fields['Completed At']),
    createdBy: parsed<Person | null>(fields['Created By'], null),
    updatedBy: parsed<Person | null>(fields['Updated By'], null),
    url: str(fields.URL),
    deleted: fields[F.deleted] === true,
    deletedAt: date(fields[F.deletedAt]),
    raw: raw(fields.Raw),
  };
}

/** An email from a record's fields. */
export function emailFromFields(fields: Record<string, unknown>): Email {
  return {
    id: String(fields[F.emailId] ?? ''),
    conversationId: str(fields['Conversation ID']),
    subject: str(fields.Subject),
    preview: str(fields.Preview),
    fromName: str(fields['From Name']),
    fromAddress: str(fields['From Address']),
    to: parsed<Address[]>(fields.To, []),
    cc: parsed<Address[]>(fields.Cc, []),
    bcc: parsed<Address[]>(fields.Bcc, []),
    replyTo: parsed<Address[]>(fields['Reply-To'], []),
    bodyHtml: str(fields['Body HTML']),
    bodyText: str(fields['Body Text']),
    deliveredAt: date(fields['Delivered At']),
    createdAt: date(fields['Created At']),
    updatedAt: date(fields[F.updatedAt]),
    messageIdHeader: str(fields['Message-ID Header']),
    inReplyTo: parsed<string[]>(fields['In-Reply-To'], []),
    references: parsed<string[]>(fields.References, []),
    labels: strings(fields.Labels),
    assignees: parsed<Person[]>(fields.Assignees, []),
    conversationUrl: str(fields['Conversation URL']),
    draft: fields.Draft === true,
    deleted: fields[F.deleted] === true,
    deletedAt: date(fields[F.deletedAt]),
    attachments: parsed<Attachment[]>(fields[F.attachmentDetails], []),
    raw: raw(fields.Raw),
  };
}

/**
 * What the stale-write guard knows of a stored record: exactly what `versionFromRecord` makes of the
 * record's fields, whether they came from a read or from Airtable's answer to our upsert. Times are
 * epoch milliseconds (a number costs less memory than a Date in the version cache).
 */
export interface StoredVersion {
  updatedAt: number | null;
  deleted: boolean;
  deletedAt: number | null;
  /** `filesFingerprint` of the stored attachment details (emails); null when there are none. */
  files: string | null;
}

export function versionFromRecord(fields: Record<string, unknown>): StoredVersion {
  const details = parsed<Attachment[] | null>(fields[F.attachmentDetails], null);
  return {
    updatedAt: date(fields[F.updatedAt])?.getTime() ?? null,
    deleted: fields[F.deleted] === true,
    deletedAt: date(fields[F.deletedAt])?.getTime() ?? null,
    files: Array.isArray(details) ? filesFingerprint(details) : null,
  };
}
