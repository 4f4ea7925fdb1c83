/**
 * Teamwork deliveries: signature check over the raw bytes, then the body read into events.
 *
 * Signature (reference §1.7): `X-Projects-Signature` is the lower-case hex HMAC-SHA256 of the raw
 * body keyed with the hook's token, no prefix, no timestamp. Compared in constant time and in any case;
 * a body re-serialised by anything on the way fails, as it must.
 *
 * Bodies (reference §1.3-1.5, §6.2), told apart by content type and keys:
 * - `application/json`                      -> v2 JSON (nested camelCase)
 * - form with dotted keys (`Task.ID`)       -> v2 Form, unflattened into the JSON structure
 * - form with `objectId` (any casing)       -> v1 Form (event, objectId, accountId, userId, projectId)
 * - XML and anything else                   -> 415 (nothing public documents Teamwork's XML)
 *
 * The event name comes from `X-Projects-Event`, else from the body's `event` (v1). What happens next:
 * - TASK.CREATED/UPDATED/COMPLETED/REOPENED/DELETED/MOVED/TAGGED/UNTAGGED: one event, `task:<id>`.
 * - Any other TASK.* name except TASK.REMINDER: one event too (a task changed; the handler fetches it).
 * - No event name at all but a task in the body: one event of type TASK.UNKNOWN (the handler fetches the
 *   task when it can, so the API decides what happened). Without a task: acknowledged, no events.
 * - TASK.REMINDER (not a data change) and every non-task event (COMMENT.*, PROJECT.*, ...): acknowledged
 *   with no events and a note.
 * - TASKLIST.DELETED and PROJECT.DELETED: acknowledged with no events. Teamwork may not send
 *   TASK.DELETED for the tasks inside (reference §1.2), and once the list is gone its tasks can no
 *   longer be listed by list; the backfill's `deletedAfter` pass is what marks them deleted.
 * A task event whose body has no usable task id is malformed (400), and so is a JSON body nested more
 * than MAX_JSON_DEPTH levels (json-depth.ts) or a form key nested more than MAX_FORM_DEPTH.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { ConnectorError } from '../../errors.ts';
import { withPayloadJson, type QueueEvent } from '../../model.ts';
import { jsonTooDeep, tooDeepMessage } from '../json-depth.ts';
import { hmacSha256Matches, missingSecret } from '../signature.ts';
import { checkVersion } from './map.ts';
import { header, type Delivery, type ParsedDelivery } from '../source.ts';
import { Id, canonicalId, keyToken, member, type WebhookEventPayload, type WebhookFormat } from './payloads.ts';

export const SIGNATURE_HEADER = 'x-projects-signature';
export const EVENT_HEADER = 'x-projects-event';

/** The task events we register hooks for and store (reference §1.2). */
export const TASK_WEBHOOK_EVENTS = [
  'TASK.CREATED',
  'TASK.UPDATED',
  'TASK.COMPLETED',
  'TASK.REOPENED',
  'TASK.DELETED',
  'TASK.MOVED',
  'TASK.TAGGED',
  'TASK.UNTAGGED',
] as const;
export type TaskWebhookEvent = (typeof TASK_WEBHOOK_EVENTS)[number];

/** The event type of a delivery that named no event but carried a task. */
export const UNNAMED_TASK_EVENT = 'TASK.UNKNOWN';

/** Task events that change nothing we store. */
const IGNORED_TASK_EVENTS = new Set(['TASK.REMINDER']);

/** Nesting deeper than this in a form key is refused (no Teamwork shape comes close). */
const MAX_FORM_DEPTH = 8;
/** Form keys that could reach an object's prototype; never followed. */
const UNSAFE_KEYS = new Set(['__proto__', 'prototype', 'constructor']);

/**
 * Throws CONN_ERR_WEBHOOK_SIGNATURE unless `X-Projects-Signature` is the HMAC-SHA256 of the raw body
 * under `token`. Without a token every delivery is refused, naming TEAMWORK_WEBHOOK_TOKEN, unless
 * `allowUnsigned` (WEBHOOKS_ALLOW_UNSIGNED) says to take them unchecked.
 */
