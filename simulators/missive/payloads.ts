/**
 * Every Missive wire format, rendered from the simulator's records. Section numbers refer to
 * /work/shared/reference/missive.md; choices where it is uncertain are marked GUESS and switchable
 * through `MissiveQuirks` where a client could depend on them.
 */
import { createHmac } from 'node:crypto';
import { JsonCache, jsonBytes } from '../common.ts';
import { ORG_DOMAIN } from '../generator/missive.ts';
import type { MvAddress, MvAttachment, MvComment, MvConversation, MvMessage, MvUser, RuleType } from './model.ts';
import type { MissiveState } from './state.ts';

export interface MissiveQuirks {
  /**
   * Whether `all=true` lists trashed and junked conversations too (reference U7, unknown). Default false:
   * a backfill must also page `trashed=true`.
   */
  allIncludesTrash: boolean;
  /**
   * Whether label, close/reopen, assignee, team and trash changes move `last_activity_at` (reference U7).
   * Default false: only messages and comments do, so a backfill walking `last_activity_at` misses the rest.
   */
  actionsBumpActivity: boolean;
  /**
   * Escape `<`, `>`, `&`, U+2028 and U+2029 in delivery JSON as `\u003c` etc., as Rails does by default
   * (reference U11). Default true: receivers that re-serialise the body before verifying break.
   */
  escapeHtmlInJson: boolean;
}

export const DEFAULT_MISSIVE_QUIRKS: MissiveQuirks = {
  allIncludesTrash: false,
  actionsBumpActivity: false,
  escapeHtmlInJson: true,
};

/** JSON as Missive sends it: compact; HTML-significant characters escaped when `escapeHtml`. */
export function encodeJson(value: unknown, escapeHtml: boolean): string {
  const json = JSON.stringify(value);
  if (!escapeHtml) return json;
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const address = (a: MvAddress) => ({ name: a.name, address: a.address });

function userState(user: MvUser, conversation: MvConversation): Record<string, unknown> {
  const flags = conversation.flags[user.id];
  return {
    id: user.id,
    name: user.name,
    email: user.email,
    unassigned: conversation.assigneeIds.length === 0,
    closed: flags?.closed ?? false,
    archived: flags?.archived ?? false,
    trashed: flags?.trashed ?? false,
    junked: flags?.junked ?? false,
    assigned: conversation.assigneeIds.includes(user.id),
    flagged: flags?.flagged ?? false,
    snoozed: flags?.snoozed ?? false,
  };
}

/** The messages a conversation version lists, oldest first. */
export function conversationMessages(conversation: MvConversation, state: MissiveState): MvMessage[] {
  return conversation.messageIds.map((id) => state.messages.latest(id)).filter((m): m is MvMessage => m !== undefined);
}

/**
 * The conversation object (reference 1.5.1). REST rows carry `last_activity_at`; webhook snapshots
 * (`forWebhook`) do not (GUESS: the documented webhook example does not show it). A conversation where
 * the token's user is a guest renders as `{id, last_activity_at}` in REST.
 */
export function conversationJson(conversation: MvConversation, state: MissiveState, forWebhook = false): Record<string, unknown> {
  if (conversation.guest && !forWebhook) return { id: conversation.id, last_activity_at: conversation.lastActivityAt };
  const messages = conversationMessages(conversation, state);
  const users = conversation.userIds.map((id) => state.users.get(id)).filter((u): u is MvUser => u !== undefined);
  const assignees = users.filter((u) => conversation.assigneeIds.includes(u.id));
  const labels = conversation.labelIds.map((id) => state.labels.get(id)).filter((l) => l !== undefined);
  const team = conversation.teamId === null ? undefined : state.teams.get(conversation.teamId);
  const authors = new Map<string, MvAddress>();
  for (const m of messages) {
    for (const a of [m.from, ...m.to, ...m.cc]) {
      if (!a.address.endsWith(`@${ORG_DOMAIN}`) && !authors.has(a.address.toLowerCase())) authors.set(a.address.toLowerCase(), a);
    }
  }
  const out: Record<string, unknown> = {
    id: conversation.id,
    created_at: conversation.createdAt,
    subject: conversation.subject,
    latest_message_subject: messages.length > 0 ? (messages[messages.length - 1] as MvMessage).subject : null,
    organization: { id: state.organization.id, name: state.organization.name },
  };
  if (team) out.team = { id: team.id, name: team.name, organization: team.organizationId };
  Object.assign(out, {
    color: conversation.color,
    assignees: assignees.map((u) => userState(u, conversation)),
    assignee_names: assignees.map((u) => u.name).join(', '),
    assignee_emails: assignees.map((u) => u.email).join(', '),
    users: users.map((u) => userState(u, conversation)),
    attachments_count: messages.reduce((n, m) => n + m.attachments.length, 0),
    messages_count: messages.length,
    drafts_count: conversation.draftsCount,
    send_later_messages_count: conversation.sendLaterMessagesCount,
    tasks_count: conversation.tasksCount,
    completed_tasks_count: conversation.completedTasksCount,
    authors: [...authors.values()].map(address),
    shared_labels: labels.map((l) => ({ id: l.id, name: l.name })),
    shared_label_names: labels.map((l) => l.name).join(', '),
    app_url: `missive://mail.missiveapp.com/#inbox/conversations/${conversation.id}`,
    web_url: `https://mail.missiveapp.com/#inbox/conversations/${conversation.id}`,
  });
  if (!forWebhook) out.last_activity_at = conversation.lastActivityAt;
  return out;
}

/**
 * A message without `body`, `attachments` and `conversation`: the rows of
 * `GET /v1/conversations/:id/messages` (reference 2.4) and the message of a webhook delivery (GUESS,
 * reference U4: webhook messages are summaries; fetch the body and attachments with GET message).
 */
export function messageRow(message: MvMessage, state: MissiveState): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: message.id,
    subject: message.subject,
    preview: message.preview,
    type: 'email',
    delivered_at: message.deliveredAt,
    created_at: message.createdAt,
    updated_at: message.updatedAt,
    email_message_id: message.emailMessageId,
    in_reply_to: message.inReplyTo,
    references: message.references,
    from_field: address(message.from),
    to_fields: message.to.map(address),
    cc_fields: message.cc.map(address),
    bcc_fields: message.bcc.map(address),
    reply_to_fields: message.replyTo.map(address),
  };
  const author = message.authorId === null ? undefined : state.users.get(message.authorId);
  if (author) out.author = { id: author.id, name: author.name, email: author.email, avatar_url: author.avatarUrl };
  return out;
}

