/**
 * Missive webhook deliveries: signature check over the raw bytes, then parsing into events.
 *
 * Signature (reference 1.6): header `X-Hook-Signature`, value `sha256=<hex HMAC-SHA256 of the raw body>`
 * keyed with the rule's secret. A bare hex value is accepted too (U2), hex in either case. Without
 * MISSIVE_WEBHOOK_SECRET every delivery is refused (401) unless WEBHOOKS_ALLOW_UNSIGNED=true. The comparison is constant-time, on the exact bytes
 * received: a body re-serialised by anyone in between no longer matches, by design.
 *
 * Parsing (reference 1.4, 1.7):
 * - an empty body, or a JSON object without `conversation`, is Missive's validation request (sent when
 *   a rule is saved; its shape is undocumented, U1) or a delivery we cannot use: no event, a note, and
 *   the server answers 200 so that Missive keeps the rule enabled;
 * - any other body must be JSON (415 otherwise), nested at most MAX_JSON_DEPTH levels (json-depth.ts;
 *   checked on the raw bytes before parsing), and an object whose `conversation` has an id (400);
 * - every rule type becomes one event keyed by its conversation, known or not: an unknown type (Missive
 *   renamed one before without notice) means "re-sync the conversation", and the note says so.
 */
import { randomUUID } from 'node:crypto';
import { ConnectorError } from '../../errors.ts';
import type { QueueEvent } from '../../model.ts';
import { jsonTooDeep, tooDeepMessage } from '../json-depth.ts';
import { hmacSha256Matches, missingSecret } from '../signature.ts';
import { header, type Delivery, type ParsedDelivery } from '../source.ts';
import { Id, MissiveRule } from './payloads.ts';

export const SIGNATURE_HEADER = 'x-hook-signature';

/** Rule types whose delivery is about one message (reference 1.2). */
export const MESSAGE_RULE_TYPES = [
  'incoming_email',
  'outgoing_email',
  'incoming_sms_message',
  'outgoing_sms_message',
  'incoming_twilio_message',
  'outgoing_twilio_message',
] as const;

/** Rule types whose delivery is about the conversation as a whole (reference 1.2). */
export const CONVERSATION_RULE_TYPES = [
  'label_change',
  'new_comment',
  'conversation_closed',
  'conversation_reopened',
  'conversation_assignee_change',
  'team_change',
] as const;

/** The event type of a delivery whose `rule.type` is missing. */
export const UNKNOWN_RULE_TYPE = 'unknown';

const KNOWN_RULE_TYPES: ReadonlySet<string> = new Set([...MESSAGE_RULE_TYPES, ...CONVERSATION_RULE_TYPES]);

export function isKnownRuleType(type: string): boolean {
  return KNOWN_RULE_TYPES.has(type);
}

/**
 * Throws CONN_ERR_WEBHOOK_SIGNATURE unless the delivery carries a valid signature for `secret`.
 * Without a secret every delivery is refused, naming MISSIVE_WEBHOOK_SECRET, unless `allowUnsigned`
 * (WEBHOOKS_ALLOW_UNSIGNED) says to take them unchecked.
 */
export function verifyMissiveSignature(delivery: Delivery, secret: string | undefined, options: { allowUnsigned?: boolean } = {}): void {
  if (secret === undefined || secret === '') {
    if (options.allowUnsigned === true) return;
    throw missingSecret('MISSIVE_WEBHOOK_SECRET');
  }
  const value = header(delivery.headers, SIGNATURE_HEADER);
  if (value === undefined || value.trim() === '') {
    throw new ConnectorError('CONN_ERR_WEBHOOK_SIGNATURE', 'Missive delivery has no X-Hook-Signature header', { status: 401 });
  }
  const hex = value.trim().replace(/^sha256=/i, '');
  if (!hmacSha256Matches(secret, delivery.rawBody, hex)) {
    throw new ConnectorError('CONN_ERR_WEBHOOK_SIGNATURE', 'Missive delivery signature does not match its body', { status: 401 });
  }
}

export interface ParseOptions {
  /** Event ids; default crypto.randomUUID. */
  newId?: () => string;
  /** Whether the handler can re-read conversations from the API (MISSIVE_API_TOKEN set). Default false. */
  apiConfigured?: boolean;
}