export function verifyTeamworkSignature(delivery: Delivery, token: string | undefined, options: { allowUnsigned?: boolean } = {}): void {
  if (token === undefined || token === '') {
    if (options.allowUnsigned === true) return;
    throw missingSecret('TEAMWORK_WEBHOOK_TOKEN');
  }
  const given = header(delivery.headers, SIGNATURE_HEADER);
  if (given === undefined || given.trim() === '') {
    throw new ConnectorError('CONN_ERR_WEBHOOK_SIGNATURE', 'Missing X-Projects-Signature header (a webhook token is configured, so every delivery must be signed)', { status: 401 });
  }
  if (!hmacSha256Matches(token, delivery.rawBody, given)) {
    throw new ConnectorError('CONN_ERR_WEBHOOK_SIGNATURE', 'X-Projects-Signature does not match the body (wrong token, or the body was changed on the way)', { status: 401 });
  }
}

/** A delivery body, decoded. */
export interface DecodedBody {
  format: WebhookFormat;
  body: Record<string, unknown>;
  /** The body's JSON text, for a JSON body. */
  json?: string;
}

/** Reads the body by its content type. Throws MEDIA_TYPE (415) or MALFORMED (400). */
export function decodeBody(delivery: Delivery): DecodedBody {
  const contentType = (header(delivery.headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const isJson = contentType === 'application/json' || /^application\/[a-z0-9.+-]*\+json$/.test(contentType);
  const isForm = contentType === 'application/x-www-form-urlencoded';
  if (!isJson && !isForm) {
    if (contentType === '') throw mediaType('Missing Content-Type; Teamwork webhooks are application/json or application/x-www-form-urlencoded');
    if (contentType.endsWith('/xml') || contentType.endsWith('+xml')) {
      throw mediaType(`Content-Type ${contentType} is not supported: set the Teamwork webhook's content type to JSON or Form`);
    }
    throw mediaType(`Content-Type ${contentType} is not supported; expected application/json or application/x-www-form-urlencoded`);
  }
  if (delivery.rawBody.length === 0) throw malformed('Empty body');
  // isUtf8 (simdutf) then toString: several times cheaper than a fatal TextDecoder on every delivery.
  if (!isUtf8(delivery.rawBody)) throw malformed('Body is not valid UTF-8');
  const decoded = delivery.rawBody.toString('utf8');
  const text = decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded; // a byte-order mark, as TextDecoder drops it
  if (!/\S/.test(text)) throw malformed('Empty body');

  if (isJson) {
    // Before JSON.parse: a body nested thousands of levels deep parses, then breaks everything that
    // walks it (json-depth.ts). Form bodies are bounded by MAX_FORM_DEPTH in unflattenForm.
    if (jsonTooDeep(delivery.rawBody)) throw malformed(tooDeepMessage());
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw malformed(`Body is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw malformed(`Body must be a JSON object, got ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed}`);
    }
    return { format: 'v2-json', body: parsed as Record<string, unknown>, json: text };
  }

  const params = new URLSearchParams(text);
  const keys = [...params.keys()];
  if (keys.length === 0 || keys.every((k) => k === '')) throw malformed('Form body has no fields');
  const nested = keys.some((k) => k.includes('.') || k.includes('['));
  const body = unflattenForm(params);
  if (!nested && keys.some((k) => keyToken(k) === 'objectid')) return { format: 'v1-form', body };
  return { format: 'v2-form', body };
}

/**
 * A form's fields as a nested object: `Task.ID=1&Task.Tags.0.Name=x` -> `{ Task: { ID: '1', Tags:
 * [{ Name: 'x' }] } }`. Brackets work like dots (`Tags[0][Name]`, `Ids[]`); a repeated key becomes an
 * array; an object whose keys are all indexes becomes an array in index order. Key casing is kept (the
 * schemas match keys in any casing). Throws MALFORMED for a key nested too deeply or clashing with
 * another (`Task=1&Task.ID=2`).
 */
export function unflattenForm(params: URLSearchParams): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of params) {
    const segments = key.replace(/\[([^\]]*)\]/g, '.$1').split('.');
    if (segments.length > MAX_FORM_DEPTH) throw malformed(`Form key ${JSON.stringify(key.slice(0, 100))} is nested more than ${MAX_FORM_DEPTH} levels`);
    if (segments.some((s) => UNSAFE_KEYS.has(s))) continue;
    let node = root;
    for (let i = 0; i < segments.length; i++) {
      const last = i === segments.length - 1;
      let segment = segments[i] as string;
      if (segment === '') {
        if (i === 0) break;
        segment = String(Object.keys(node).length);
      }
      const existing = node[segment];
      if (last) {
        if (existing === undefined) node[segment] = value;
        else if (Array.isArray(existing)) existing.push(value);
        else if (typeof existing === 'string') node[segment] = [existing, value];
        else throw malformed(`Form key ${JSON.stringify(key.slice(0, 100))} clashes with a nested key`);
      } else {
        if (existing === undefined) node[segment] = {};
        else if (typeof existing !== 'object' || Array.isArray(existing)) throw malformed(`Form key ${JSON.stringify(key.slice(0, 100))} clashes with a plain field`);
        node = node[segment] as Record<string, unknown>;
      }
    }
  }
  return indexObjectsToArrays(root) as Record<string, unknown>;
}

function indexObjectsToArrays(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(indexObjectsToArrays);
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, indexObjectsToArrays(v)] as const);
  if (entries.length > 0 && entries.every(([k]) => /^\d+$/.test(k))) {
    return entries.sort((a, b) => Number(a[0]) - Number(b[0])).map(([, v]) => v);
  }
  return Object.fromEntries(entries);
}

/** The event name from `X-Projects-Event`, else the body's `event` (any key casing), upper-cased. */
export function eventNameOf(delivery: Delivery, body: Record<string, unknown>): string | undefined {
  const fromHeader = header(delivery.headers, EVENT_HEADER)?.trim();
  if (fromHeader) return fromHeader.toUpperCase().slice(0, 100);
  for (const [key, value] of Object.entries(body)) {
    if (keyToken(key) === 'event' && typeof value === 'string' && value.trim() !== '') return value.trim().toUpperCase().slice(0, 100);
  }
  return undefined;
}

export interface ParseOptions {
  /** Makes event ids; default crypto.randomUUID. */
  newId?: () => string;
}

/**
 * A verified delivery -> the events to enqueue (see the header comment for the rules). Throws
 * MEDIA_TYPE or MALFORMED; never enqueues anything for a body it refuses.
 */
export function parseTeamworkDelivery(delivery: Delivery, options: ParseOptions = {}): ParsedDelivery {
  const { format, body, json } = decodeBody(delivery);
  const eventName = eventNameOf(delivery, body);

  if (eventName !== undefined && !eventName.startsWith('TASK.')) {
    const note =
      eventName === 'TASKLIST.DELETED' || eventName === 'PROJECT.DELETED'
        ? `${eventName} acknowledged; the tasks inside are marked deleted by the next backfill (deletedAfter pass)`
        : `${eventName} is not a task event; acknowledged and ignored`;
    return { events: [], eventType: eventName, note };
  }
  if (eventName !== undefined && IGNORED_TASK_EVENTS.has(eventName)) {
    return { events: [], eventType: eventName, note: `${eventName} changes no task data; acknowledged and ignored` };
  }

  const taskId = taskIdOf(format, body, eventName);
  if (taskId === undefined) {
    // Only reachable without an event name: a body we cannot place (a test ping, a foreign sender).
    return { events: [], note: 'No event name (X-Projects-Event) and no task in the body; acknowledged and ignored' };
  }
  const type = eventName ?? UNNAMED_TASK_EVENT;
  const payload: WebhookEventPayload = { format, taskId, body };
  // The queue stores the body as it came (no second serialisation of a few kilobytes per delivery).
  if (json !== undefined) withPayloadJson(payload, `{"format":"${format}","taskId":"${taskId}","body":${json}}`);
  const event: QueueEvent = {
    id: (options.newId ?? randomUUID)(),
    source: 'teamwork',
    type,
    entityKey: `task:${taskId}`,
    origin: 'webhook',
    receivedAt: delivery.receivedAt,
    payload,
  };
  const result: ParsedDelivery = { events: [event], eventType: type };
  // A body without a version of its own (a v1 form of ids, an id-only deletion, a task without a
  // trustworthy dateUpdated) repeats byte for byte for a new change of the same task (updated twice,
  // deleted again after a restore): it is never taken for a repeat (the replay window). One with a
  // version is the same change when it is the same bytes.
  if (!carriesVersion(format, body, delivery.receivedAt)) result.replayWindowMs = 0;
  if (eventName === undefined) result.note = `No event name (X-Projects-Event); enqueued as ${UNNAMED_TASK_EVENT} for task ${taskId}`;
  return result;
}

/** Whether a body carries its task's version (a trustworthy `dateUpdated`, see checkVersion). */
function carriesVersion(format: WebhookFormat, body: Record<string, unknown>, receivedAt: Date): boolean {
  if (format === 'v1-form') return false;
  const task = member(body, 'task');
  if (typeof task !== 'object' || task === null) return false;
  return checkVersion(member(task as Record<string, unknown>, 'dateUpdated'), receivedAt).version !== null;
}

/**
 * The task id of a body: `objectId` (v1), else `task.id`, a top-level `id` or `objectId` (v2), keys in
 * any casing. Undefined when the body carries no task and no event was named. Only what routing needs
 * is checked here (the id, and that `task` is an object): a field we do not route by is the handler's
 * business, which validates the whole body and, with the API configured, reads the task from Teamwork
 * anyway. Refusing a delivery for the type of a field we would not use (Teamwork's types drift,
 * reference §6.11) would lose the event; accepting it loses nothing.
 */
function taskIdOf(format: WebhookFormat, body: Record<string, unknown>, eventName: string | undefined): string | undefined {
  const what = eventName ?? 'Teamwork';
  if (format === 'v1-form') {
    const id = member(body, 'objectId');
    if (id === undefined) throw malformed(`${what} form body: objectId: required`);
    return checkedId(id, `${what} form body: objectId`);
  }
  const task = member(body, 'task');
  let id: string | undefined;
  if (task !== undefined && task !== null && task !== '') {
    if (typeof task !== 'object' || Array.isArray(task)) throw malformed(`${what} body: task: expected an object, got ${Array.isArray(task) ? 'an array' : typeof task}`);
    const taskId = member(task as Record<string, unknown>, 'id');
    if (taskId === undefined) throw malformed(`${what} body: task.id: required`);
    id = checkedId(taskId, `${what} body: task.id`);
  } else {
    for (const name of ['id', 'objectId']) {
      const value = member(body, name);
      if (value !== undefined) {
        id = checkedId(value, `${what} body: ${name}`);
        break;
      }
    }
  }
  if (id === undefined) {
    if (eventName === undefined) return undefined;
    throw malformed(`${eventName} body has no task id (expected task.id, Task.ID, a top-level id or objectId)`);
  }
  if (id === '0') throw malformed(`${what} body has task id 0`);
  return id;
}

/** An id as text, leading zeros dropped; MALFORMED (naming `where`, never the value) unless it is a whole number. */
function checkedId(value: unknown, where: string): string {
  const id = Id.safeParse(value);
  if (!id.success) throw malformed(`${where}: expected a numeric id`);
  return canonicalId(id.data);
}

function malformed(message: string): ConnectorError {
  return new ConnectorError('CONN_ERR_WEBHOOK_MALFORMED', message, { status: 400 });
}

function mediaType(message: string): ConnectorError {
  return new ConnectorError('CONN_ERR_WEBHOOK_MEDIA_TYPE', message, { status: 415 });
}
