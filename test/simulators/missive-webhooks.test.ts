/**
 * Contract tests of the Missive simulator's rule deliveries against reference/missive.md: the
 * validation request, the body of every rule type, `message` vs `latest_message`, comments, trash and
 * restore, and `X-Hook-Signature: sha256=<hex>` checked with an independent HMAC over the raw bytes.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startMissiveSimulator, type MissiveSimulator } from '../../simulators/missive/index.ts';
import { RULE_TYPES, type MvConversation } from '../../simulators/missive/model.ts';
import { startReceiver, type Json, type Receiver } from './common-receiver.ts';

const SECRET = 'missive-secret-ß';
const sign = (raw: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(Buffer.from(raw, 'utf8')).digest('hex')}`;

let sim: MissiveSimulator;
let receiver: Receiver;

beforeEach(async () => {
  sim = await startMissiveSimulator({ seed: 4, webhookRetryDelaysMs: [], limits: { concurrency: 50, perMinute: 1e6, perQuarterHour: 1e6 } });
  receiver = await startReceiver();
});
afterEach(async () => {
  await sim.stop();
  await receiver.close();
});

const deliveries = () => receiver.received.filter((r) => JSON.parse(r.raw).conversation !== undefined);
const someConversation = () => sim.data().conversations.find((c) => !c.guest && c.messageIds.length > 1) as MvConversation;

describe('rules', () => {
  it('sends a signed validation request without a conversation when a rule is saved', async () => {
    const rule = await sim.createRule({ type: 'label_change', url: `${receiver.url}/m`, secret: SECRET, description: 'Sync labels' });
    expect(receiver.received).toHaveLength(1);
    const validation = receiver.received[0];
    expect(validation?.headers['content-type']).toBe('application/json');
    expect(validation?.headers['x-hook-signature']).toBe(sign(validation?.raw ?? ''));
    expect(JSON.parse(validation?.raw ?? '')).toEqual({ rule: { id: rule.id, description: 'Sync labels', type: 'label_change' } });
  });

  it('refuses to save a rule whose URL does not answer 2xx', async () => {
    receiver.status = 500;
    await expect(sim.createRule({ type: 'incoming_email', url: `${receiver.url}/m`, secret: SECRET })).rejects.toThrow(/validation/);
    expect(sim.listRules()).toHaveLength(0);
  });
});

describe('deliveries', () => {
  it('sends each rule type with rule, conversation and the right message key, signed over the raw body', async () => {
    await sim.createAllRules(`${receiver.url}/m`, SECRET);
    const conversation = someConversation();
    const data = sim.data();
    const label = data.labels.find((l) => !conversation.labelIds.includes(l.id)) as { id: string; name: string };
    const other = data.users[1] as { id: string };
    const team = data.teams.find((t) => t.id !== conversation.teamId) as { id: string };

    const incoming = await sim.receiveEmail({ conversationId: conversation.id, attachments: 1, cc: [{ name: null, address: 'cc@example.com' }] });
    await sim.sendEmail({ conversationId: conversation.id });
    await sim.addLabel(conversation.id, label.id);
    const { comment } = await sim.addComment(conversation.id, { body: 'Bitte prüfen <b>&</b>', authorId: other.id });
    if (Object.values(sim.conversation(conversation.id)?.flags ?? {}).some((f) => f.closed)) await sim.reopenConversation(conversation.id);
    await sim.closeConversation(conversation.id);
    await sim.reopenConversation(conversation.id);
    await sim.assign(conversation.id, [other.id]);
    await sim.setTeam(conversation.id, team.id);

    const got = deliveries();
    const types = got.map((r) => JSON.parse(r.raw).rule.type);
    expect(types.filter((t) => t !== 'conversation_reopened')).toEqual(
      ['incoming_email', 'outgoing_email', 'label_change', 'new_comment', 'conversation_closed', 'conversation_assignee_change', 'team_change'],
    );
    expect(types).toContain('conversation_reopened');
    for (const r of got) {
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['x-hook-signature']).toBe(sign(r.raw));
      const body = JSON.parse(r.raw);
      expect(Object.keys(body.rule).sort()).toEqual(['description', 'id', 'type']);
      expect(body.conversation.id).toBe(conversation.id);
      expect(body.conversation.users.length).toBeGreaterThan(0);
      for (const u of body.conversation.users) {
        for (const flag of ['unassigned', 'closed', 'archived', 'trashed', 'junked', 'assigned', 'flagged', 'snoozed']) expect(typeof u[flag]).toBe('boolean');
      }
      const email = body.rule.type === 'incoming_email' || body.rule.type === 'outgoing_email';
      expect('message' in body).toBe(email);
      expect('latest_message' in body).toBe(!email);
    }
    const [inBody, outBody, labelBody, commentBody, closedBody] = got.map((r) => JSON.parse(r.raw));
    expect(inBody.message).toMatchObject({
      id: incoming.message.id,
      type: 'email',
      delivered_at: incoming.message.deliveredAt,
      email_message_id: expect.stringMatching(/^<.+@.+>$/),
      cc_fields: [{ name: null, address: 'cc@example.com' }],
    });
    expect(inBody.message.in_reply_to).toHaveLength(1);
    expect(inBody.message.references.at(-1)).toBe(inBody.message.in_reply_to[0]);
    expect(inBody.message.body).toBeUndefined();
    expect(Number.isInteger(inBody.message.delivered_at)).toBe(true);
    expect(outBody.message.author).toMatchObject({ id: sim.credentials.userId });
    expect(labelBody.conversation.shared_labels).toContainEqual({ id: label.id, name: label.name });
    expect(labelBody.latest_message.id).toBe(sim.conversation(conversation.id)?.messageIds.at(-1));
    expect(commentBody.comment).toMatchObject({ id: comment.id, body: 'Bitte prüfen <b>&</b>', created_at: expect.any(Number), author: { id: other.id } });
    expect(closedBody.conversation.users.every((u: Json) => u.closed)).toBe(true);
    const last = JSON.parse(got.at(-1)?.raw ?? '');
    expect(last.conversation.team.id).toBe(team.id);
    const assigned = JSON.parse(got.at(-2)?.raw ?? '');
    expect(assigned.conversation.assignees.map((a: Json) => a.id)).toEqual([other.id]);
  });

  it('escapes <, > and & in the delivery JSON like Rails (quirk on by default, switchable)', async () => {
    await sim.createRule({ type: 'incoming_email', url: `${receiver.url}/m`, secret: SECRET });
    await sim.receiveEmail({ subject: 'A <b> & C' });
    const raw = deliveries()[0]?.raw ?? '';
    expect(raw).toContain('A \\u003cb\\u003e \\u0026 C');
    expect(raw).not.toContain('<');
    expect(JSON.parse(raw).message.subject).toBe('A <b> & C');
    expect(deliveries()[0]?.headers['x-hook-signature']).toBe(sign(raw));

    const plain = await startMissiveSimulator({ seed: 4, quirks: { escapeHtmlInJson: false } });
    try {
      await plain.createRule({ type: 'incoming_email', url: `${receiver.url}/plain`, secret: SECRET });
      await plain.receiveEmail({ subject: 'A <b> & C' });
      const plainRaw = receiver.received.filter((r) => r.path === '/plain').at(-1)?.raw ?? '';
      expect(plainRaw).toContain('"subject":"A <b> & C"');
    } finally {
      await plain.stop();
    }
  });

  it('puts the message where each rule says (message, latest_message or both)', async () => {
    await sim.createRule({ type: 'incoming_email', url: `${receiver.url}/latest`, secret: SECRET, messageKey: 'latest_message' });
    await sim.createRule({ type: 'incoming_email', url: `${receiver.url}/both`, secret: SECRET, messageKey: 'both' });
    const { message } = await sim.receiveEmail({});
    const latest = JSON.parse(deliveries().find((r) => r.path === '/latest')?.raw ?? '');
    expect(latest.message).toBeUndefined();
    expect(latest.latest_message.id).toBe(message.id);
    const both = JSON.parse(deliveries().find((r) => r.path === '/both')?.raw ?? '');
    expect(both.message.id).toBe(message.id);
    expect(Object.keys(both.latest_message).sort()).toEqual(['id', 'references', 'to_fields']);
  });

  it('sends API hooks created without a secret unsigned', async () => {
    const r = await fetch(`${sim.url}/v1/hooks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sim.credentials.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ hooks: { type: 'new_comment', url: `${receiver.url}/api` } }),
    });
    expect(r.status).toBe(201);
    await sim.addComment(someConversation().id, { body: 'hi' });
    const delivery = deliveries()[0];
    expect(delivery?.headers['x-hook-signature']).toBeUndefined();
    expect(JSON.parse(delivery?.raw ?? '').comment.body).toBe('hi');
  });
});

describe('trash and restore', () => {
  it('flip users[].trashed for everyone, send no webhook, and move the conversation in and out of the trashed mailbox', async () => {
    for (const type of RULE_TYPES) await sim.createRule({ type, url: `${receiver.url}/m`, secret: SECRET });
    const before = receiver.received.length;
    const conversation = sim.data().conversations.find((c) => !Object.values(c.flags).some((f) => f.trashed || f.junked)) as MvConversation;
    const trashedIds = async () => {
      const r = await fetch(`${sim.url}/v1/conversations?trashed=true&limit=50`, { headers: { authorization: `Bearer ${sim.credentials.token}` } });
      return ((await r.json()) as Json).conversations.map((c: Json) => c.id);
    };
    await sim.trashConversation(conversation.id);
    const r = await fetch(`${sim.url}/v1/conversations/${conversation.id}`, { headers: { authorization: `Bearer ${sim.credentials.token}` } });
    const shown = ((await r.json()) as Json).conversations[0];
    expect(shown.users.every((u: Json) => u.trashed === true)).toBe(true);
    expect(await trashedIds()).toContain(conversation.id);
    await sim.restoreConversation(conversation.id);
    expect(await trashedIds()).not.toContain(conversation.id);
    expect(receiver.received.length).toBe(before);
    // The next delivery about it shows the restored state.
    await sim.receiveEmail({ conversationId: conversation.id });
    const next = JSON.parse(receiver.received.at(-1)?.raw ?? '');
    expect(next.conversation.users.every((u: Json) => u.trashed === false)).toBe(true);
  });
});
