/**
 * Teamwork deliveries at the source level: `verify` and `parseWebhook` of the Source made by
 * createTeamworkSource, one test per failure mode, and every body format the reference documents.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config.ts';
import { Lifecycle } from '../../../src/lifecycle.ts';
import { createLogger } from '../../../src/log.ts';
import { FileQueue } from '../../../src/queue/file-queue.ts';
import { buildApp } from '../../../src/server/app.ts';
import { MAX_JSON_DEPTH } from '../../../src/sources/json-depth.ts';
import { QueueEvent, eventJson } from '../../../src/model.ts';
import { hmacSha256Hex } from '../../../src/sources/signature.ts';
import type { Source } from '../../../src/sources/source.ts';
import { createTeamworkSource } from '../../../src/sources/teamwork/index.ts';
import type { WebhookEventPayload } from '../../../src/sources/teamwork/payloads.ts';
import { FORM_TYPE, JSON_TYPE, delivery, fixtureBytes } from './fixtures.ts';

const TOKEN = 'a-teamwork-hook-token-5f3c';
const log = createLogger({ level: 'silent', console: false });

function source(env: Record<string, string> = {}) {
  return createTeamworkSource(parseConfig({ TEAMWORK_WEBHOOK_TOKEN: TOKEN, TEAMWORK_SITE: 'acme', ...env }), { log });
}

const created = fixtureBytes('v2-json-task-created.json');

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a throw').toBeDefined();
  expect(thrown).toMatchObject({ code });
  if (message) expect((thrown as Error).message).toMatch(message);
}

describe('verify (X-Projects-Signature)', () => {
  const src = source();

  it('accepts the lower-case hex HMAC-SHA256 of the raw body', () => {
    expect(() => src.verify(delivery({ body: created, token: TOKEN }))).not.toThrow();
  });

  it('accepts the same HMAC in upper-case hex', () => {
    const signature = hmacSha256Hex(TOKEN, created).toUpperCase();
    expect(() => src.verify(delivery({ body: created, signature }))).not.toThrow();
  });

  it('refuses a missing signature', () => {
    expectCode(() => src.verify(delivery({ body: created })), 'CONN_ERR_WEBHOOK_SIGNATURE', /Missing X-Projects-Signature/);
  });

  it('refuses an empty signature', () => {
    expectCode(() => src.verify(delivery({ body: created, signature: '' })), 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('refuses a signature made with another token', () => {
    expectCode(() => src.verify(delivery({ body: created, token: 'someone-else' })), 'CONN_ERR_WEBHOOK_SIGNATURE', /does not match/);
  });

  it('refuses a truncated signature', () => {
    const full = hmacSha256Hex(TOKEN, created);
    expectCode(() => src.verify(delivery({ body: created, signature: full.slice(0, 63) })), 'CONN_ERR_WEBHOOK_SIGNATURE');
    expectCode(() => src.verify(delivery({ body: created, signature: full.slice(0, 32) })), 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('refuses the right signature with a character too many or a digit that is not hex', () => {
    const full = hmacSha256Hex(TOKEN, created);
    expectCode(() => src.verify(delivery({ body: created, signature: `${full}0` })), 'CONN_ERR_WEBHOOK_SIGNATURE');
    expectCode(() => src.verify(delivery({ body: created, signature: `${full.slice(0, 63)}g` })), 'CONN_ERR_WEBHOOK_SIGNATURE');
    expectCode(() => src.verify(delivery({ body: created, signature: `g${full.slice(1)}` })), 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('refuses a prefixed signature (Teamwork sends bare hex)', () => {
    expectCode(() => src.verify(delivery({ body: created, signature: `sha256=${hmacSha256Hex(TOKEN, created)}` })), 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('refuses a tampered body', () => {
    const signature = hmacSha256Hex(TOKEN, created);
    const tampered = Buffer.from(created.toString('utf8').replace('"progress": 20', '"progress": 21'), 'utf8');
    expect(tampered.equals(created)).toBe(false);
    expectCode(() => src.verify(delivery({ body: tampered, signature })), 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('refuses re-serialised JSON (same data, other bytes)', () => {
    const signature = hmacSha256Hex(TOKEN, created);
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(created.toString('utf8'))), 'utf8');
    expect(JSON.parse(reserialised.toString('utf8'))).toEqual(JSON.parse(created.toString('utf8')));
    expectCode(() => src.verify(delivery({ body: reserialised, signature })), 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('verifies non-ASCII bodies over their bytes, and parse keeps the text', () => {
    const body = Buffer.from(JSON.stringify({ task: { id: 9, name: 'Überprüfung ✓ 日本' } }), 'utf8');
    const d = delivery({ body, token: TOKEN, event: 'TASK.UPDATED' });
    expect(() => src.verify(d)).not.toThrow();
    const payload = src.parseWebhook(d).events[0]?.payload as WebhookEventPayload;
    expect((payload.body.task as { name: string }).name).toBe('Überprüfung ✓ 日本');
  });

  it('refuses everything when no token is configured, naming the setting; WEBHOOKS_ALLOW_UNSIGNED=true takes it unchecked (issue 15 item 3)', () => {
    const closed = createTeamworkSource(parseConfig({}), { log });
    expect(closed.acceptsUnsigned).toBe(false);
    expectCode(() => closed.verify(delivery({ body: created })), 'CONN_ERR_WEBHOOK_SIGNATURE', /^no TEAMWORK_WEBHOOK_TOKEN is set: this endpoint refuses deliveries; set it \(or WEBHOOKS_ALLOW_UNSIGNED=true/);
    expectCode(() => closed.verify(delivery({ body: created, token: 'anything' })), 'CONN_ERR_WEBHOOK_SIGNATURE', /no TEAMWORK_WEBHOOK_TOKEN/);
    const open = createTeamworkSource(parseConfig({ WEBHOOKS_ALLOW_UNSIGNED: 'true' }), { log });
    expect(open.acceptsUnsigned).toBe(true);
    expect(() => open.verify(delivery({ body: created }))).not.toThrow();
    // The opt-out does not turn off a token that is set.
    const signed = source({ WEBHOOKS_ALLOW_UNSIGNED: 'true' });
    expect(signed.acceptsUnsigned).toBe(false);
    expectCode(() => signed.verify(delivery({ body: created })), 'CONN_ERR_WEBHOOK_SIGNATURE', /Missing X-Projects-Signature/);
  });
});

describe('parseWebhook: task events in every format', () => {
  const src = source();

  it('v2 JSON: one event with the header event name, task key, origin and the parsed body', () => {
    const d = delivery({ body: created, event: 'TASK.CREATED', receivedAt: new Date('2026-11-01T09:15:02Z') });
    const parsed = src.parseWebhook(d);
    expect(parsed.eventType).toBe('TASK.CREATED');
    expect(parsed.events).toHaveLength(1);
    const event = parsed.events[0] as QueueEvent;
    expect(QueueEvent.safeParse(event).success).toBe(true);
    expect(event).toMatchObject({ source: 'teamwork', type: 'TASK.CREATED', entityKey: 'task:2468013', origin: 'webhook', receivedAt: new Date('2026-11-01T09:15:02Z') });
    expect(event.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(event.payload).toEqual({ format: 'v2-json', taskId: '2468013', body: JSON.parse(created.toString('utf8')) });
    expect(src.parseWebhook(d).events[0]?.id).not.toBe(event.id);
  });

  it('upper-cases the event name and accepts a charset parameter', () => {
    const parsed = src.parseWebhook(delivery({ body: created, event: 'task.updated', contentType: 'application/json; charset=utf-8' }));
    expect(parsed.events[0]?.type).toBe('TASK.UPDATED');
  });

  it('v2 JSON TASK.DELETED with only { id, eventCreator }', () => {
    const parsed = src.parseWebhook(delivery({ body: fixtureBytes('v2-json-task-deleted.json'), event: 'TASK.DELETED' }));
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.DELETED', entityKey: 'task:2468013', payload: { format: 'v2-json', taskId: '2468013' } });
  });

  it('v2 Form (dotted PascalCase keys)', () => {
    const parsed = src.parseWebhook(delivery({ body: fixtureBytes('v2-form-task-updated.txt'), contentType: FORM_TYPE, event: 'TASK.UPDATED' }));
    const event = parsed.events[0] as QueueEvent;
    expect(event).toMatchObject({ type: 'TASK.UPDATED', entityKey: 'task:2468013' });
    const payload = event.payload as WebhookEventPayload;
    expect(payload.format).toBe('v2-form');
    expect((payload.body.Task as Record<string, unknown>).Name).toBe('Draft the Q4 board report');
    expect((payload.body.Project as Record<string, unknown>).Name).toBe('Board & Investors');
  });

  it('v2 Form TASK.DELETED with a top-level ID', () => {
    const parsed = src.parseWebhook(delivery({ body: fixtureBytes('v2-form-task-deleted.txt'), contentType: FORM_TYPE, event: 'TASK.DELETED' }));
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.DELETED', entityKey: 'task:2468013', payload: { format: 'v2-form', taskId: '2468013' } });
  });

  it('v1 Form: event name from the body when there is no header', () => {
    const parsed = src.parseWebhook(delivery({ body: fixtureBytes('v1-form-task-updated.txt'), contentType: FORM_TYPE }));
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.UPDATED', entityKey: 'task:2468013', payload: { format: 'v1-form', taskId: '2468013' } });
  });

  it('v1 Form: the header wins over the body', () => {
    const parsed = src.parseWebhook(delivery({ body: fixtureBytes('v1-form-task-updated.txt'), contentType: FORM_TYPE, event: 'TASK.MOVED' }));
    expect(parsed.events[0]?.type).toBe('TASK.MOVED');
  });

  it.each([
    ['camelCase', 'accountId=1&event=TASK.UPDATED&objectId=2468013&userId=5'],
    ['PascalCase (FAQ page)', 'AccountID=1&Event=TASK.UPDATED&ObjectID=2468013&UserId=5'],
    ['UPPER CASE', 'ACCOUNTID=1&EVENT=TASK.UPDATED&OBJECTID=2468013&USERID=5'],
    ['lower case', 'accountid=1&event=TASK.UPDATED&objectid=2468013&userid=5'],
    ['snake_case', 'account_id=1&event=TASK.UPDATED&object_id=2468013&user_id=5'],
    ['mixed, event lower-case', 'Accountid=1&EvEnT=task.updated&objectID=2468013'],
  ])('v1 Form in %s', (_name, body) => {
    const parsed = src.parseWebhook(delivery({ body, contentType: FORM_TYPE }));
    expect(parsed.events).toHaveLength(1);
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.UPDATED', entityKey: 'task:2468013', payload: { format: 'v1-form', taskId: '2468013' } });
  });

  it('v1 Form TASK.DELETED in PascalCase with ProjectID', () => {
    const parsed = src.parseWebhook(delivery({ body: fixtureBytes('v1-form-task-deleted.txt'), contentType: FORM_TYPE }));
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.DELETED', entityKey: 'task:2468013' });
  });

  it('a JSON body with a v1-style objectId', () => {
    const parsed = src.parseWebhook(delivery({ body: '{"event": "TASK.COMPLETED", "objectId": "2468013"}' }));
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.COMPLETED', entityKey: 'task:2468013', payload: { format: 'v2-json', taskId: '2468013' } });
  });

  it('a task body without an event name is enqueued as TASK.UNKNOWN', () => {
    const parsed = src.parseWebhook(delivery({ body: created }));
    expect(parsed.events[0]).toMatchObject({ type: 'TASK.UNKNOWN', entityKey: 'task:2468013' });
    expect(parsed.note).toMatch(/No event name/);
  });
});

describe('parseWebhook: acknowledged without events', () => {
  it('an unknown (non-task) event is acknowledged, noted and counted, not an error', () => {
    const src = source();
    const body = JSON.stringify({ comment: { id: 5, body: 'hi' }, eventCreator: { id: 1 } });
    const parsed = src.parseWebhook(delivery({ body, event: 'COMMENT.CREATED' }));
    expect(parsed).toMatchObject({ events: [], eventType: 'COMMENT.CREATED' });
    expect(parsed.note).toMatch(/not a task event/);
    src.parseWebhook(delivery({ body: '{}', event: 'MILESTONE.CREATED' }));
    src.parseWebhook(delivery({ body: '{}', event: 'MILESTONE.CREATED' }));
    expect(src.ignoredDeliveries()).toEqual({ 'COMMENT.CREATED': 1, 'MILESTONE.CREATED': 2 });
  });

  it('TASK.REMINDER changes nothing', () => {
    expect(source().parseWebhook(delivery({ body: created, event: 'TASK.REMINDER' }))).toMatchObject({ events: [], eventType: 'TASK.REMINDER' });
  });

  it('TASKLIST.DELETED and PROJECT.DELETED are left to the backfill', () => {
    for (const event of ['TASKLIST.DELETED', 'PROJECT.DELETED']) {
      const parsed = source().parseWebhook(delivery({ body: '{"id": 1518601}', event }));
      expect(parsed.events).toEqual([]);
      expect(parsed.note).toMatch(/backfill/);
    }
  });

  it('an unknown v1 form event', () => {
    const parsed = source().parseWebhook(delivery({ body: 'event=MILESTONE.CREATED&objectId=5', contentType: FORM_TYPE }));
    expect(parsed).toMatchObject({ events: [], eventType: 'MILESTONE.CREATED' });
  });

  it('a body with neither event name nor task', () => {
    const parsed = source().parseWebhook(delivery({ body: '{"ping": true}' }));
    expect(parsed.events).toEqual([]);
    expect(parsed.note).toMatch(/no task/);
  });
});

describe('parseWebhook: refused bodies (nothing enqueued)', () => {
  const src = source();
  const parse = (init: Parameters<typeof delivery>[0]) => () => src.parseWebhook(delivery(init));

  it.each([
    ['text/plain', 'text/plain'],
    ['XML', 'application/xml'],
    ['text/xml', 'text/xml; charset=utf-8'],
    ['multipart', 'multipart/form-data; boundary=x'],
  ])('wrong content type: %s -> 415', (_name, contentType) => {
    expectCode(parse({ body: created, contentType, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MEDIA_TYPE');
  });

  it('XML is refused with a hint to switch the hook to JSON or Form', () => {
    expectCode(parse({ body: '<task><id>1</id></task>', contentType: 'application/xml', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MEDIA_TYPE', /JSON or Form/);
  });

  it('no content type -> 415', () => {
    expectCode(parse({ body: created, contentType: null, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MEDIA_TYPE', /Missing Content-Type/);
  });

  it('garbage bytes -> 400', () => {
    const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x9c, 0x81, 0x7b, 0xc3, 0x28, 0xa0, 0xa1]);
    expectCode(parse({ body: garbage, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /UTF-8/);
    expectCode(parse({ body: garbage, contentType: FORM_TYPE, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /UTF-8/);
  });

  it('invalid JSON -> 400', () => {
    expectCode(parse({ body: '{"task": {"id": 1', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /not valid JSON/);
  });

  it('JSON that is not an object -> 400', () => {
    expectCode(parse({ body: '[1,2]', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /an array/);
    expectCode(parse({ body: 'null', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /null/);
    expectCode(parse({ body: '"TASK.UPDATED"', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /string/);
  });

  it('empty and blank bodies -> 400', () => {
    expectCode(parse({ body: '', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /Empty/);
    expectCode(parse({ body: ' \n ', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /Empty/);
    expectCode(parse({ body: '', contentType: FORM_TYPE, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED');
  });

  it('a task event without a task id -> 400', () => {
    expectCode(parse({ body: '{"eventCreator": {"id": 1}}', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /no task id/);
    expectCode(parse({ body: 'Foo=1&Bar.Baz=2', contentType: FORM_TYPE, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /no task id/);
  });

  it('a task id that is not a number -> 400, naming the field', () => {
    expectCode(parse({ body: '{"task": {"id": "abc"}}', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /task\.id/);
    expectCode(parse({ body: 'event=TASK.UPDATED&objectId=12x', contentType: FORM_TYPE }), 'CONN_ERR_WEBHOOK_MALFORMED', /objectId/);
    expectCode(parse({ body: '{"task": {"id": 0}}', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /id 0/);
  });

  it('a task that is not an object -> 400', () => {
    expectCode(parse({ body: '{"task": "2468013"}', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /task: expected an object/);
    expectCode(parse({ body: '{"task": [1]}', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /an array/);
    expectCode(parse({ body: '{"task": {"name": "no id"}}', event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /task\.id: required/);
  });

  it('form keys nested too deeply or clashing -> 400', () => {
    expectCode(parse({ body: 'Task.ID=1&A.B.C.D.E.F.G.H.I=1', contentType: FORM_TYPE, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /nested/);
    expectCode(parse({ body: 'Task=1&Task.ID=2', contentType: FORM_TYPE, event: 'TASK.UPDATED' }), 'CONN_ERR_WEBHOOK_MALFORMED', /clashes/);
  });

  it('form keys aimed at the prototype are ignored', () => {
    const parsed = src.parseWebhook(delivery({ body: '__proto__.polluted=yes&Task.constructor.x=1&Task.ID=5', contentType: FORM_TYPE, event: 'TASK.UPDATED' }));
    expect(parsed.events[0]?.entityKey).toBe('task:5');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('createTeamworkSource', () => {
  it('has no API and no backfill without a key; both with key and site', () => {
    const bare = source();
    expect(bare).toMatchObject({ name: 'teamwork', apiConfigured: false, client: null });
    expect(bare.backfill).toBeUndefined();
    const configured = source({ TEAMWORK_API_KEY: 'key' });
    expect(configured.apiConfigured).toBe(true);
    expect(configured.client?.baseUrl).toBe('https://acme.teamwork.com');
    expect(typeof configured.backfill).toBe('function');
    const noSite = createTeamworkSource(parseConfig({ TEAMWORK_API_KEY: 'key' }), { log });
    expect(noSite.apiConfigured).toBe(false);
  });

  it('uses the EU host for an EU site and TEAMWORK_BASE_URL when set', () => {
    expect(source({ TEAMWORK_API_KEY: 'k', TEAMWORK_SITE: 'acme.eu' }).client?.baseUrl).toBe('https://acme.eu.teamwork.com');
    expect(source({ TEAMWORK_API_KEY: 'k', TEAMWORK_BASE_URL: 'http://127.0.0.1:9/' }).client?.baseUrl).toBe('http://127.0.0.1:9');
  });

  it('accepts JSON content types with a +json suffix', () => {
    const parsed = source().parseWebhook(delivery({ body: created, contentType: 'application/vnd.teamwork+json', event: 'TASK.UPDATED' }));
    expect(parsed.events).toHaveLength(1);
    expect(JSON_TYPE).toBe('application/json');
  });
});

describe('parseWebhook: only what routing needs is checked at the door', () => {
  const src = source();

  it('a field of an unexpected type is accepted (the handler judges the body), and the body is queued byte for byte', () => {
    const body = '{"task": {"id": 1, "name": {"secret": "s3cr3t"}},  "eventCreator": {"id": 5}}';
    const parsed = src.parseWebhook(delivery({ body, event: 'TASK.UPDATED' }));
    expect(parsed.events).toHaveLength(1);
    const event = QueueEvent.parse(parsed.events[0]);
    expect(event).toMatchObject({ entityKey: 'task:1', type: 'TASK.UPDATED' });
    expect((event.payload as WebhookEventPayload).body).toEqual(JSON.parse(body));
    // What the queue writes: the payload's JSON is the delivery's own text, not a re-serialisation.
    expect(eventJson(event)).toContain(`"body":${body}}`);
    expect(JSON.parse(eventJson(event))).toEqual(JSON.parse(JSON.stringify(event)));
  });

  it('a body starting with a UTF-8 byte-order mark is read without it', () => {
    const parsed = src.parseWebhook(delivery({ body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"task": {"id": 9}}')]), event: 'TASK.UPDATED' }));
    expect(parsed.events[0]).toMatchObject({ entityKey: 'task:9' });
  });

  it('a JSON body with line breaks is queued re-serialised (one event per line)', () => {
    const body = '{\n  "task": {"id": 7}\r\n}';
    const event = QueueEvent.parse(src.parseWebhook(delivery({ body, event: 'TASK.UPDATED' })).events[0]);
    expect(eventJson(event)).not.toMatch(/[\n\r]/);
    expect(JSON.parse(eventJson(event))).toEqual(JSON.parse(JSON.stringify(event)));
  });
});

/** A task body whose `task.extra` nests `levels` more arrays (the whole body is levels + 2 deep). */
function nestedTaskBody(levels: number, pretty = false): string {
  if (!pretty) return `{"task":{"id":42,"name":"deep","extra":${'['.repeat(levels)}${']'.repeat(levels)}}}`;
  // Pretty-printed by hand (JSON.stringify itself cannot write thousands of levels); the indentation
  // stops growing at 8 levels so that the body stays small, as the attack's 12.6 KB did.
  const indent = (n: number) => '  '.repeat(Math.min(n, 8));
  const open = Array.from({ length: levels }, (_, i) => `[\n${indent(i + 3)}`).join('');
  const close = Array.from({ length: levels }, (_, i) => `\n${indent(levels - i + 1)}]`).join('');
  return `{\n  "task": {\n    "id": 42,\n    "name": "deep",\n    "extra": ${open}${close}\n  }\n}`;
}

