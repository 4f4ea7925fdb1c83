/**
 * Bad input at the source level, one test per failure mode: signature (missing, wrong, truncated,
 * case, prefix, tampered, re-serialised), media type, garbage, shape; and what good input becomes.
 * The server maps the thrown codes to 401/415/400; nothing is enqueued when anything throws.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConnectorError, type ErrorCode } from '../../../src/errors.ts';
import { Lifecycle } from '../../../src/lifecycle.ts';
import { FileQueue } from '../../../src/queue/file-queue.ts';
import { buildApp } from '../../../src/server/app.ts';
import { MAX_JSON_DEPTH } from '../../../src/sources/json-depth.ts';
import { createMissiveSource } from '../../../src/sources/missive/index.ts';
import { CONVERSATION_RULE_REPLAY_WINDOW_MS } from '../../../src/sources/missive/webhook.ts';
import type { Delivery } from '../../../src/sources/source.ts';
import { config, delivery, fixtureBytes, logSink } from './helpers.ts';

const SECRET = 'missive-rule-secret-0123456789';
const sign = (body: Buffer | string, secret = SECRET) => createHmac('sha256', secret).update(body).digest('hex');

function signedSource() {
  let n = 0;
  return createMissiveSource(config({ MISSIVE_WEBHOOK_SECRET: SECRET }), { log: logSink().log, newId: () => `evt-${++n}` });
}

/** Runs verify then parse, as the server does; returns the code thrown, or the parsed delivery. */
function receive(d: Delivery) {
  const source = signedSource();
  try {
    source.verify(d);
    return { parsed: source.parseWebhook(d) };
  } catch (err) {
    if (err instanceof ConnectorError) return { code: err.code as ErrorCode, status: err.status };
    throw err;
  }
}

const body = fixtureBytes('incoming-email.json');
const json = { 'content-type': 'application/json' };

