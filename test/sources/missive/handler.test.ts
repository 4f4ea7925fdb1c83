/**
 * The Missive handler end to end against the simulator: rule deliveries -> events -> handle -> rows in
 * a real SQLite database. Covers enrichment (GET message), conversation-level re-syncs, trash and
 * restore, replays of old deliveries (with and without API credentials), delayed consistency, a
 * conversation that is gone, snapshots, and attachment storage with an expired URL.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectorError } from '../../../src/errors.ts';
import type { Email, QueueEvent } from '../../../src/model.ts';
import type { MvConversation, MvMessage } from '../../../simulators/missive/index.ts';
import { fixture } from './helpers.ts';
import { startHarness, type Harness } from './sim-harness.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const byId = (emails: readonly Email[]) => new Map(emails.map((e) => [e.id, e]));

/** A conversation the token user sees in `all` (not guest, not trashed, not junked), with at least `n` messages. */
function pickConversation(harness: Harness, n: number): MvConversation {
  const data = harness.sim.data();
  const found = data.conversations.find(
    (c) => !c.guest && c.messageIds.length >= n && Object.values(c.flags).every((f) => !f.trashed && !f.junked),
  );
  if (found === undefined) throw new Error(`no conversation with ${n} messages in the simulator data`);
  return found;
}

function messagesOf(harness: Harness, conversation: MvConversation): MvMessage[] {
  const all = harness.sim.data().messages;
  return conversation.messageIds.map((id) => all.find((m) => m.id === id)!);
}