describe('parseWebhook: nesting deeper than MAX_JSON_DEPTH is refused before parsing (issue 14)', () => {
  const src = source();

  it('refuses 4,200 levels compact and pretty-printed with 400, naming the depth', () => {
    for (const pretty of [false, true]) {
      expectCode(() => src.parseWebhook(delivery({ body: nestedTaskBody(4_200, pretty), event: 'TASK.UPDATED' })), 'CONN_ERR_WEBHOOK_MALFORMED', new RegExp(`more than ${MAX_JSON_DEPTH} levels`));
    }
  });

  it('takes a body exactly MAX_JSON_DEPTH deep and refuses one level more', () => {
    expect(src.parseWebhook(delivery({ body: nestedTaskBody(MAX_JSON_DEPTH - 2), event: 'TASK.UPDATED' })).events).toHaveLength(1);
    expect(src.parseWebhook(delivery({ body: nestedTaskBody(MAX_JSON_DEPTH - 2, true), event: 'TASK.UPDATED' })).events).toHaveLength(1);
    expectCode(() => src.parseWebhook(delivery({ body: nestedTaskBody(MAX_JSON_DEPTH - 1), event: 'TASK.UPDATED' })), 'CONN_ERR_WEBHOOK_MALFORMED', /levels/);
  });

  it('counts no bracket inside a string', () => {
    const body = JSON.stringify({ task: { id: 43, name: `${'['.repeat(5_000)}"{{{\\` } });
    expect(src.parseWebhook(delivery({ body, event: 'TASK.UPDATED' })).events[0]).toMatchObject({ entityKey: 'task:43' });
  });

  it('a deeply nested form key is refused too (400)', () => {
    const key = `Task${'[a]'.repeat(4_200)}`;
    expectCode(() => src.parseWebhook(delivery({ body: `Task.ID=5&${encodeURIComponent(key)}=1`, contentType: FORM_TYPE, event: 'TASK.UPDATED' })), 'CONN_ERR_WEBHOOK_MALFORMED', /nested more than/);
  });
});

