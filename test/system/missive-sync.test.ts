/**
 * Issue 6, proved through the real connector: `startConnector` on SQLite with MISSIVE_BASE_URL /
 * MISSIVE_API_TOKEN / MISSIVE_WEBHOOK_SECRET pointed at the Missive simulator, whose rules deliver real
 * signed webhooks over HTTP, and with attachment storage on.
 *
 * - Incoming and outgoing emails become rows with bodies, addresses and attachment rows; attachment
 *   files land under ATTACHMENTS_DIR with their sha256, a hostile file name is stored safely, an
 *   oversized attachment keeps its metadata only.
 * - A label change updates every email of the conversation; a comment re-syncs it; trash and restore
 *   (Missive sends no webhook for either) round-trip through reconciliation.
 * - Bad input through the running server: each refusal has its status and enqueues nothing; the rule
 *   validation request is answered 200.
 */
import { createHash, createHmac } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileBytes } from '../../simulators/generator/text.ts';
import { startMissiveSimulator, type MissiveSimulator } from '../../simulators/missive/index.ts';
import { removeTempDirs, startSystem, tempDir, waitFor, type System } from './harness.ts';
import { comparableEmail, emailMatches, expectedEmail } from './missive-expect.ts';

const SECRET = 'system-missive-secret-c41b';
/** Attachments above this are kept as metadata only. */
const MAX_ATTACHMENT = 4096;

let sim: MissiveSimulator;
let sys: System;
let filesDir: string;

beforeAll(async () => {
  sim = await startMissiveSimulator({ seed: 'system-missive', data: { conversations: 6 }, webhookRetryDelaysMs: [] });
  filesDir = path.join(tempDir('conn-sys-files'), 'attachments');
  sys = await startSystem({
    env: {
      MISSIVE_BASE_URL: sim.credentials.baseUrl,
      MISSIVE_API_TOKEN: sim.credentials.token,
      MISSIVE_WEBHOOK_SECRET: SECRET,
      ATTACHMENTS_STORE: 'true',
      ATTACHMENTS_DIR: filesDir,
      ATTACHMENTS_MAX_BYTES: String(MAX_ATTACHMENT),
      // The simulator serves attachments on 127.0.0.1 over http, which only the allow-list permits.
      ATTACHMENTS_ALLOWED_HOSTS: new URL(sim.credentials.baseUrl).host,
      WEBHOOK_MAX_BODY_BYTES: '4096',
    },
  });
  // Saving each rule sends Missive's validation request first; createRule throws unless it got a 2xx.
  const rules = await sim.createAllRules(`${sys.url}/webhooks/missive`, SECRET);
  expect(rules.length).toBeGreaterThanOrEqual(8);
});

afterAll(async () => {
  await sys?.stop();
  await sim?.stop();
  removeTempDirs();
});

/** Waits until the stored email equals the simulator's message and conversation. */
async function expectStored(messageId: string, timeoutMs = 15_000): Promise<void> {
  try {
    await waitFor(`email ${messageId} to match the simulator`, async () => emailMatches(sim, await sys.db.getEmail(messageId), messageId), timeoutMs);
  } catch (err) {
    const row = await sys.db.getEmail(messageId);
    expect(row === null ? null : comparableEmail(row), (err as Error).message).toEqual(expectedEmail(sim, messageId));
  }
}

/** One row of a table, read straight from the SQLite file (column names as docs/schema.md). */
function sqlRows(sql: string, ...params: unknown[]): Array<Record<string, unknown>> {
  const db = new BetterSqlite3(sys.config.sqlitePath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as Array<Record<string, unknown>>;
  } finally {
    db.close();
  }
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(dir, f)).filter((f) => statSync(f).isFile());
}

