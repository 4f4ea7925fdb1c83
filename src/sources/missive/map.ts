/**
 * Missive message + conversation -> canonical Email (and Attachments). Pure: no I/O, no clock; the
 * caller says when the state was observed.
 *
 * ## The version (`Email.updatedAt`) and why
 *
 * The database skips a write whose `updatedAt` is older than the stored one (or older than the stored
 * `deletedAt`) and rewrites an equal one. Most of an email row is conversation state (labels,
 * assignees, the trash flag) that changes without the message changing: `message.updated_at` does not
 * move when a label is added, and whether `conversation.last_activity_at` moves on label, assignee or
 * trash actions is not documented (reference U7). A version made only of vendor times would therefore
 * (a) tie a fresh label change with the stored row, and let an older snapshot handled later (a backfill
 * event retried after a webhook) put old labels back, and (b) make a restore after a trash look stale.
 *
 * So the version is **when we observed the state**, never earlier than any vendor time in it:
 *
 *     updatedAt = max(observedAt, message.updated_at, message.delivered_at, message.created_at,
 *                     conversation.last_activity_at)
 *
 * where `observedAt` is the moment the state was read from Missive: the time of the API request for
 * anything fetched (the handler always refetches current state when the API is configured, so a replayed
 * old delivery writes today's state with today's version), and the delivery's `receivedAt` for state
 * taken from a webhook body (without API credentials, or when the body is complete), so a replayed old
 * delivery carries its old version and is skipped. The vendor times in the max keep the version
 * monotonic even if Missive's clock runs ahead of ours. Missive's own `updated_at` stays in `raw`.
 *
 * `deletedAt` is the same version when the conversation is trashed (Missive does not say when it was
 * trashed), so a later restore, observed later, is newer and clears the flag.
 *
 * Cost of the choice: two workers whose clocks disagree by more than the gap between two events of
 * one conversation could order those writes wrongly; events of one conversation are never handled
 * at the same time (entity key `conversation:<id>`), and NTP keeps skew far below that gap.
 *
 * ## Times that are not times
 *
 * Every Missive time becomes a Date here, through `unixToDate`, and nowhere else. A time of another
 * type (`"yesterday"`, an object) was already read as null by the payload schemas (tolerance: one odd
 * field must not cost the message). A number that is not a valid time is different: `1e308`, a
 * negative one, or one at or after 2100 (`MAX_UNIX_SECONDS`) is bad input that would either make an
 * invalid Date (written, it fails with a RangeError that looks like our bug and is retried) or, as
 * the version, freeze the row against every later update. It throws CONN_ERR_EVENT_INVALID naming the
 * field as the delivery has it (`latest_message.delivered_at: 1e308 is not a valid time`), so the
 * event goes to the dead letters at once with the cause in words.
 */
import { ConnectorError } from '../../errors.ts';
import type { Address, Attachment, Email, Person } from '../../model.ts';
import type { MissiveAddress, MissiveAttachment, MissiveConversation, MissiveMessage, MissiveUserState } from './payloads.ts';
import { excerpt, htmlToText } from './text.ts';

/** Where Missive's web app shows a conversation (reference 1.5.1, `web_url`). */
export const WEB_CONVERSATION_URL = 'https://mail.missiveapp.com/#inbox/conversations/';

export interface MapOptions {
  /** When this state was read from Missive (API request time, or the delivery's receivedAt). */
  observedAt: Date;
  /**
   * Where the message was read, for errors naming a field: `message` (the default), `latest_message`,
   * `messages[2]`. The conversation's fields are named `conversation.*` when it is passed on its own,
   * `<field>.conversation.*` when it is the message's.
   */
  field?: string;
}

/** Unix seconds of 2100-01-01T00:00:00Z: no Missive time is at or after it. */
export const MAX_UNIX_SECONDS = 4_102_444_800;

/**
 * Unix seconds -> Date (UTC); null stays null. Throws CONN_ERR_EVENT_INVALID naming `field` when the
 * number is not a valid time (not finite, negative, at or after 2100; see the header).
 */
export function unixToDate(seconds: number | null | undefined, field = 'time'): Date | null {
  if (seconds === null || seconds === undefined) return null;
  if (!Number.isFinite(seconds) || seconds < 0 || seconds >= MAX_UNIX_SECONDS) {
    throw new ConnectorError('CONN_ERR_EVENT_INVALID', `${field}: ${String(seconds)} is not a valid time (unix seconds between 1970 and 2100)`, {
      details: { field, value: String(seconds) },
    });
  }
  return new Date(Math.round(seconds * 1000));
}

/**
 * Whether the conversation counts as deleted: trashed by every user who has it (reference 2.8).
 * Trash is per user in Missive; a conversation without a `users` list (a guest row) is not trashed.
 */
export function isTrashed(conversation: MissiveConversation | null | undefined): boolean {
  const users = conversation?.users;
  if (users === null || users === undefined || users.length === 0) return false;
  return users.every((u) => u.trashed === true);
}

/** Field names for errors: where the message and the conversation were read. */
interface Fields {
  message: string;
  conversation: string;
}

/** The version of a record made from this state; see the header. */
export function emailVersion(message: MissiveMessage, conversation: MissiveConversation | null, observedAt: Date, fields: Fields = { message: 'message', conversation: 'conversation' }): Date {
  const times = [observedAt.getTime()];
  const named: Array<[number | null | undefined, string]> = [
    [message.updated_at, `${fields.message}.updated_at`],
    [message.delivered_at, `${fields.message}.delivered_at`],
    [message.created_at, `${fields.message}.created_at`],
    [conversation?.last_activity_at, `${fields.conversation}.last_activity_at`],
  ];
  for (const [seconds, field] of named) {
    const date = unixToDate(seconds, field);
    if (date !== null) times.push(date.getTime());
  }
  return new Date(Math.max(...times));
}