describe('the server: a body we cannot accept is a 4xx, never a 503 (issue 14)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-tw-door-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function server() {
    const queue = await FileQueue.open({ dir: path.join(dir, `q-${Math.random().toString(36).slice(2)}`), log });
    const app = await buildApp({ log, queue, sources: [source()], lifecycle: new Lifecycle(), maxBodyBytes: 5 * 1024 * 1024 });
    return { app, queue, close: async () => (await app.close(), await queue.close()) };
  }

  const post = (app: Awaited<ReturnType<typeof server>>['app'], body: string, contentType = JSON_TYPE) =>
    app.inject({ method: 'POST', url: '/webhooks/teamwork', payload: body, headers: { 'content-type': contentType, 'x-projects-event': 'TASK.UPDATED', 'x-projects-signature': hmacSha256Hex(TOKEN, body) } });

  it('answers 400 to a signed body nested 4,200 levels, compact or pretty-printed, and queues nothing', async () => {
    const { app, queue, close } = await server();
    try {
      for (const pretty of [true, false]) {
        const answer = await post(app, nestedTaskBody(4_200, pretty));
        expect(answer.statusCode, pretty ? 'pretty-printed' : 'compact').toBe(400);
        expect(answer.json()).toMatchObject({ error: 'CONN_ERR_WEBHOOK_MALFORMED', message: expect.stringContaining(`${MAX_JSON_DEPTH} levels`) });
      }
      expect((await queue.stats()).pending).toBe(0);
      expect((await post(app, nestedTaskBody(10, true))).statusCode).toBe(200);
      expect((await queue.stats()).pending).toBe(1);
    } finally {
      await close();
    }
  });

  it('answers 400, not 503, when a source makes an event the queue cannot serialise (the body is the cause, storage is fine)', async () => {
    const queue = await FileQueue.open({ dir: path.join(dir, 'q-unserialisable'), log });
    const real = source();
    // A source bug stand-in: the event's payload is a cycle, which no JSON can hold.
    const buggy: Source = {
      ...real,
      name: real.name,
      verify: (d) => real.verify(d),
      handle: (e, c) => real.handle(e, c),
      parseWebhook: (d) => {
        const parsed = real.parseWebhook(d);
        const cycle: Record<string, unknown> = {};
        cycle.self = cycle;
        return { ...parsed, events: parsed.events.map((e) => ({ ...e, payload: cycle })) };
      },
    };
    const app = await buildApp({ log, queue, sources: [buggy], lifecycle: new Lifecycle(), maxBodyBytes: 1024 * 1024 });
    try {
      const answer = await post(app, nestedTaskBody(3));
      expect(answer.statusCode).toBe(400);
      expect(answer.json()).toMatchObject({ error: 'CONN_ERR_EVENT_INVALID' });
      expect((await queue.stats()).pending).toBe(0);
    } finally {
      await app.close();
      await queue.close();
    }
  });

  it('answers 400 when a source throws something unexpected on a body (parsing is pure: the same body would fail the same way)', async () => {
    const queue = await FileQueue.open({ dir: path.join(dir, 'q-throwing'), log });
    const real = source();
    const buggy: Source = { ...real, name: real.name, verify: (d) => real.verify(d), handle: (e, c) => real.handle(e, c), parseWebhook: () => { throw new RangeError('Maximum call stack size exceeded'); } };
    const app = await buildApp({ log, queue, sources: [buggy], lifecycle: new Lifecycle(), maxBodyBytes: 1024 * 1024 });
    try {
      const answer = await post(app, nestedTaskBody(3));
      expect(answer.statusCode).toBe(400);
      expect(answer.json()).toMatchObject({ error: 'CONN_ERR_WEBHOOK_MALFORMED' });
      // ...but a failed system call is the machine, not the body: the vendor should try again.
      const ioError = Object.assign(new Error('EMFILE: too many open files, open'), { code: 'EMFILE', syscall: 'open' });
      const io: Source = { ...buggy, name: real.name, verify: (d) => real.verify(d), handle: (e, c) => real.handle(e, c), parseWebhook: () => { throw ioError; } };
      const ioApp = await buildApp({ log, queue, sources: [io], lifecycle: new Lifecycle(), maxBodyBytes: 1024 * 1024 });
      expect((await post(ioApp, nestedTaskBody(3))).statusCode).toBe(503);
      await ioApp.close();
    } finally {
      await app.close();
      await queue.close();
    }
  });
});