describe('Missive webhook signature', () => {
  it('accepts sha256=<lower-case hex>', () => {
    const result = receive(delivery(body, { ...json, 'x-hook-signature': `sha256=${sign(body)}` }));
    expect(result.parsed?.events).toHaveLength(1);
  });

  it('accepts upper-case hex and an upper-case prefix', () => {
    const result = receive(delivery(body, { ...json, 'x-hook-signature': `SHA256=${sign(body).toUpperCase()}` }));
    expect(result.parsed?.events).toHaveLength(1);
  });

  it('accepts a bare hex digest (no prefix)', () => {
    const result = receive(delivery(body, { ...json, 'x-hook-signature': sign(body) }));
    expect(result.parsed?.events).toHaveLength(1);
  });

  it('rejects a missing signature (401)', () => {
    expect(receive(delivery(body, json))).toEqual({ code: 'CONN_ERR_WEBHOOK_SIGNATURE', status: 401 });
    expect(receive(delivery(body, { ...json, 'x-hook-signature': '' }))).toEqual({ code: 'CONN_ERR_WEBHOOK_SIGNATURE', status: 401 });
  });

  it('rejects a signature made with another secret', () => {
    const result = receive(delivery(body, { ...json, 'x-hook-signature': `sha256=${sign(body, 'another-secret')}` }));
    expect(result.code).toBe('CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('rejects a truncated signature', () => {
    const result = receive(delivery(body, { ...json, 'x-hook-signature': `sha256=${sign(body).slice(0, 63)}` }));
    expect(result.code).toBe('CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('rejects a signature with trailing junk or a different prefix', () => {
    expect(receive(delivery(body, { ...json, 'x-hook-signature': `sha256=${sign(body)}00` })).code).toBe('CONN_ERR_WEBHOOK_SIGNATURE');
    expect(receive(delivery(body, { ...json, 'x-hook-signature': `sha1=${sign(body)}` })).code).toBe('CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('rejects a tampered body (one byte changed)', () => {
    const tampered = Buffer.from(body);
    const at = tampered.indexOf('Invoice 42');
    tampered[at] = 'X'.charCodeAt(0);
    const result = receive(delivery(tampered, { ...json, 'x-hook-signature': `sha256=${sign(body)}` }));
    expect(result.code).toBe('CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('rejects the same JSON re-serialised (the signature covers the exact bytes)', () => {
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(body.toString('utf8'))));
    expect(reserialised.equals(body)).toBe(false);
    const result = receive(delivery(reserialised, { ...json, 'x-hook-signature': `sha256=${sign(body)}` }));
    expect(result.code).toBe('CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('refuses everything when no secret is configured, naming the setting; WEBHOOKS_ALLOW_UNSIGNED=true checks nothing (issue 15 item 3)', () => {
    const closed = createMissiveSource(config(), { log: logSink().log });
    const d = delivery(body, json);
    let thrown: unknown;
    try {
      closed.verify(d);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConnectorError);
    expect(thrown).toMatchObject({
      code: 'CONN_ERR_WEBHOOK_SIGNATURE',
      status: 401,
      message: 'no MISSIVE_WEBHOOK_SECRET is set: this endpoint refuses deliveries; set it (or WEBHOOKS_ALLOW_UNSIGNED=true to accept unsigned deliveries, not recommended)',
    });
    const source = createMissiveSource(config({ WEBHOOKS_ALLOW_UNSIGNED: 'true' }), { log: logSink().log });
    expect(source.acceptsUnsigned).toBe(true);
    expect(() => source.verify(d)).not.toThrow();
    expect(source.parseWebhook(d).events).toHaveLength(1);
  });
});

describe('Missive webhook parsing', () => {
  const signed = (b: Buffer | string, headers: Record<string, string> = json) => delivery(b, { ...headers, 'x-hook-signature': `sha256=${sign(b)}` });

  it('turns a delivery into one event keyed by its conversation', () => {
    const d = signed(body);
    const result = receive(d);
    expect(result.parsed).toEqual({
      eventType: 'incoming_email',
      events: [
        {
          id: 'evt-1',
          source: 'missive',
          type: 'incoming_email',
          entityKey: 'conversation:5bb24f9c-3b5f-4fbb-9bd3-2f0e2b2e8f11',
          origin: 'webhook',
          receivedAt: d.receivedAt,
          payload: JSON.parse(body.toString('utf8')),
        },
      ],
    });
  });

  it('a conversation-level delivery is a repeat within 15 minutes without the API, never with it; a message rule gets the whole window', () => {
    const labelChange = JSON.stringify({ rule: { id: 'r1', type: 'label_change' }, conversation: { id: 'c-1', shared_labels: [{ id: 'l1', name: 'A' }] } });
    const offline = createMissiveSource(config(), { log: logSink().log });
    const online = createMissiveSource(config({ MISSIVE_API_TOKEN: 'missive-token', MISSIVE_BASE_URL: 'http://127.0.0.1:9' }), { log: logSink().log });
    expect(offline.parseWebhook(delivery(labelChange)).replayWindowMs).toBe(CONVERSATION_RULE_REPLAY_WINDOW_MS);
    expect(online.parseWebhook(delivery(labelChange)).replayWindowMs).toBe(0);
    expect(offline.parseWebhook(delivery(body)).replayWindowMs).toBeUndefined();
    expect(online.parseWebhook(delivery(body)).replayWindowMs).toBeUndefined();
  });

  it('a blank rule type is an unknown one: the conversation is re-synced (found by the fuzz suite: it was a 503)', async () => {
    const blank = JSON.stringify({ rule: { id: 'r1', type: '  ' }, conversation: { id: 'c-blank' } });
    const parsed = createMissiveSource(config(), { log: logSink().log }).parseWebhook(delivery(blank));
    expect(parsed.events.map((e) => e.type)).toEqual(['unknown']);
    expect(parsed.eventType).toBe('unknown');
  });

  it('accepts application/json with a charset', () => {
    expect(receive(signed(body, { 'content-type': 'application/json; charset=utf-8' })).parsed?.events).toHaveLength(1);
  });

  it('rejects a wrong content type (415)', () => {
    expect(receive(signed(body, { 'content-type': 'text/plain' }))).toEqual({ code: 'CONN_ERR_WEBHOOK_MEDIA_TYPE', status: 415 });
    expect(receive(signed(body, { 'content-type': 'application/x-www-form-urlencoded' })).code).toBe('CONN_ERR_WEBHOOK_MEDIA_TYPE');
    expect(receive(signed(body, {})).code).toBe('CONN_ERR_WEBHOOK_MEDIA_TYPE');
  });

  it('rejects garbage bytes (400)', () => {
    const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x22, 0xc3, 0x28, 0x9f]);
    expect(receive(signed(garbage))).toEqual({ code: 'CONN_ERR_WEBHOOK_MALFORMED', status: 400 });
  });

  it('rejects truncated JSON, a JSON array and a JSON string (400)', () => {
    expect(receive(signed(body.subarray(0, body.length - 20))).code).toBe('CONN_ERR_WEBHOOK_MALFORMED');
    expect(receive(signed('[1,2,3]')).code).toBe('CONN_ERR_WEBHOOK_MALFORMED');
    expect(receive(signed('"conversation"')).code).toBe('CONN_ERR_WEBHOOK_MALFORMED');
  });

  it('accepts a conversation whose other fields have unexpected types (only the id routes it; the handler judges the rest)', () => {
    const result = receive(signed(JSON.stringify({ rule: { type: 'label_change' }, conversation: { id: 'conv-7', subject: { odd: true }, created_at: 'yesterday' } })));
    expect(result.parsed?.events[0]).toMatchObject({ type: 'label_change', entityKey: 'conversation:conv-7' });
  });

  it('rejects a conversation without an id (400)', () => {
    expect(receive(signed(JSON.stringify({ rule: { type: 'label_change' }, conversation: { subject: 'x' } }))).code).toBe('CONN_ERR_WEBHOOK_MALFORMED');
    expect(receive(signed(JSON.stringify({ rule: { type: 'label_change' }, conversation: 'abc' }))).code).toBe('CONN_ERR_WEBHOOK_MALFORMED');
  });

  it('acknowledges the validation request: no conversation -> no event, a note (200 at the server)', () => {
    const validation = fixtureBytes('validation-request.json');
    const result = receive(signed(validation));
    expect(result.parsed?.events).toEqual([]);
    expect(result.parsed?.note).toMatch(/validation request/);
    const empty = receive(signed('{}'));
    expect(empty.parsed?.events).toEqual([]);
    expect(empty.parsed?.note).toMatch(/validation request/);
  });

  it('acknowledges an empty body whatever its content type (an undocumented validation request)', () => {
    const result = receive(signed('', {}));
    expect(result.parsed).toEqual({ events: [], note: expect.stringMatching(/empty body/) });
  });

  it('enqueues an unknown rule type (re-sync) and says so in the note', () => {
    const raw = JSON.stringify({ rule: { id: 'r', type: 'conversation_snoozed_v2' }, conversation: { id: 'conv-9' } });
    const result = receive(signed(raw));
    expect(result.parsed?.events).toHaveLength(1);
    expect(result.parsed?.events[0]).toMatchObject({ type: 'conversation_snoozed_v2', entityKey: 'conversation:conv-9' });
    expect(result.parsed?.eventType).toBe('conversation_snoozed_v2');
    expect(result.parsed?.note).toMatch(/not one we know: the conversation will be re-synced/);
  });

  it('names the type "unknown" when the delivery has no rule', () => {
    const result = receive(signed(JSON.stringify({ conversation: { id: 'conv-10' } })));
    expect(result.parsed?.events[0]?.type).toBe('unknown');
  });

  it('accepts every fixture shape, with its rule type as the event type', () => {
    const expected: Record<string, string> = {
      'incoming-email.json': 'incoming_email',
      'outgoing-email.json': 'outgoing_email',
      'label-change.json': 'label_change',
      'new-comment.json': 'new_comment',
      'trashed.json': 'conversation_closed',
      'null-names.json': 'incoming_email',
    };
    for (const [name, type] of Object.entries(expected)) {
      const result = receive(signed(fixtureBytes(name)));
      expect(result.parsed?.events.map((e) => e.type), name).toEqual([type]);
      expect(result.parsed?.note, name).toBeUndefined();
    }
  });
});

/** A label_change delivery whose conversation carries `levels` nested objects (the body is levels + 2 deep). */
function nestedBody(levels: number, pretty = false): string {
  const nl = pretty ? '\n' : '';
  const deep = `${`{${nl} "a": `.repeat(levels - 1)}{}${`${nl}}`.repeat(levels - 1)}`;
  return `{${nl}"rule": {"type": "label_change"},${nl}"conversation": {${nl}"id": "conv-deep",${nl}"extra": ${deep}}}`;
}

describe('Missive webhook: nesting deeper than MAX_JSON_DEPTH is refused before parsing (issue 14)', () => {
  const signed = (b: string) => delivery(b, { ...json, 'x-hook-signature': `sha256=${sign(b)}` });

  it('refuses 4,200 levels, compact or pretty-printed, with 400 naming the depth', () => {
    for (const pretty of [false, true]) {
      const source = signedSource();
      const d = signed(nestedBody(4_200, pretty));
      let thrown: unknown;
      try {
        source.parseWebhook(d);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ConnectorError);
      expect(thrown).toMatchObject({ code: 'CONN_ERR_WEBHOOK_MALFORMED', status: 400 });
      expect((thrown as Error).message).toContain(`more than ${MAX_JSON_DEPTH} levels`);
    }
  });

  it('takes a body exactly MAX_JSON_DEPTH deep and refuses one level more', () => {
    expect(receive(signed(nestedBody(MAX_JSON_DEPTH - 2))).parsed?.events).toHaveLength(1);
    expect(receive(signed(nestedBody(MAX_JSON_DEPTH - 1))).code).toBe('CONN_ERR_WEBHOOK_MALFORMED');
  });

  it('counts no bracket inside a string (escaped quotes included)', () => {
    const b = JSON.stringify({ rule: { type: 'new_comment' }, conversation: { id: 'conv-s', subject: `\\"${'{['.repeat(3_000)}` } });
    expect(receive(signed(b)).parsed?.events[0]).toMatchObject({ entityKey: 'conversation:conv-s' });
  });

  it('the server answers 400, not 503, and queues nothing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-missive-door-'));
    const { log } = logSink('silent');
    const queue = await FileQueue.open({ dir, log });
    const app = await buildApp({ log, queue, sources: [signedSource()], lifecycle: new Lifecycle(), maxBodyBytes: 5 * 1024 * 1024 });
    try {
      for (const pretty of [true, false]) {
        const b = nestedBody(4_200, pretty);
        const answer = await app.inject({ method: 'POST', url: '/webhooks/missive', payload: b, headers: { ...json, 'x-hook-signature': `sha256=${sign(b)}` } });
        expect(answer.statusCode, pretty ? 'pretty-printed' : 'compact').toBe(400);
        expect(answer.json()).toMatchObject({ error: 'CONN_ERR_WEBHOOK_MALFORMED', message: expect.stringContaining(`${MAX_JSON_DEPTH} levels`) });
      }
      expect((await queue.stats()).pending).toBe(0);
    } finally {
      await app.close();
      await queue.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