describe('Missive emails through the connector', () => {
  let conversationId: string;
  let incomingId: string;
  let outgoingId: string;

  it('an incoming email with non-ASCII attachment names becomes an email row, attachment rows and stored files', async () => {
    const { message, conversation } = await sim.receiveEmail({
      subject: 'Rechnung Nr. 5 – 請求書 ✅',
      from: { name: 'Müller, Jürgen', address: 'j.mueller@firma.example' },
      cc: [{ name: 'Ελένη', address: 'eleni@example.gr' }],
      html: '<p>Guten Tag,</p><p>anbei die <b>Rechnung</b> für März – 请查收.</p>',
      attachments: [
        { filename: 'Übersicht März 2026.pdf', extension: 'pdf', mediaType: 'application', subType: 'pdf', size: 1500 },
        { filename: '写真 – façade.png', extension: 'png', mediaType: 'image', subType: 'png', size: 900 },
      ],
    });
    conversationId = conversation.id;
    incomingId = message.id;
    await expectStored(message.id);

    const [row] = sqlRows('SELECT * FROM emails WHERE id = ?', message.id);
    expect(row).toMatchObject({ conversation_id: conversation.id, subject: 'Rechnung Nr. 5 – 請求書 ✅', from_name: 'Müller, Jürgen', from_address: 'j.mueller@firma.example', deleted: 0 });
    expect(row!.body_html).toBe('<p>Guten Tag,</p><p>anbei die <b>Rechnung</b> für März – 请查收.</p>');
    expect(row!.body_text).toContain('anbei die Rechnung für März – 请查收.');
    expect(JSON.parse(row!.cc as string)).toEqual([{ name: 'Ελένη', address: 'eleni@example.gr' }]);

    const attachments = sqlRows('SELECT * FROM attachments WHERE email_id = ? ORDER BY size DESC', message.id);
    expect(attachments.map((a) => [a.id, a.filename, a.media_type, a.size])).toEqual(message.attachments.map((a) => [a.id, a.filename, `${a.mediaType}/${a.subType}`, a.size]));
    for (const a of attachments) {
      const stored = a.stored_path as string;
      expect(path.resolve(stored).startsWith(path.resolve(filesDir) + path.sep)).toBe(true);
      const expected = fileBytes(a.id as string, a.size as number);
      expect(readFileSync(stored).equals(expected)).toBe(true);
      expect(a.sha256).toBe(sha256(expected));
      expect(path.basename(stored)).toBe(`${a.id as string}-${a.filename as string}`);
    }
  });

  it('an outgoing reply becomes its own row in the same conversation', async () => {
    const { message } = await sim.sendEmail({ conversationId, html: '<p>Danke, erhalten.</p>' });
    outgoingId = message.id;
    await expectStored(message.id);
    const stored = await sys.db.getEmail(message.id);
    const me = sim.data().users.find((u) => u.id === sim.credentials.userId)!;
    expect(stored).toMatchObject({ conversationId, fromAddress: me.email, to: [{ address: 'j.mueller@firma.example' }], inReplyTo: [(await sys.db.getEmail(incomingId))!.messageIdHeader] });
  });

  it('a label change updates the labels of every email of the conversation, both ways', async () => {
    const [first, second] = sim.data().labels;
    await sim.addLabel(conversationId, first!.id);
    await sim.addLabel(conversationId, second!.id);
    for (const id of [incomingId, outgoingId]) await expectStored(id);
    expect((await sys.db.getEmail(incomingId))?.labels).toEqual([first!.name, second!.name]);
    expect((await sys.db.getEmail(outgoingId))?.labels).toEqual([first!.name, second!.name]);

    await sim.removeLabel(conversationId, first!.id);
    for (const id of [incomingId, outgoingId]) await expectStored(id);
    expect((await sys.db.getEmail(outgoingId))?.labels).toEqual([second!.name]);
  });

  it('a comment re-syncs the conversation (every email written again, nothing lost)', async () => {
    const before = await Promise.all([incomingId, outgoingId].map((id) => sys.db.getEmail(id)));
    const appended = sys.counters.appendedEvents;
    const at = Date.now();
    await sim.addComment(conversationId, { body: 'Bitte bis Freitag prüfen ✅' });
    expect(sim.deliveries.at(-1)).toMatchObject({ event: 'new_comment', outcome: 'sent', status: 200 });
    expect(sys.counters.appendedEvents).toBe(appended + 1);
    const stats = await sys.waitIdle();
    expect(stats.deadLettered).toBe(0);
    for (const [i, id] of [incomingId, outgoingId].entries()) {
      const row = await sys.db.getEmail(id);
      expect(row!.updatedAt!.getTime()).toBeGreaterThanOrEqual(Math.floor(at / 1000) * 1000);
      expect(row!.updatedAt!.getTime()).toBeGreaterThan(before[i]!.updatedAt!.getTime());
      await expectStored(id);
    }
  });

  it('trash marks every email of the conversation deleted, restore clears it (no webhook: reconciliation)', async () => {
    await sim.trashConversation(conversationId);
    await sys.connector.reconcile();
    await waitFor('emails to be marked deleted', async () => (await Promise.all([incomingId, outgoingId].map((id) => sys.db.getEmail(id)))).every((e) => e?.deleted === true));
    for (const id of [incomingId, outgoingId]) await expectStored(id);
    const trashed = await sys.db.getEmail(incomingId);
    expect(trashed?.deletedAt).toEqual(trashed?.updatedAt);
    expect(sqlRows('SELECT deleted FROM emails WHERE conversation_id = ?', conversationId)).toEqual([{ deleted: 1 }, { deleted: 1 }]);

    await sim.restoreConversation(conversationId);
    await sys.connector.reconcile();
    await waitFor('emails to be restored', async () => (await Promise.all([incomingId, outgoingId].map((id) => sys.db.getEmail(id)))).every((e) => e?.deleted === false));
    for (const id of [incomingId, outgoingId]) await expectStored(id);
    expect((await sys.db.getEmail(incomingId))?.deletedAt).toBeNull();
  });

  it('a conversation trashed while inactive is marked deleted by the next routine reconciliation, and restored by the one after its restore', async () => {
    // Trash does not move last_activity_at: the conversation stays far behind the checkpoint, where a
    // walk that stops at `since` never looks (issue 14, item 10).
    const now = Date.now() / 1000;
    const old = sim
      .data()
      .conversations.find((c) => !c.guest && c.messageIds.length > 0 && c.lastActivityAt < now - 2 * 24 * 3600 && Object.values(c.flags).every((f) => !f.trashed && !f.junked));
    if (old === undefined) throw new Error('the simulator has no inactive conversation');
    const rows = async () => Promise.all(old.messageIds.map((id) => sys.db.getEmail(id)));
    // Its rows exist: a label change (which does not move last_activity_at either) re-syncs it.
    await sim.addLabel(old.id, sim.data().labels[0]!.id);
    await waitFor('the inactive conversation\'s rows', async () => (await rows()).every((e) => e?.deleted === false));
    await sys.connector.reconcile(); // a routine run, as the worker makes every BACKFILL_INTERVAL_MINUTES

    await sim.trashConversation(old.id);
    expect(sim.conversation(old.id)!.lastActivityAt).toBe(old.lastActivityAt);
    await sys.connector.reconcile();
    await waitFor('the inactive conversation\'s rows to be marked deleted', async () => (await rows()).every((e) => e?.deleted === true));
    for (const id of old.messageIds) await expectStored(id);

    await sim.restoreConversation(old.id);
    await sys.connector.reconcile();
    await waitFor('the inactive conversation\'s rows to be restored', async () => (await rows()).every((e) => e?.deleted === false));
    expect(sqlRows('SELECT DISTINCT deleted FROM emails WHERE conversation_id = ?', old.id)).toEqual([{ deleted: 0 }]);
  });

  it('a path-traversal attachment name is stored inside its email folder, under a safe name', async () => {
    const outside = path.dirname(filesDir);
    const { message } = await sim.receiveEmail({
      attachments: [
        { filename: '../../../passwd', extension: '', mediaType: 'text', subType: 'plain', size: 200 },
        { filename: '..\\..\\win.ini', extension: 'ini', mediaType: 'text', subType: 'plain', size: 120 },
      ],
    });
    await expectStored(message.id);
    const rows = sqlRows('SELECT * FROM attachments WHERE email_id = ? ORDER BY size DESC', message.id);
    expect(rows.map((r) => r.filename)).toEqual(['../../../passwd', '..\\..\\win.ini']);
    expect(rows.map((r) => path.basename(r.stored_path as string))).toEqual([`${rows[0]!.id as string}-passwd`, `${rows[1]!.id as string}-win.ini`]);
    for (const r of rows) {
      expect(path.dirname(r.stored_path as string)).toBe(path.join(path.resolve(filesDir), message.id));
      expect(r.sha256).toBe(sha256(fileBytes(r.id as string, r.size as number)));
    }
    // Nothing escaped the attachments folder.
    expect(filesUnder(outside).filter((f) => !f.startsWith(path.resolve(filesDir) + path.sep))).toEqual([]);
  });

  it('an attachment over ATTACHMENTS_MAX_BYTES keeps its metadata only; the email and the small file are stored', async () => {
    const { message } = await sim.receiveEmail({
      attachments: [
        { filename: 'Großes Archiv.zip', extension: 'zip', mediaType: 'application', subType: 'zip', size: MAX_ATTACHMENT + 1 },
        { filename: 'klein.txt', extension: 'txt', mediaType: 'text', subType: 'plain', size: 10 },
      ],
    });
    await expectStored(message.id);
    const rows = sqlRows('SELECT * FROM attachments WHERE email_id = ? ORDER BY size DESC', message.id);
    expect(rows[0]).toMatchObject({ filename: 'Großes Archiv.zip', media_type: 'application/zip', size: MAX_ATTACHMENT + 1, stored_path: null, sha256: null });
    expect(rows[1]).toMatchObject({ filename: 'klein.txt', sha256: sha256(fileBytes(rows[1]!.id as string, 10)) });
    expect(filesUnder(path.join(filesDir, message.id)).map((f) => path.basename(f))).toEqual([`${rows[1]!.id as string}-klein.txt`]);
    expect((await sys.stats()).deadLettered).toBe(0);
  });
});

