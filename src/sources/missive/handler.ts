/**
 * Missive events -> canonical emails (one per message). What each event becomes:
 *
 *   conversation.snapshot (backfill)      its messages, as found; no request (attachments aside)
 *   message rule (incoming_/outgoing_*)   the message: from the body when it carries the HTML body,
 *                                         else GET /messages/:id (body, attachments, current
 *                                         conversation). 404 -> CONN_ERR_EVENT_NOT_READY (retried:
 *                                         Missive may not show a brand-new message yet)
 *   any other rule type (label_change,    every message of the conversation, in its current state:
 *   new_comment, closed/reopened,         GET /conversations/:id, its message list, bodies in
 *   assignee/team change, unknown)        batches of 10. The conversation is gone (404): the message
 *                                         the delivery names is marked deleted
 *   no API credentials                    the message in the body as it is (no HTML body unless the
 *                                         body had one), versioned by the delivery's receipt time;
 *                                         a warning, once, says enrichment is off. A message named
 *                                         in a field we cannot read (`latest_message` not an object,
 *                                         its `id` of the wrong type) -> CONN_ERR_EVENT_INVALID naming
 *                                         the field. No message at all (a conversation-level rule
 *                                         whose body carries none) -> CONN_ERR_SOURCE_UNCONFIGURED:
 *                                         there is no email row to make without the API; the dead
 *                                         letter says to set MISSIVE_API_TOKEN, after which a replay
 *                                         re-syncs the conversation
 *
 *   unsigned delivery, API configured     (WEBHOOKS_ALLOW_UNSIGNED, no MISSIVE_WEBHOOK_SECRET) the
 *                                         body gives ids only: a message rule reads GET /messages/:id
 *                                         with its conversation, anything else (a snapshot-typed body
 *                                         too) re-syncs the conversation; a 404 deletes nothing. The
 *                                         decision is the source's configuration when the event is
 *                                         handled (docs/missive.md: let the queue drain after turning
 *                                         the opt-out off). Without the API: the body, as above
 *
 * So every event ends as rows or as a dead letter that names its cause; never as "no changes" while
 * the delivery had something we could not use. A time that is not a valid time (`1e308`) is refused
 * by map.ts the same way, naming the field.
 *
 * Fetched state is versioned by the time it was requested (see map.ts), so a replayed old delivery
 * writes today's state rather than bringing back yesterday's labels. Trash is part of that state: a
 * conversation every user has trashed yields emails with `deleted: true`, a restored one `false`.
 *
 * With attachment storage on, each email's attachments are stored before the email is returned (see
 * attachments.ts); refusals are logged, transient failures fail the event so it is retried, except
 * on its last attempt, when the email is stored with the attachment's metadata only. Attachment URLs
 * are fetched only when they came from an API answer (this handling's, or our own backfill's); an
 * email taken from a delivery body has its URLs re-read from GET /messages/:id first.
 */
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { noChanges, type Changes, type Email, type QueueEvent } from '../../model.ts';
import type { HandlerContext } from '../source.ts';
import type { AttachmentStore, UrlOrigin } from './attachments.ts';
import type { MissiveClient } from './client.ts';
import { toEmail } from './map.ts';
import {
  deliveryMessage,
  deliveryMessageField,
  unreadableDeliveryMessage,
  MissiveConversation,
  MissiveDelivery,
  SnapshotPayload,
  type MissiveMessage,
} from './payloads.ts';
import { isKnownRuleType } from './webhook.ts';

/** The type of the events a backfill makes: one conversation with its messages. */
export const SNAPSHOT_EVENT_TYPE = 'conversation.snapshot';

export interface MissiveHandlerOptions {
  /** Null when MISSIVE_API_TOKEN is not set. */
  client: MissiveClient | null;
  /** Null when ATTACHMENTS_STORE is off (or there is no client to download with). */
  attachments: AttachmentStore | null;
  /** For the one-time "enrichment is off" warning. */
  log: Logger;
  /**
   * False when deliveries are taken unsigned (WEBHOOKS_ALLOW_UNSIGNED, no MISSIVE_WEBHOOK_SECRET): then,
   * with the API configured, nothing in a delivery body is used as data (see the header). Default true.
   */
  trustBody?: boolean;
}