/**
 * How long a byte-identical copy of a conversation-level delivery (label change, close, assignment,
 * an unknown rule type) counts as a repeat of it. Missive's bodies carry no time of the change, so
 * labelling A, unlabelling and labelling A again can send the same bytes twice for two real changes.
 * With the API the handler re-reads the conversation on every such event: a repeat is harmless and a
 * real change must never be dropped, so no window. Without it the row is versioned by the delivery's
 * arrival, so a late retry would bring back the older state: the window covers Missive's retries
 * (up to 5 over about 8 minutes, reference 1.7) and no more. A message rule's body is about one message
 * and cannot repeat for a new change: it gets the whole window.
 */
export const CONVERSATION_RULE_REPLAY_WINDOW_MS = 15 * 60 * 1000;

const MESSAGE_RULES: ReadonlySet<string> = new Set(MESSAGE_RULE_TYPES);

/** Turns a verified delivery into events (see the header for the rules). */
export function parseMissiveDelivery(delivery: Delivery, options: ParseOptions = {}): ParsedDelivery {
  const newId = options.newId ?? randomUUID;
  if (isBlank(delivery.rawBody)) {
    return { events: [], note: 'empty body: taken as a Missive validation request; nothing to enqueue' };
  }
  assertJsonContentType(header(delivery.headers, 'content-type'));
  const body = parseJsonObject(delivery.rawBody);

  const rule = MissiveRule.safeParse(body.rule);
  // A blank type is no type (an event's type must not be empty: the queue would refuse it); a long one
  // is cut, as Teamwork's event names are.
  const named = rule.success ? rule.data.type?.trim() : undefined;
  const ruleType = named === undefined || named === '' ? null : named.slice(0, 100);
  const eventType = ruleType ?? undefined;

  if (body.conversation === undefined || body.conversation === null) {
    return {
      events: [],
      note: 'no conversation in the body: taken as a Missive validation request (or a delivery we do not store); nothing to enqueue',
      ...(eventType !== undefined ? { eventType } : {}),
    };
  }
  // Only what routing needs is checked here: the conversation's id (the payload schemas tolerate
  // every other field's type drift, and the handler reads them).
  const conversationId = idOf(body.conversation);
  if (conversationId === null) {
    throw new ConnectorError('CONN_ERR_WEBHOOK_MALFORMED', 'Missive delivery has a conversation without an id', { status: 400 });
  }

  const type = ruleType ?? UNKNOWN_RULE_TYPE;
  const event: QueueEvent = {
    id: newId(),
    source: 'missive',
    type,
    entityKey: `conversation:${conversationId}`,
    origin: 'webhook',
    receivedAt: delivery.receivedAt,
    payload: body,
  };
  const parsed: ParsedDelivery = { events: [event], eventType: type };
  if (!MESSAGE_RULES.has(type)) parsed.replayWindowMs = options.apiConfigured === true ? 0 : CONVERSATION_RULE_REPLAY_WINDOW_MS;
  if (!isKnownRuleType(type)) {
    parsed.note = `Missive rule type "${type}" is not one we know: the conversation will be re-synced`;
  }
  return parsed;
}

/** A conversation's id as the payload schemas read it (Id), or null when it has none. */
function idOf(conversation: unknown): string | null {
  if (typeof conversation !== 'object' || conversation === null || Array.isArray(conversation)) return null;
  const id = Id.safeParse((conversation as { id?: unknown }).id);
  return id.success ? id.data : null;
}

function isBlank(body: Buffer): boolean {
  for (const byte of body) {
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) return false;
  }
  return true;
}

/** `application/json` or any `application/*+json`, parameters (charset) ignored. */
function assertJsonContentType(value: string | undefined): void {
  const media = (value ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (media === 'application/json' || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(media)) return;
  throw new ConnectorError(
    'CONN_ERR_WEBHOOK_MEDIA_TYPE',
    `Missive delivery has content type "${value ?? '(none)'}"; expected application/json`,
    { status: 415 },
  );
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function parseJsonObject(raw: Buffer): Record<string, unknown> {
  // Before JSON.parse: a body nested thousands of levels deep parses, then breaks everything that
  // walks it (the queue's JSON.stringify, the handler's schemas).
  if (jsonTooDeep(raw)) throw new ConnectorError('CONN_ERR_WEBHOOK_MALFORMED', `Missive delivery: ${tooDeepMessage()}`, { status: 400 });
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(raw));
  } catch (err) {
    throw new ConnectorError('CONN_ERR_WEBHOOK_MALFORMED', 'Missive delivery body is not valid UTF-8 JSON', { status: 400, cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConnectorError('CONN_ERR_WEBHOOK_MALFORMED', 'Missive delivery body is not a JSON object', { status: 400 });
  }
  return value as Record<string, unknown>;
}