/**
 * Cached JSON text of REST conversation rows and message rows, per record version (conversations and
 * messages are immutable versions in a `VersionedStore`, labels and users are never edited in place).
 */
export class MissiveJson {
  private readonly conversations: JsonCache<MvConversation>;
  private readonly rows: JsonCache<MvMessage>;

  constructor(private readonly state: MissiveState) {
    this.conversations = new JsonCache((c) => conversationJson(c, state));
    this.rows = new JsonCache((m) => messageRow(m, state));
  }

  conversation(c: MvConversation): Buffer {
    return this.conversations.bytes(c);
  }

  messageRow(m: MvMessage): Buffer {
    return this.rows.bytes(m);
  }

  /**
   * The full message of `GET /v1/messages/:id` (reference 2.6): the row + `body` (HTML), `attachments`
   * (URLs signed afresh on every call) and `conversation`.
   */
  fullMessage(m: MvMessage, conversation: MvConversation | undefined, signer: AttachmentSigner): Buffer {
    const row = this.rows.bytes(m);
    return jsonBytes([
      row.subarray(0, row.length - 1),
      `,"body":${JSON.stringify(m.body)},"attachments":${JSON.stringify(m.attachments.map((a) => attachmentJson(a, signer)))},"conversation":`,
      conversation ? this.conversations.bytes(conversation) : 'null',
      '}',
    ]);
  }
}

/** Signs attachment download URLs: `Expires` (unix seconds) and an HMAC over id + expiry. */
export interface AttachmentSigner {
  /** A download URL valid from now until the configured lifetime has passed. */
  url(attachment: MvAttachment): string;
  /** Lower-case hex signature of one id and expiry. */
  sign(id: string, expires: number): string;
}

/**
 * URLs of the form `{baseUrl}/attachments/{id}/{filename}?Expires={unix s}&Signature={hex}` (GUESS for
 * the layout; reference 4 only says the URL is signed, expires, carries `Expires`, and 403s after).
 */
export function createAttachmentSigner(baseUrl: () => string, key: string, ttlSeconds: number, now: () => number): AttachmentSigner {
  const sign = (id: string, expires: number) => createHmac('sha256', key).update(`${id}:${expires}`).digest('hex');
  return {
    sign,
    url: (attachment) => {
      const expires = Math.floor(now() / 1000) + ttlSeconds;
      return `${baseUrl()}/attachments/${attachment.id}/${encodeURIComponent(attachment.filename)}?Expires=${expires}&Signature=${sign(attachment.id, expires)}`;
    },
  };
}

export function attachmentJson(attachment: MvAttachment, signer: AttachmentSigner): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: attachment.id,
    filename: attachment.filename,
    extension: attachment.extension,
    url: signer.url(attachment),
    media_type: attachment.mediaType,
    sub_type: attachment.subType,
    size: attachment.size,
  };
  if (attachment.width !== undefined) out.width = attachment.width;
  if (attachment.height !== undefined) out.height = attachment.height;
  return out;
}

export function commentJson(comment: MvComment, state: MissiveState, signer: AttachmentSigner): Record<string, unknown> {
  const author = state.users.get(comment.authorId);
  return {
    id: comment.id,
    body: comment.body,
    mentions: comment.mentions,
    created_at: comment.createdAt,
    attachment: comment.attachment ? attachmentJson(comment.attachment, signer) : null,
    task: null,
    author: author ? { id: author.id, name: author.name, email: author.email, avatar_url: author.avatarUrl } : null,
  };
}

/** Where the message goes in a delivery by default (brief + reference 1.4): `message` for email rules. */
export function defaultMessageKey(type: RuleType): 'message' | 'latest_message' {
  return type === 'incoming_email' || type === 'outgoing_email' ? 'message' : 'latest_message';
}

/** `sha256=` + lower-case hex HMAC-SHA256 of the body (reference 1.6). */
export function hookSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}