/** When the delivery arrived, as a Date even if the event came back from JSON with a string. */
function receivedAt(event: QueueEvent): Date {
  return event.receivedAt instanceof Date ? event.receivedAt : new Date(event.receivedAt);
}

/** Whether a rule type's delivery is about one message rather than the whole conversation. */
export function isMessageRule(type: string): boolean {
  return /^(incoming|outgoing)_/.test(type);
}

/**
 * Holds one piece of state: whether the "enrichment is off" warning was logged, so that a process
 * without API credentials says it once rather than on every event.
 */
/** A delivery event's body, its conversation and the message it names; INVALID without a readable conversation. */
function readDelivery(event: QueueEvent): { delivery: MissiveDelivery; conversation: MissiveConversation; message: MissiveMessage | null } {
  const delivery = MissiveDelivery.safeParse(event.payload);
  const conversation = delivery.success ? MissiveConversation.safeParse(delivery.data.conversation) : null;
  if (!delivery.success || conversation === null || !conversation.success) {
    throw new ConnectorError('CONN_ERR_EVENT_INVALID', `Missive event ${event.id} (${event.type}) has no readable conversation`, {
      details: { eventId: event.id, type: event.type },
    });
  }
  return { delivery: delivery.data, conversation: conversation.data, message: deliveryMessage(delivery.data) };
}

export class MissiveHandler {
  private warnedOffline = false;

  constructor(private readonly options: MissiveHandlerOptions) {}

  async handle(event: QueueEvent, context: HandlerContext): Promise<Changes> {
    const { client } = this.options;
    if (this.options.trustBody === false && client !== null && event.origin !== 'backfill') return this.fromApiOnly(client, event, context);
    if (event.type === SNAPSHOT_EVENT_TYPE) return this.fromSnapshot(event, context);

    const { delivery, conversation, message } = readDelivery(event);
    if (!isKnownRuleType(event.type)) {
      context.log.info({ type: event.type, conversationId: conversation.id }, `unknown Missive rule type "${event.type}": re-syncing the conversation`);
    }

    if (client === null) return this.fromBody(event, conversation, delivery, context);
    if (isMessageRule(event.type) && message !== null) return this.oneMessage(client, event, conversation, message, deliveryMessageField(delivery) ?? 'message', context);
    return this.wholeConversation(client, conversation.id, message, context);
  }

  /**
   * An unsigned delivery's event (anyone could have sent it): only the ids are taken from it, to know
   * what to read. A message rule reads its message (and the message's conversation); anything else, or a
   * message the API does not return with its conversation, re-syncs the conversation. A conversation the
   * API does not know marks nothing deleted: the message the body names is the sender's word only.
   */
  private async fromApiOnly(client: MissiveClient, event: QueueEvent, context: HandlerContext): Promise<Changes> {
    const { conversation, message } = readDelivery(event);
    if (isMessageRule(event.type) && message !== null) {
      const observedAt = context.now();
      const full = await client.getMessage(message.id, context.signal);
      if (full === null) {
        throw new ConnectorError('CONN_ERR_EVENT_NOT_READY', `Missive does not show message ${message.id} (yet)`, {
          details: { messageId: message.id, conversationId: conversation.id },
        });
      }
      if (full.conversation !== null && full.conversation !== undefined) return this.changes([toEmail(full, full.conversation, { observedAt })], context, 'api');
    }
    return this.wholeConversation(client, conversation.id, null, context);
  }

  private async fromSnapshot(event: QueueEvent, context: HandlerContext): Promise<Changes> {
    const parsed = SnapshotPayload.safeParse(event.payload);
    if (!parsed.success) {
      throw new ConnectorError('CONN_ERR_EVENT_INVALID', `Missive snapshot event ${event.id} has an unreadable payload`, {
        details: { eventId: event.id, issue: parsed.error.issues[0]?.message },
      });
    }
    const { conversation, messages, observedAt } = parsed.data;
    // Only our own backfill makes snapshots from API answers; one that came in a delivery is a body.
    const urls: UrlOrigin = event.origin === 'backfill' ? 'api' : 'delivery';
    return this.changes(messages.map((m, i) => toEmail(m, conversation, { observedAt, field: `messages[${i}]` })), context, urls);
  }

