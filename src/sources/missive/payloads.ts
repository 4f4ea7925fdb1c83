/**
 * Missive's shapes, as its webhooks and REST API send them (see docs reference/missive.md, sections 1.4,
 * 1.5, 2.2-2.6 and 4). Every schema here is tolerant on purpose:
 * - unknown fields pass through untouched (they end up in `raw`);
 * - a field with an unexpected type reads as null instead of failing the whole object, because a
 *   delivery we cannot read would be retried by Missive and, after 50 failures, disable the rule;
 * - ids may arrive as numbers and are read as strings;
 * - times are unix seconds (integers, sometimes numeric strings);
 * - display names may be null.
 * Only what we cannot work without is required: an id on conversations, messages and attachments.
 */
import { z } from 'zod';
import { canonicalEmailId } from '../../model.ts';

/**
 * A vendor id: a non-empty string, or a number read as its decimal text, in its one canonical spelling:
 * trimmed, and lower-cased when it is a UUID (Missive's ids are; a UUID's case carries no meaning), so
 * that one message or conversation is one row and one entity key however a delivery spells it (the
 * rule is model.ts `canonicalEmailId`, shared with the database migrations).
 */
export const Id = z
  .union([z.string(), z.number().finite().transform((n) => String(n))])
  .transform(canonicalEmailId)
  .pipe(z.string().min(1));

/** A string, or null when absent or of another type. */
const Text = z.string().nullish().catch(null);

/** Unix seconds (a number or a numeric string), or null when absent or unreadable. */
const UnixSeconds = z
  .union([z.number().finite(), z.string().regex(/^\d+(\.\d+)?$/).transform(Number)])
  .nullish()
  .catch(null);

const Flag = z.boolean().nullish().catch(null);

const Count = z.number().finite().nullish().catch(null);

/**
 * An array whose readable elements are kept and unreadable ones dropped; null when not an array.
 * An absent key stays absent (so a parsed object has the keys the vendor sent, and no others).
 * One odd recipient must not cost us the whole message.
 */
function tolerantArray<T extends z.ZodType>(element: T) {
  return z
    .unknown()
    .transform((value): z.output<T>[] | null => {
      if (!Array.isArray(value)) return null;
      const out: z.output<T>[] = [];
      for (const item of value) {
        const parsed = element.safeParse(item);
        if (parsed.success) out.push(parsed.data);
      }
      return out;
    })
    .optional();
}

/** A list of strings (Message-IDs); a lone string is read as a one-element list; null when neither. */
const StringList = z
  .unknown()
  .transform((value): string[] | null => {
    if (typeof value === 'string') return value.trim() === '' ? [] : [value];
    if (!Array.isArray(value)) return null;
    return value.filter((v): v is string => typeof v === 'string' && v.trim() !== '');
  })
  .optional();

/** `{name, address}`; other channels send `{id, username, name}` or `{name, phone_number}`. */
export const MissiveAddress = z.looseObject({
  name: Text,
  address: Text,
  phone_number: Text,
  username: Text,
});
export type MissiveAddress = z.output<typeof MissiveAddress>;

/** A user with that user's view of a conversation (in `users` and `assignees`). Flags are per user. */
export const MissiveUserState = z.looseObject({
  id: Id.nullish().catch(null),
  name: Text,
  email: Text,
  unassigned: Flag,
  closed: Flag,
  archived: Flag,
  trashed: Flag,
  junked: Flag,
  assigned: Flag,
  flagged: Flag,
  snoozed: Flag,
});
export type MissiveUserState = z.output<typeof MissiveUserState>;

export const MissiveLabel = z.looseObject({
  id: Id.nullish().catch(null),
  name: z.string(),
});
export type MissiveLabel = z.output<typeof MissiveLabel>;

/** A conversation: in every webhook delivery, in REST list rows (guest rows: only id and last_activity_at). */
export const MissiveConversation = z.looseObject({
  id: Id,
  subject: Text,
  latest_message_subject: Text,
  created_at: UnixSeconds,
  last_activity_at: UnixSeconds,
  users: tolerantArray(MissiveUserState),
  assignees: tolerantArray(MissiveUserState),
  assignee_names: Text,
  assignee_emails: Text,
  shared_labels: tolerantArray(MissiveLabel),
  shared_label_names: Text,
  messages_count: Count,
  attachments_count: Count,
  web_url: Text,
  app_url: Text,
});
export type MissiveConversation = z.output<typeof MissiveConversation>;

/**
 * A file on a message (GET message) or a comment. `media_type` is the top-level type (`image`),
 * `sub_type` the rest (`png`). `url` is signed and expires (403 when it has).
 */
export const MissiveAttachment = z.looseObject({
  id: Id,
  filename: Text,
  extension: Text,
  url: Text,
  media_type: Text,
  sub_type: Text,
  size: Count,
  width: Count,
  height: Count,
});
export type MissiveAttachment = z.output<typeof MissiveAttachment>;

/**
 * A message: a summary in webhooks and list rows (no `body`), complete from GET /v1/messages/:id
 * (`body` is HTML; `attachments`; `conversation`).
 */