/**
 * The canonical email for one message. `conversation` is the conversation state to apply (labels,
 * assignees, trash); when null, the message's own `conversation` is used.
 */
export function toEmail(message: MissiveMessage, conversation: MissiveConversation | null, options: MapOptions): Email {
  const conv = conversation ?? message.conversation ?? null;
  const field = options.field ?? 'message';
  const fields = { message: field, conversation: conversation === null ? `${field}.conversation` : 'conversation' };
  const version = emailVersion(message, conv, options.observedAt, fields);
  const deleted = isTrashed(conv);
  const bodyHtml = present(message.body);
  const bodyText = htmlToText(bodyHtml);
  const from = message.from_field ? toAddress(message.from_field) : null;
  return {
    id: message.id,
    conversationId: conv?.id ?? null,
    subject: present(message.subject) ?? present(conv?.subject) ?? present(conv?.latest_message_subject),
    preview: present(message.preview) ?? excerpt(bodyText),
    fromName: from?.name ?? nonEmpty(message.from_field?.name),
    fromAddress: from?.address ?? null,
    to: toAddresses(message.to_fields),
    cc: toAddresses(message.cc_fields),
    bcc: toAddresses(message.bcc_fields),
    replyTo: toAddresses(message.reply_to_fields),
    bodyHtml,
    bodyText,
    deliveredAt: unixToDate(message.delivered_at, `${field}.delivered_at`),
    createdAt: unixToDate(message.created_at, `${field}.created_at`),
    updatedAt: version,
    messageIdHeader: present(message.email_message_id),
    inReplyTo: [...(message.in_reply_to ?? [])],
    references: [...(message.references ?? [])],
    labels: labelNames(conv),
    assignees: assignees(conv),
    conversationUrl: nonEmpty(conv?.web_url) ?? (conv ? `${WEB_CONVERSATION_URL}${conv.id}` : null),
    draft: message.draft === true,
    deleted,
    deletedAt: deleted ? version : null,
    attachments: toAttachments(message.id, message.attachments ?? []),
    raw: rawOf(message, conv),
  };
}

/** Attachment metadata; `storedPath` and `sha256` are filled in when the content is stored. */
export function toAttachments(emailId: string, attachments: readonly MissiveAttachment[]): Attachment[] {
  return attachments.map((a) => ({
    id: a.id,
    emailId,
    filename: nonEmpty(a.filename) ?? (nonEmpty(a.extension) ? `attachment.${a.extension}` : null),
    mediaType: mediaTypeOf(a),
    size: a.size ?? null,
    url: nonEmpty(a.url),
    storedPath: null,
    sha256: null,
  }));
}

/** `media_type/sub_type` (e.g. `image/png`), lower case; a full type in `media_type` is used as is. */
export function mediaTypeOf(attachment: Pick<MissiveAttachment, 'media_type' | 'sub_type'>): string | null {
  const media = nonEmpty(attachment.media_type)?.toLowerCase() ?? null;
  const sub = nonEmpty(attachment.sub_type)?.toLowerCase() ?? null;
  if (media === null) return null;
  if (media.includes('/')) return media;
  return sub === null ? media : `${media}/${sub}`;
}

/** Shared label names, in Missive's order, without repeats. */
function labelNames(conv: MissiveConversation | null): string[] {
  if (conv === null) return [];
  const names = conv.shared_labels !== null && conv.shared_labels !== undefined
    ? conv.shared_labels.map((l) => l.name)
    : (conv.shared_label_names ?? '').split(',');
  return unique(names.map((n) => n.trim()).filter((n) => n !== ''));
}

function assignees(conv: MissiveConversation | null): Person[] {
  if (conv === null) return [];
  if (conv.assignees !== null && conv.assignees !== undefined) return conv.assignees.map(toPerson);
  // Only the comma-separated summary strings: names may themselves hold commas, so pair by position
  // only when the counts agree.
  const emails = splitList(conv.assignee_emails);
  const names = splitList(conv.assignee_names);
  return emails.map((email, i) => ({ id: null, name: names.length === emails.length ? (names[i] ?? null) : null, email }));
}

function toPerson(user: MissiveUserState): Person {
  return { id: user.id ?? null, name: nonEmpty(user.name), email: nonEmpty(user.email) };
}

function toAddress(field: MissiveAddress): Address | null {
  const address = nonEmpty(field.address) ?? nonEmpty(field.phone_number) ?? nonEmpty(field.username);
  if (address === null) return null;
  return { name: nonEmpty(field.name), address };
}

function toAddresses(fields: readonly MissiveAddress[] | null | undefined): Address[] {
  const out: Address[] = [];
  for (const field of fields ?? []) {
    const address = toAddress(field);
    if (address !== null) out.push(address);
  }
  return out;
}

/** The vendor objects, without the HTML body (stored once, in `bodyHtml`). */
function rawOf(message: MissiveMessage, conv: MissiveConversation | null): unknown {
  const { body: _body, conversation: _conversation, ...rest } = message;
  return { message: rest, conversation: conv };
}

/** The value as sent, or null when absent or blank. */
function present(value: string | null | undefined): string | null {
  if (value === null || value === undefined || value.trim() === '') return null;
  return value;
}

/** The value trimmed, or null when absent or blank (names, addresses, ids). */
function nonEmpty(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const trimmed = value.trim();
  return trimmed === '' ? null : trimmed;
}

function splitList(value: string | null | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