  /** No API: what the delivery body says, nothing more; a row, or a dead letter naming why not (see the header). */
  private async fromBody(event: QueueEvent, conversation: MissiveConversation, delivery: MissiveDelivery, context: HandlerContext): Promise<Changes> {
    if (!this.warnedOffline) {
      this.warnedOffline = true;
      this.options.log.warn('MISSIVE_API_TOKEN is not set: Missive emails are stored from webhook bodies only (no HTML body, no other messages of a conversation, no attachment content)');
    }
    const unreadable = unreadableDeliveryMessage(event.payload);
    if (unreadable !== null) {
      throw new ConnectorError('CONN_ERR_EVENT_INVALID', `Missive event ${event.id} (${event.type}): ${unreadable}`, {
        details: { eventId: event.id, type: event.type, conversationId: conversation.id },
      });
    }
    const message = deliveryMessage(delivery);
    if (message === null) {
      throw new ConnectorError(
        'CONN_ERR_SOURCE_UNCONFIGURED',
        `Missive event ${event.id} (${event.type}) for conversation ${conversation.id} names no message, and without the API there is no email to store it as; set MISSIVE_API_TOKEN, then replay the dead letters (the conversation is then re-synced)`,
        { details: { eventId: event.id, type: event.type, conversationId: conversation.id } },
      );
    }
    return this.changes([toEmail(message, conversation, { observedAt: receivedAt(event), field: deliveryMessageField(delivery) ?? 'message' })], context);
  }

  private async oneMessage(client: MissiveClient, event: QueueEvent, conversation: MissiveConversation, message: MissiveMessage, field: string, context: HandlerContext): Promise<Changes> {
    if (typeof message.body === 'string' && message.body.trim() !== '') {
      return this.changes([toEmail(message, conversation, { observedAt: receivedAt(event), field })], context);
    }
    const observedAt = context.now();
    const full = await client.getMessage(message.id, context.signal);
    if (full === null) {
      throw new ConnectorError('CONN_ERR_EVENT_NOT_READY', `Missive does not show message ${message.id} (yet)`, {
        details: { messageId: message.id, conversationId: conversation.id },
      });
    }
    if (full.conversation !== null && full.conversation !== undefined) {
      return this.changes([toEmail(full, full.conversation, { observedAt })], context, 'api');
    }
    // The message came without its conversation: ask for it; if that fails, the body's (older) state
    // is all there is, versioned by when the delivery arrived.
    const current = await client.getConversation(conversation.id, context.signal);
    if (current !== null) return this.changes([toEmail(full, current, { observedAt })], context, 'api');
    return this.changes([toEmail(full, conversation, { observedAt: receivedAt(event) })], context, 'api');
  }

  private async wholeConversation(client: MissiveClient, conversationId: string, named: MissiveMessage | null, context: HandlerContext): Promise<Changes> {
    const observedAt = context.now();
    const conversation = await client.getConversation(conversationId, context.signal);
    if (conversation === null) {
      context.log.warn({ conversationId }, 'Missive conversation not found (deleted, or no longer visible to the API token)');
      const changes = noChanges();
      if (named !== null) changes.deletedEmails.push({ id: named.id, at: observedAt });
      return changes;
    }
    const listed = await client.listConversationMessages(conversation.id, context.signal);
    const full = new Map((await client.getMessages(listed.map((m) => m.id), context.signal)).map((m) => [m.id, m]));
    const emails: Email[] = [];
    for (const summary of listed) {
      const message = full.get(summary.id);
      if (message === undefined) {
        context.log.warn({ conversationId: conversation.id, messageId: summary.id }, 'Missive listed a message it then did not return; skipped this time');
        continue;
      }
      emails.push(toEmail(message, conversation, { observedAt }));
    }
    return this.changes(emails, context, 'api');
  }

  /**
   * The emails, their attachments stored first. `urls` says where the attachments' URLs came from:
   * anything but an API answer is re-read from the API before a download (see attachments.ts).
   */
  private async changes(emails: Email[], context: HandlerContext, urls: UrlOrigin = 'delivery'): Promise<Changes> {
    const store = this.options.attachments;
    if (store !== null) {
      for (const email of emails) {
        if (email.attachments.length > 0) {
          email.attachments = await store.storeAll(email.attachments, { urls, lastAttempt: context.lastAttempt === true, ...(context.signal !== undefined ? { signal: context.signal } : {}) });
        }
      }
    }
    return { ...noChanges(), emails };
  }
}