export const MissiveMessage = z.looseObject({
  id: Id,
  subject: Text,
  preview: Text,
  type: Text,
  body: Text,
  delivered_at: UnixSeconds,
  created_at: UnixSeconds,
  updated_at: UnixSeconds,
  email_message_id: Text,
  in_reply_to: StringList,
  references: StringList,
  from_field: MissiveAddress.nullish().catch(null),
  to_fields: tolerantArray(MissiveAddress),
  cc_fields: tolerantArray(MissiveAddress),
  bcc_fields: tolerantArray(MissiveAddress),
  reply_to_fields: tolerantArray(MissiveAddress),
  attachments: tolerantArray(MissiveAttachment),
  /** Not documented; some consumers read it. Drafts are otherwise not listed by the API. */
  draft: Flag,
  conversation: MissiveConversation.nullish().catch(null),
});
export type MissiveMessage = z.output<typeof MissiveMessage>;

/** A comment (rule type `new_comment`). Comments are not emails; we keep them only in `raw`. */
export const MissiveComment = z.looseObject({
  id: Id,
  body: Text,
  created_at: UnixSeconds,
  author: z
    .looseObject({ id: Id.nullish().catch(null), name: Text, email: Text })
    .nullish()
    .catch(null),
  attachment: MissiveAttachment.nullish().catch(null),
});
export type MissiveComment = z.output<typeof MissiveComment>;

export const MissiveRule = z.looseObject({
  id: Id.nullish().catch(null),
  description: Text,
  type: Text,
});
export type MissiveRule = z.output<typeof MissiveRule>;

/**
 * One webhook delivery. The message sits under `message` (incoming messages) or `latest_message`
 * (the documented label_change example), the comment under `comment`. A delivery without a
 * conversation is Missive's validation request (or something we cannot use) and yields no event.
 */
export const MissiveDelivery = z.looseObject({
  rule: MissiveRule.nullish().catch(null),
  conversation: z.unknown().optional(),
  message: MissiveMessage.nullish().catch(null),
  latest_message: MissiveMessage.nullish().catch(null),
  comment: MissiveComment.nullish().catch(null),
});
export type MissiveDelivery = z.output<typeof MissiveDelivery>;

/** The message a delivery is about: `message`, else `latest_message`. */
export function deliveryMessage(delivery: MissiveDelivery): MissiveMessage | null {
  return delivery.message ?? delivery.latest_message ?? null;
}

/** The keys a delivery may carry its message under, in the order `deliveryMessage` reads them. */
export const DELIVERY_MESSAGE_FIELDS = ['message', 'latest_message'] as const;
export type DeliveryMessageField = (typeof DELIVERY_MESSAGE_FIELDS)[number];

/** Which key `deliveryMessage` took the message from (for error messages naming a field), or null. */
export function deliveryMessageField(delivery: MissiveDelivery): DeliveryMessageField | null {
  if (delivery.message !== null && delivery.message !== undefined) return 'message';
  if (delivery.latest_message !== null && delivery.latest_message !== undefined) return 'latest_message';
  return null;
}

/**
 * Why the message a delivery names cannot be read, naming the field (`latest_message.id: expected a
 * string id, got true`), or null when the delivery names none (the key absent or null) or it reads.
 * The schemas above turn such a message into null so that the rest of the delivery stays usable; a
 * handler that has nothing else to store from must not take that null for "no message" (it would
 * acknowledge the event and store nothing). The first key present decides, as in `deliveryMessage`:
 * an unreadable `message` is not replaced by a `latest_message` summary.
 */
export function unreadableDeliveryMessage(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null;
  for (const field of DELIVERY_MESSAGE_FIELDS) {
    const value = (body as Record<string, unknown>)[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'object' || Array.isArray(value)) return `${field}: expected an object, got ${shown(value)}`;
    const parsed = MissiveMessage.safeParse(value);
    if (parsed.success) return null;
    const issue = parsed.error.issues[0];
    const path = [field, ...(issue?.path ?? []).map(String)].join('.');
    if (issue?.path.length === 1 && issue.path[0] === 'id') return `${path}: expected a string id, got ${shown((value as Record<string, unknown>).id)}`;
    return `${path}: ${issue?.message ?? 'unreadable'}`;
  }
  return null;
}

/** A value as it reads in an error message: JSON, cut short; `undefined` says the key is missing. */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing (no such key)';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

// ---- REST responses (section 2) ----

/** GET /v1/conversations and GET /v1/conversations/:id: `{conversations: [...]}`. */
export const ConversationsResponse = z.looseObject({ conversations: tolerantArray(MissiveConversation) }).transform((r) => ({ conversations: r.conversations ?? [] }));

/** GET /v1/conversations/:id/messages: `{messages: [...]}` (summaries, no body). */
export const MessageListResponse = z.looseObject({ messages: tolerantArray(MissiveMessage) }).transform((r) => ({ messages: r.messages ?? [] }));

/**
 * GET /v1/messages/:id (an object) or /v1/messages/:id1,:id2 (an array); read both as a list.
 */
export const MessagesResponse = z.looseObject({ messages: z.unknown().optional() }).transform((r) => {
  const value = r.messages;
  const items = Array.isArray(value) ? value : value === null || value === undefined ? [] : [value];
  const messages: MissiveMessage[] = [];
  for (const item of items) {
    const parsed = MissiveMessage.safeParse(item);
    if (parsed.success) messages.push(parsed.data);
  }
  return { messages };
});

// ---- Our own event payload (made by the backfill, read by the handler) ----

/**
 * What a backfill found for one conversation: the conversation row and its messages with bodies,
 * so that handling the event needs no further request (except attachment downloads).
 */
export const SnapshotPayload = z.object({
  conversation: MissiveConversation,
  messages: z.array(MissiveMessage),
  /** When the state was read from Missive (ISO-8601): the version of the records made from it. */
  observedAt: z.coerce.date(),
});
export type SnapshotPayload = z.output<typeof SnapshotPayload>;