function labelNotOn(harness: Harness, conversation: MvConversation): { id: string; name: string } {
  const label = harness.sim.data().labels.find((l) => !conversation.labelIds.includes(l.id));
  if (label === undefined) throw new Error('every label is on the conversation');
  return label;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('Missive handler against the simulator', () => {
  it('incoming_email: fetches the full message and stores one complete email, with its attachment', async () => {
    h = await startHarness({ env: { ATTACHMENTS_STORE: 'true' } });
    const { message, conversation } = await h.sim.receiveEmail({
      subject: 'Angebot Nr. 7 – Größe XL',
      from: { name: 'Zoë Ångström', address: 'zoe@kunde.example' },
      cc: [{ name: null, address: 'cc@kunde.example' }],
      html: '<p>Guten Tag,</p><p>siehe <a href="https://kunde.example/a/7">Angebot</a>.</p>',
      attachments: [{ filename: '../../Angebot 7 – final.pdf', extension: 'pdf', mediaType: 'application', subType: 'pdf', size: 1234 }],
    });
    const events = await h.take();
    expect(events.map((e) => e.type)).toEqual(['incoming_email']);
    const before = h.sim.requests.entries.length;
    const { changes, written } = await h.process(events[0]!);
    expect(written).toBe(1);
    const paths = h.sim.requests.entries.slice(before).map((r) => r.path);
    expect(paths).toEqual([`/v1/messages/${message.id}`, expect.stringMatching(/^\/attachments\//)]);

    const email = (await h.db.getEmail(message.id))!;
    expect(email).toMatchObject({
      id: message.id,
      conversationId: conversation.id,
      subject: 'Angebot Nr. 7 – Größe XL',
      fromName: 'Zoë Ångström',
      fromAddress: 'zoe@kunde.example',
      cc: [{ name: null, address: 'cc@kunde.example' }],
      bodyHtml: '<p>Guten Tag,</p><p>siehe <a href="https://kunde.example/a/7">Angebot</a>.</p>',
      bodyText: 'Guten Tag,\n\nsiehe Angebot [https://kunde.example/a/7].',
      deliveredAt: new Date(message.deliveredAt * 1000),
      messageIdHeader: message.emailMessageId,
      conversationUrl: `https://mail.missiveapp.com/#inbox/conversations/${conversation.id}`,
      deleted: false,
      draft: false,
    });
    const [attachment] = changes.emails[0]!.attachments;
    expect(attachment).toMatchObject({ filename: '../../Angebot 7 – final.pdf', mediaType: 'application/pdf', size: 1234, emailId: message.id });
    expect(path.dirname(attachment!.storedPath!)).toBe(path.join(h.attachmentsDir, message.id));
    expect(path.basename(attachment!.storedPath!)).toBe(`${message.attachments[0]!.id}-Angebot 7 – final.pdf`);
    const bytes = readFileSync(attachment!.storedPath!);
    expect(bytes.length).toBe(1234);
    expect(attachment!.sha256).toBe(sha(bytes));
    expect(email.attachments).toEqual([attachment]);
  });

  it('label_change: every message of the conversation gets the current labels, with full bodies', async () => {
    h = await startHarness();
    const conversation = pickConversation(h, 3);
    const label = labelNotOn(h, conversation);
    await h.sim.addLabel(conversation.id, label.id);
    const events = await h.take();
    expect(events.map((e) => e.type)).toEqual(['label_change']);
    const { changes, written } = await h.process(events[0]!);
    const messages = messagesOf(h, conversation);
    expect(written).toBe(messages.length);
    const emails = byId(changes.emails);
    for (const m of messages) {
      const email = emails.get(m.id)!;
      expect(email.labels).toContain(label.name);
      expect(email.bodyHtml).toBe(m.body);
      expect(email.subject).toBe(m.subject);
      expect(email.inReplyTo).toEqual(m.inReplyTo);
      expect(email.references).toEqual(m.references);
    }
  });

  it('a replayed old delivery writes today\'s state, never yesterday\'s labels', async () => {
    h = await startHarness();
    const conversation = pickConversation(h, 2);
    const label = labelNotOn(h, conversation);
    await h.sim.addLabel(conversation.id, label.id);
    const [added] = await h.take();
    await h.sim.removeLabel(conversation.id, label.id);
    const [removed] = await h.take();
    await h.process(removed!);
    const replay = await h.process(added!);
    for (const id of conversation.messageIds) {
      expect((await h.db.getEmail(id))!.labels).not.toContain(label.name);
    }
    expect(replay.changes.emails.every((e) => !e.labels.includes(label.name))).toBe(true);
  });

  it('a backfill snapshot handled after a newer change is skipped, even though last_activity_at did not move', async () => {
    h = await startHarness();
    const conversation = pickConversation(h, 2);
    const snapshot = await findSnapshot(h, new Date((conversation.lastActivityAt - 1) * 1000), conversation.id);
    await h.sim.trashConversation(conversation.id); // no webhook; the snapshot above says "not trashed"
    const label = labelNotOn(h, conversation);
    await h.sim.addLabel(conversation.id, label.id);
    const [labelled] = await h.take();
    expect(h.sim.conversation(conversation.id)!.lastActivityAt).toBe(conversation.lastActivityAt);
    await h.process(labelled!);
    const late = await h.process(snapshot); // e.g. a backfill event that waited behind retries
    expect(late).toMatchObject({ written: 0, stale: conversation.messageIds.length });
    for (const id of conversation.messageIds) {
      const row = (await h.db.getEmail(id))!;
      expect(row.labels).toContain(label.name);
      expect(row.deleted).toBe(true);
    }
  });

  it('trash and restore round trip: backfill sees the trash (no webhook exists), a later event the restore', async () => {
    h = await startHarness();
    const conversation = pickConversation(h, 2);
    const since = new Date((conversation.lastActivityAt - 1) * 1000);
    await h.sim.trashConversation(conversation.id);
    expect(await h.take()).toEqual([]);

    const snapshot = await findSnapshot(h, since, conversation.id);
    await h.process(snapshot);
    for (const id of conversation.messageIds) {
      const row = (await h.db.getEmail(id))!;
      expect(row.deleted).toBe(true);
      expect(row.deletedAt).toEqual(row.updatedAt);
    }

    await h.sim.restoreConversation(conversation.id);
    await h.sim.addLabel(conversation.id, labelNotOn(h, conversation).id);
    const [labelled] = await h.take();
    const result = await h.process(labelled!);
    expect(result.stale).toBe(0);
    for (const id of conversation.messageIds) {
      const row = (await h.db.getEmail(id))!;
      expect(row.deleted).toBe(false);
      expect(row.deletedAt).toBeNull();
    }

    // And the other way round: trashed again, seen by the next backfill.
    await h.sim.trashConversation(conversation.id);
    await h.process(await findSnapshot(h, since, conversation.id));
    expect((await h.db.getEmail(conversation.messageIds[0]!))!.deleted).toBe(true);
  });

  it('new_comment and an unknown rule type re-sync the whole conversation', async () => {
    h = await startHarness();
    const conversation = pickConversation(h, 2);
    await h.sim.addComment(conversation.id, { body: 'Bitte prüfen ✅' });
    const [comment] = await h.take();
    expect(comment!.type).toBe('new_comment');
    const fromComment = await h.process(comment!);
    expect(fromComment.changes.emails.map((e) => e.id).sort()).toEqual([...conversation.messageIds].sort());

    const unknown: QueueEvent = { ...comment!, id: 'evt-unknown', type: 'conversation_snoozed' };
    const fromUnknown = await h.process(unknown);
    expect(fromUnknown.changes.emails.map((e) => e.id).sort()).toEqual([...conversation.messageIds].sort());
    expect(h.lines().some((l) => l.msg === 'unknown Missive rule type "conversation_snoozed": re-syncing the conversation')).toBe(true);
  });

  it('a message Missive does not show yet is retried later (CONN_ERR_EVENT_NOT_READY)', async () => {
    h = await startHarness();
    h.sim.faults.set({ consistencyDelayMs: 60_000 });
    await h.sim.receiveEmail({ subject: 'Not yet visible' });
    const [event] = await h.take();
    const err = await h.source.handle(event!, h.context).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectorError);
    expect((err as ConnectorError).code).toBe('CONN_ERR_EVENT_NOT_READY');
    expect((err as ConnectorError).retryable).toBe(true);
  });

  it('a conversation that is gone marks the message its delivery names deleted', async () => {
    h = await startHarness();
    const payload = fixture<Record<string, Record<string, unknown>>>('label-change.json');
    const event: QueueEvent = {
      id: 'evt-gone',
      source: 'missive',
      type: 'label_change',
      entityKey: `conversation:${String(payload.conversation!.id)}`,
      origin: 'webhook',
      receivedAt: new Date(),
      payload,
    };
    const before = Date.now();
    const { changes } = await h.process(event);
    expect(changes.emails).toEqual([]);
    expect(changes.deletedEmails).toHaveLength(1);
    expect(changes.deletedEmails[0]!.id).toBe(String(payload.latest_message!.id));
    expect(changes.deletedEmails[0]!.at.getTime()).toBeGreaterThanOrEqual(before - 1000);
  });

  it('a backfill snapshot is handled without a single API request', async () => {
    h = await startHarness();
    const conversation = pickConversation(h, 2);
    const snapshot = await findSnapshot(h, new Date((conversation.lastActivityAt - 1) * 1000), conversation.id);
    const before = h.sim.requests.entries.length;
    const { changes } = await h.process(snapshot);
    expect(h.sim.requests.entries.length).toBe(before);
    expect(changes.emails.map((e) => e.id).sort()).toEqual([...conversation.messageIds].sort());
    expect(changes.emails.every((e) => e.bodyHtml !== null)).toBe(true);
  });

  it('stores a snapshot\'s attachments after their URLs expired, refreshing each URL once', async () => {
    let skew = 0;
    h = await startHarness({ env: { ATTACHMENTS_STORE: 'true' }, sim: { clock: { now: () => Date.now() + skew }, attachmentUrlTtlSeconds: 60 } });
    const { conversation, message } = await h.sim.receiveEmail({ attachments: [{ filename: 'scan.png', extension: 'png', mediaType: 'image', subType: 'png', size: 2048 }] });
    await h.take();
    const snapshot = await findSnapshot(h, new Date((message.deliveredAt - 1) * 1000), conversation.id);
    skew = 120_000; // the URLs in the snapshot are now expired
    const before = h.sim.requests.entries.length;
    const { changes } = await h.process(snapshot);
    const seen = h.sim.requests.entries.slice(before).map((r) => `${r.status} ${r.path}`);
    expect(seen).toEqual([expect.stringMatching(/^403 \/attachments\//), `200 /v1/messages/${message.id}`, expect.stringMatching(/^200 \/attachments\//)]);
    const stored = changes.emails[0]!.attachments[0]!;
    expect(readFileSync(stored.storedPath!).length).toBe(2048);
  });
});

describe('Missive handler without API credentials', () => {
  it('stores what the delivery says (no body), warns once, and an older delivery never overwrites a newer one', async () => {
    h = await startHarness({ offline: true });
    expect(h.source.apiConfigured).toBe(false);
    expect(h.source.backfill).toBeUndefined();
    const conversation = pickConversation(h, 1);
    const first = labelNotOn(h, conversation);
    await h.sim.addLabel(conversation.id, first.id);
    const [older] = await h.take();
    await new Promise((r) => setTimeout(r, 5));
    const second = h.sim.data().labels.find((l) => !conversation.labelIds.includes(l.id) && l.id !== first.id)!;
    await h.sim.addLabel(conversation.id, second.id);
    const [newer] = await h.take();
    expect(older!.receivedAt.getTime()).toBeLessThan(newer!.receivedAt.getTime());

    const before = h.sim.requests.entries.length;
    const applied = await h.process(newer!);
    const replayed = await h.process(older!);
    expect(h.sim.requests.entries.length).toBe(before);
    expect(applied.written).toBe(1);
    expect(replayed).toMatchObject({ written: 0, stale: 1 });

    const latest = conversation.messageIds[conversation.messageIds.length - 1]!;
    const row = (await h.db.getEmail(latest))!;
    expect(row.labels).toEqual(expect.arrayContaining([first.name, second.name]));
    expect(row.bodyHtml).toBeNull();
    const warnings = h.lines().filter((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('MISSIVE_API_TOKEN is not set'));
    expect(warnings).toHaveLength(1);
  });
});

/** Runs the source's backfill from `since` and returns the snapshot event of one conversation. */
async function findSnapshot(harness: Harness, since: Date, conversationId: string): Promise<QueueEvent> {
  let found: QueueEvent | undefined;
  for await (const page of harness.source.backfill!({ since, log: harness.context.log })) {
    found ??= page.events.find((e) => e.entityKey === `conversation:${conversationId}`);
  }
  if (found === undefined) throw new Error(`backfill from ${since.toISOString()} did not find ${conversationId}`);
  return found;
}

/** A webhook event made from the label_change fixture, its payload changed by `edit` (no simulator delivery). */
describe('unsigned deliveries under WEBHOOKS_ALLOW_UNSIGNED=true, API configured (issue 15 item 3)', () => {
  it('a forged message body is not stored as sent: the message is read from the API; a forged unknown conversation deletes nothing', async () => {
    h = await startHarness({ env: { MISSIVE_WEBHOOK_SECRET: '', WEBHOOKS_ALLOW_UNSIGNED: 'true' } });
    expect(h.source.acceptsUnsigned).toBe(true);
    const { message } = await h.sim.receiveEmail({ subject: 'The real subject', from: { name: 'Ada', address: 'ada@example.com' }, html: '<p>The real body</p>' });
    const [event] = await h.take();
    if (event === undefined) throw new Error('no event');
    // The body as a forger would send it: the HTML body present (a signed one would be stored as it is).
    const payload = event.payload as Record<string, unknown>;
    const field = payload.message !== undefined ? 'message' : 'latest_message';
    payload[field] = { ...(payload[field] as Record<string, unknown>), subject: 'FORGED by anyone', body: '<p>FORGED by anyone</p>' };
    await h.process(event);
    const email = (await h.db.getEmail(message.id))!;
    expect(email.subject).toBe('The real subject');
    expect(email.bodyHtml).toBe('<p>The real body</p>');

    // A conversation the API does not know, naming a stored message: nothing is marked deleted.
    const forged = fixtureEvent('label_change', (p) => {
      (p.conversation as Record<string, unknown>).id = '00000000-0000-4000-8000-00000000dead';
      p.latest_message = { ...(p.latest_message as Record<string, unknown>), id: message.id };
    });
    const { changes } = await h.process(forged);
    expect(changes.deletedEmails).toEqual([]);
    expect((await h.db.getEmail(message.id))?.deleted).toBe(false);
  });
});

function fixtureEvent(type: string, edit: (payload: Record<string, unknown>) => void): QueueEvent {
  const payload = fixture<Record<string, unknown>>('label-change.json');
  edit(payload);
  return {
    id: `evt-${type}`,
    source: 'missive',
    type,
    entityKey: `conversation:${String((payload.conversation as { id: unknown }).id)}`,
    origin: 'webhook',
    receivedAt: new Date(),
    payload,
  };
}

/** What handling `event` threw (through JSON, as the queue stores it), or a failure when it resolved. */
async function handleError(harness: Harness, event: QueueEvent): Promise<ConnectorError> {
  const outcome = await harness.process(event).then(
    (result) => ({ resolved: result }),
    (err: unknown) => ({ err }),
  );
  if (!('err' in outcome)) throw new Error(`expected a ConnectorError, handling resolved with ${JSON.stringify(outcome.resolved.changes.emails.map((e) => e.id))}`);
  expect(outcome.err).toBeInstanceOf(ConnectorError);
  return outcome.err as ConnectorError;
}

describe('Missive handler without API credentials: every event is a row or a dead letter naming its cause', () => {
  it('a `latest_message` that is not an object is dead-lettered naming the field (never "no changes")', async () => {
    h = await startHarness({ offline: true });
    for (const value of ['d5e6f7a8', 42, ['d5e6f7a8'], true]) {
      const err = await handleError(h, fixtureEvent('label_change', (p) => void (p.latest_message = value)));
      expect(err.code).toBe('CONN_ERR_EVENT_INVALID');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain('latest_message: expected an object');
    }
    expect((await h.db.counts()).emails).toBe(0);
  });

  it('a message id of the wrong type is dead-lettered naming `<field>.id`', async () => {
    h = await startHarness({ offline: true });
    const cases: Array<[string, (p: Record<string, unknown>) => void]> = [
      ['latest_message.id', (p) => void ((p.latest_message as Record<string, unknown>).id = true)],
      ['latest_message.id', (p) => void ((p.latest_message as Record<string, unknown>).id = { uuid: 'x' })],
      ['latest_message.id', (p) => void ((p.latest_message as Record<string, unknown>).id = '')],
      ['latest_message.id', (p) => void delete (p.latest_message as Record<string, unknown>).id],
      ['message.id', (p) => void (p.message = { ...(p.latest_message as object), id: null })],
    ];
    for (const [field, edit] of cases) {
      const err = await handleError(h, fixtureEvent('incoming_email', edit));
      expect(err.code).toBe('CONN_ERR_EVENT_INVALID');
      expect(err.message).toContain(`${field}: expected a string id`);
    }
    expect((await h.db.counts()).emails).toBe(0);
  });

  it('a conversation-level delivery that names no message waits for the API: CONN_ERR_SOURCE_UNCONFIGURED naming MISSIVE_API_TOKEN', async () => {
    h = await startHarness({ offline: true });
    for (const edit of [(p: Record<string, unknown>) => void delete p.latest_message, (p: Record<string, unknown>) => void (p.latest_message = null)]) {
      const err = await handleError(h, fixtureEvent('label_change', edit));
      expect(err.code).toBe('CONN_ERR_SOURCE_UNCONFIGURED');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain('MISSIVE_API_TOKEN');
    }
    // The same delivery with its message is stored (the control).
    const stored = await h.process(fixtureEvent('label_change', () => {}));
    expect(stored.written).toBe(1);
  });

  it('a time that is not a valid time (1e308, negative, far future) is dead-lettered naming the field, not retried as an internal error', async () => {
    h = await startHarness({ offline: true });
    const cases: Array<[string, string, unknown]> = [
      ['latest_message', 'delivered_at', 1e308],
      ['latest_message', 'updated_at', -1e12],
      ['latest_message', 'created_at', 1e15],
      ['latest_message', 'delivered_at', '4102444800000'],
      ['conversation', 'last_activity_at', 1e308],
    ];
    for (const [object, key, value] of cases) {
      const err = await handleError(h, fixtureEvent('label_change', (p) => void ((p[object] as Record<string, unknown>)[key] = value)));
      expect(err.code).toBe('CONN_ERR_EVENT_INVALID');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain(`${object}.${key}: ${String(value)} is not a valid time`);
    }
    expect((await h.db.counts()).emails).toBe(0);
  });
});