describe('Missive bad input through the running server', () => {
  let body: string;
  let headers: Record<string, string>;

  beforeAll(async () => {
    // A real delivery, as the simulator signed and sent it.
    const { message } = await sim.receiveEmail({ html: '<p>short</p>' });
    await expectStored(message.id);
    const delivery = sim.deliveries.at(-1)!;
    body = delivery.body;
    headers = { 'content-type': 'application/json', 'x-hook-signature': delivery.headers['x-hook-signature']! };
    expect(headers['x-hook-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(Buffer.byteLength(body)).toBeLessThan(4096);
    await sys.waitIdle();
  });

  const sign = (text: string | Buffer, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(text).digest('hex')}`;
  const post = (payload: string | Buffer, h: Record<string, string>) => fetch(`${sys.url}/webhooks/missive`, { method: 'POST', headers: h, body: payload });

  async function refused(payload: string | Buffer, h: Record<string, string>, status: number, code: string): Promise<void> {
    const before = await sys.stats();
    const appended = sys.counters.appendedEvents;
    const rejected = sys.counters['delivery:rejected'];
    const response = await post(payload, h);
    expect(response.status).toBe(status);
    expect(await response.json()).toMatchObject({ error: code });
    expect(sys.counters.appendedEvents).toBe(appended);
    expect(sys.counters['delivery:rejected'], 'a delivery:rejected lifecycle event (what /metrics counts) for this refusal').toBe(rejected + 1);
    expect(await sys.stats()).toEqual(before);
  }

  it('missing, wrong and truncated signatures: 401, nothing enqueued', async () => {
    await refused(body, { 'content-type': 'application/json' }, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
    await refused(body, { ...headers, 'x-hook-signature': sign(body, 'another-secret') }, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
    await refused(body, { ...headers, 'x-hook-signature': headers['x-hook-signature']!.slice(0, 40) }, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('tampered and re-serialised bodies with the original signature: 401, nothing enqueued', async () => {
    await refused(body.replace('short', 'sh0rt'), headers, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
    await refused(JSON.stringify(JSON.parse(body), null, 2), headers, 401, 'CONN_ERR_WEBHOOK_SIGNATURE');
  });

  it('wrong content type: 415, nothing enqueued', async () => {
    await refused(body, { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, 415, 'CONN_ERR_WEBHOOK_MEDIA_TYPE');
    await refused(body, { ...headers, 'content-type': 'text/plain' }, 415, 'CONN_ERR_WEBHOOK_MEDIA_TYPE');
  });

  it('a body over WEBHOOK_MAX_BODY_BYTES: 413, nothing enqueued', async () => {
    const big = JSON.stringify({ ...JSON.parse(body), padding: 'x'.repeat(5000) });
    await refused(big, { ...headers, 'x-hook-signature': sign(big) }, 413, 'CONN_ERR_WEBHOOK_TOO_LARGE');
  });

  it('garbage bytes, correctly signed: 400, nothing enqueued', async () => {
    const garbage = Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0x00, 0xc3, 0x28]);
    await refused(garbage, { ...headers, 'x-hook-signature': sign(garbage) }, 400, 'CONN_ERR_WEBHOOK_MALFORMED');
    const array = '[1, 2, 3]';
    await refused(array, { ...headers, 'x-hook-signature': sign(array) }, 400, 'CONN_ERR_WEBHOOK_MALFORMED');
    const noId = JSON.stringify({ rule: { type: 'incoming_email' }, conversation: { subject: 'no id' } });
    await refused(noId, { ...headers, 'x-hook-signature': sign(noId) }, 400, 'CONN_ERR_WEBHOOK_MALFORMED');
  });

  it('an upper-case signature passes and is enqueued', async () => {
    const appended = sys.counters.appendedEvents;
    // Other bytes than the delivery the simulator sent (the same bytes again are a replay, answered without enqueueing).
    const fresh = `${body}\n`;
    const upper = `SHA256=${sign(fresh).slice('sha256='.length).toUpperCase()}`;
    const response = await post(fresh, { ...headers, 'x-hook-signature': upper });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true, events: 1 });
    expect(sys.counters.appendedEvents).toBe(appended + 1);
    expect((await sys.waitIdle()).deadLettered).toBe(0);
  });

  it('the rule validation request (no conversation) is answered 200 and enqueues nothing', async () => {
    const validation = JSON.stringify({ rule: { id: 'rule-new', description: 'Webhook incoming_email', type: 'incoming_email' } });
    const appended = sys.counters.appendedEvents;
    const response = await post(validation, { ...headers, 'x-hook-signature': sign(validation) });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ ok: true, events: 0 });
    expect(sys.counters.appendedEvents).toBe(appended);
  });
});
