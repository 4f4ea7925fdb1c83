/**
 * Contract tests of the Missive simulator's REST API against reference/missive.md: auth, mailbox
 * filters, limits, `until` paging with ties, conversation and message shapes, batch messages, signed
 * expiring attachment URLs, and the hooks API.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../simulators/common.ts';
import { startMissiveSimulator, type MissiveSimulator } from '../../simulators/missive/index.ts';
import type { MvConversation } from '../../simulators/missive/model.ts';
import { startReceiver, type Json, type Receiver } from './common-receiver.ts';

const BIG = { concurrency: 100, perMinute: 1e6, perQuarterHour: 1e6 };
let sim: MissiveSimulator;
let clock: ManualClock;

beforeAll(async () => {
  clock = new ManualClock(Date.UTC(2026, 10, 1, 12));
  sim = await startMissiveSimulator({ seed: 21, clock, limits: BIG, attachmentUrlTtlSeconds: 600 });
});
afterAll(async () => {
  await sim.stop();
});

async function get(path: string, token: string | null = sim.credentials.token): Promise<{ status: number; headers: Headers; body: Json }> {
  const response = await fetch(`${sim.url}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? null : JSON.parse(text) };
}

/** Walks a conversation list with `until` as a client should: dedupe by id, stop on a short or all-tied page. */
async function walk(query: string, limit: number): Promise<{ ids: string[]; pages: Json[][] }> {
  const seen = new Set<string>();
  const pages: Json[][] = [];
  let until: number | undefined;
  for (;;) {
    const { status, body } = await get(`/v1/conversations?${query}&limit=${limit}${until === undefined ? '' : `&until=${until}`}`);
    expect(status).toBe(200);
    const rows = body.conversations;
    pages.push(rows);
    for (const r of rows) seen.add(r.id);
    const oldest = rows.at(-1)?.last_activity_at;
    if (rows.length < limit || rows.every((r: Json) => r.last_activity_at === oldest) || oldest === until) break;
    until = oldest;
  }
  return { ids: [...seen], pages };
}

const me = () => sim.credentials.userId;
const flags = (c: MvConversation) => c.flags[me()] as MvConversation['flags'][string];

describe('auth', () => {
  it('needs the Bearer token', async () => {
    expect((await get('/v1/conversations?all=true', null)).status).toBe(401);
    expect((await get('/v1/conversations?all=true', 'wrong')).status).toBe(401);
    const basic = await fetch(`${sim.url}/v1/conversations?all=true`, { headers: { authorization: `Basic ${Buffer.from(`${sim.credentials.token}:`).toString('base64')}` } });
    expect(basic.status).toBe(401);
    expect((await get('/v1/conversations?all=true')).status).toBe(200);
  });
});

describe('GET /v1/conversations', () => {
  it('requires one mailbox, label or team filter', async () => {
    const r = await get('/v1/conversations');
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/mailbox/);
    expect((await get('/v1/conversations?limit=10')).status).toBe(400);
  });

  it('defaults limit to 25 and rejects more than 50', async () => {
    expect((await get('/v1/conversations?all=true')).body.conversations.length).toBeGreaterThanOrEqual(25);
    expect((await get('/v1/conversations?all=true&limit=50')).status).toBe(200);
    expect((await get('/v1/conversations?all=true&limit=51')).status).toBe(400);
    expect((await get('/v1/conversations?all=true&limit=0')).status).toBe(400);
  });

  it('lists newest last_activity_at first and pages with until, ties included', async () => {
    const data = sim.data();
    const { ids, pages } = await walk('all=true', 7);
    const expected = data.conversations.filter((c) => !flags(c).trashed && !flags(c).junked);
    expect(ids.sort()).toEqual(expected.map((c) => c.id).sort());
    const times = pages.flat().map((r) => r.last_activity_at);
    for (let i = 1; i < pages[0]!.length; i++) expect(times[i - 1]).toBeGreaterThanOrEqual(times[i]);
  });

  it('returns more than limit rows when rows tie at the page boundary, and repeats rows equal to until', async () => {
    const tieClock = new ManualClock(Date.UTC(2026, 0, 1));
    const tied = await startMissiveSimulator({ seed: 1, clock: tieClock, limits: BIG, data: { conversations: 0 } });
    try {
      const base = Math.floor(tieClock.now() / 1000);
      for (const offset of [100, 200, 200, 200, 300, 300]) {
        tieClock.set((base + offset) * 1000);
        await tied.receiveEmail({});
      }
      const page = async (query: string) => {
        const r = await fetch(`${tied.url}/v1/conversations?all=true&${query}`, { headers: { authorization: `Bearer ${tied.credentials.token}` } });
        return ((await r.json()) as Json).conversations.map((c: Json) => c.last_activity_at - base);
      };
      expect(await page('limit=3')).toEqual([300, 300, 200, 200, 200]);
      expect(await page(`limit=3&until=${base + 200}`)).toEqual([200, 200, 200]);
      expect(await page(`limit=4&until=${base + 200}`)).toEqual([200, 200, 200, 100]);
      expect(await page(`limit=3&until=${base + 199}`)).toEqual([100]);
    } finally {
      await tied.stop();
    }
  });

  it('filters each mailbox from the token user point of view', async () => {
    const data = sim.data();
    const ids = async (q: string) => (await walk(q, 50)).ids.sort();
    const expect_ = (f: (c: MvConversation) => boolean) => data.conversations.filter(f).map((c) => c.id).sort();
    expect(await ids('trashed=true')).toEqual(expect_((c) => flags(c).trashed));
    expect((await ids('trashed=true')).length).toBeGreaterThan(0);
    expect(await ids('closed=true')).toEqual(expect_((c) => flags(c).closed && !flags(c).trashed && !flags(c).junked));
    expect(await ids('junked=true')).toEqual(expect_((c) => flags(c).junked));
    expect(await ids('flagged=true')).toEqual(expect_((c) => flags(c).flagged && !flags(c).trashed && !flags(c).junked));
    expect(await ids('inbox=true')).toEqual(
      expect_((c) => { const f = flags(c); return !f.closed && !f.archived && !f.trashed && !f.junked && !f.snoozed; }),
    );
    expect(await ids('assigned=true')).toEqual(expect_((c) => c.assigneeIds.includes(me()) && !flags(c).closed && !flags(c).trashed && !flags(c).junked));
    const label = data.labels.find((l) => data.conversations.some((c) => c.labelIds.includes(l.id))) as { id: string };
    expect(await ids(`shared_label=${label.id}`)).toEqual(expect_((c) => c.labelIds.includes(label.id) && !flags(c).trashed && !flags(c).junked));
    const team = data.teams[0] as { id: string };
    expect(await ids(`team_all=${team.id}`)).toEqual(expect_((c) => c.teamId === team.id && !flags(c).trashed && !flags(c).junked));
    expect(await ids(`team_closed=${team.id}`)).toEqual(expect_((c) => c.teamId === team.id && flags(c).closed && !flags(c).trashed && !flags(c).junked));
    expect(await ids(`team_inbox=${team.id}`)).toEqual(expect_((c) => c.teamId === team.id && !flags(c).closed && !flags(c).trashed && !flags(c).junked));
  });

  it('renders the documented conversation fields', async () => {
    const row = (await get('/v1/conversations?all=true&limit=50')).body.conversations.find((c: Json) => c.assignees.length > 0 && c.team);
    expect(row).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      created_at: expect.any(Number),
      last_activity_at: expect.any(Number),
      organization: { id: sim.credentials.organizationId, name: expect.any(String) },
      team: { id: expect.any(String), name: expect.any(String), organization: sim.credentials.organizationId },
      assignee_names: expect.any(String),
      assignee_emails: expect.any(String),
      messages_count: expect.any(Number),
      attachments_count: expect.any(Number),
      drafts_count: 0,
      app_url: `missive://mail.missiveapp.com/#inbox/conversations/${row.id}`,
      web_url: `https://mail.missiveapp.com/#inbox/conversations/${row.id}`,
    });
    expect('subject' in row && 'latest_message_subject' in row && 'color' in row).toBe(true);
    expect(Number.isInteger(row.last_activity_at)).toBe(true);
    expect(row.last_activity_at).toBeLessThan(1e11); // seconds, not ms
    for (const u of row.users) {
      expect(Object.keys(u).sort()).toEqual(['archived', 'assigned', 'closed', 'email', 'flagged', 'id', 'junked', 'name', 'snoozed', 'trashed', 'unassigned']);
    }
    expect(row.assignees.every((a: Json) => a.assigned === true)).toBe(true);
    for (const a of row.authors) expect(Object.keys(a).sort()).toEqual(['address', 'name']);
    expect(row.shared_label_names).toBe(row.shared_labels.map((l: Json) => l.name).join(', '));
  });
});

describe('single conversation and messages', () => {
  const longest = () => sim.data().conversations.filter((c) => !c.guest).sort((a, b) => b.messageIds.length - a.messageIds.length)[0] as MvConversation;

  it('GET /v1/conversations/:id wraps one conversation in an array; unknown id is 404', async () => {
    const c = longest();
    const r = await get(`/v1/conversations/${c.id}`);
    expect(r.body.conversations).toHaveLength(1);
    expect(r.body.conversations[0].id).toBe(c.id);
    expect(r.body.conversations[0].messages_count).toBe(c.messageIds.length);
    expect((await get('/v1/conversations/00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });

  it('lists messages newest first, at most 10, without body, paging by delivered_at', async () => {
    const c = longest();
    const first = await get(`/v1/conversations/${c.id}/messages`);
    expect(first.status).toBe(200);
    const rows = first.body.messages;
    expect(rows.length).toBe(Math.min(10, c.messageIds.length));
    for (const m of rows) {
      expect(m.body).toBeUndefined();
      expect(m.attachments).toBeUndefined();
      expect(m.type).toBe('email');
    }
    expect(rows.map((m: Json) => m.delivered_at)).toEqual([...rows.map((m: Json) => m.delivered_at)].sort((a, b) => b - a));
    expect((await get(`/v1/conversations/${c.id}/messages?limit=11`)).status).toBe(400);
    const oldest = rows.at(-1).delivered_at;
    const next = await get(`/v1/conversations/${c.id}/messages?limit=2&until=${oldest}`);
    expect(next.body.messages[0].delivered_at).toBeLessThanOrEqual(oldest);
  });

  it('GET /v1/messages/:id returns an object with HTML body, attachments and conversation; batch returns an array', async () => {
    const data = sim.data();
    const withFiles = data.messages.find((m) => m.attachments.some((a) => a.width !== undefined)) as (typeof data.messages)[number];
    const r = await get(`/v1/messages/${withFiles.id}`);
    expect(Array.isArray(r.body.messages)).toBe(false);
    const m = r.body.messages;
    expect(m).toMatchObject({
      id: withFiles.id,
      subject: withFiles.subject,
      body: withFiles.body,
      delivered_at: withFiles.deliveredAt,
      email_message_id: expect.stringMatching(/^<.+@.+>$/),
      in_reply_to: withFiles.inReplyTo,
      references: withFiles.references,
      from_field: { name: withFiles.from.name, address: withFiles.from.address },
      conversation: { id: withFiles.conversationId },
    });
    expect(m.body).toMatch(/<\w+/);
    for (const key of ['to_fields', 'cc_fields', 'bcc_fields', 'reply_to_fields']) expect(Array.isArray(m[key])).toBe(true);
    const image = m.attachments.find((a: Json) => a.width !== undefined);
    expect(Object.keys(image).sort()).toEqual(['extension', 'filename', 'height', 'id', 'media_type', 'size', 'sub_type', 'url', 'width']);
    const nonImage = data.messages.flatMap((x) => x.attachments).find((a) => a.width === undefined);
    if (nonImage) expect(nonImage.height).toBeUndefined();
    const other = data.messages.find((x) => x.id !== withFiles.id) as { id: string };
    const batch = await get(`/v1/messages/${withFiles.id},${other.id}`);
    expect(batch.body.messages.map((x: Json) => x.id)).toEqual([withFiles.id, other.id]);
    expect((await get('/v1/messages/00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });

  it('finds messages by email_message_id', async () => {
    const message = sim.data().messages[3] as { id: string; emailMessageId: string };
    const r = await get(`/v1/messages?email_message_id=${encodeURIComponent(message.emailMessageId)}`);
    expect(r.body.messages.map((m: Json) => m.id)).toEqual([message.id]);
  });
});

describe('attachments', () => {
  it('serves signed URLs without auth until they expire, then 403; tampering is 403', async () => {
    const message = sim.data().messages.find((m) => m.attachments.length > 0) as { id: string; attachments: Array<{ id: string; size: number; mediaType: string; subType: string }> };
    const att = (await get(`/v1/messages/${message.id}`)).body.messages.attachments[0];
    const url = new URL(att.url);
    expect(Number(url.searchParams.get('Expires'))).toBe(Math.floor(clock.now() / 1000) + 600);
    const ok = await fetch(att.url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe(`${att.media_type}/${att.sub_type}`);
    const bytes = Buffer.from(await ok.arrayBuffer());
    expect(bytes.length).toBe(att.size);
    const again = Buffer.from(await (await fetch(att.url)).arrayBuffer());
    expect(createHash('sha256').update(again).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
    const tampered = new URL(att.url);
    tampered.searchParams.set('Expires', String(Number(tampered.searchParams.get('Expires')) + 3600));
    expect((await fetch(tampered)).status).toBe(403);
    clock.advance(601_000);
    const expired = await fetch(att.url);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/expired/);
    const fresh = (await get(`/v1/messages/${message.id}`)).body.messages.attachments[0].url;
    expect((await fetch(fresh)).status).toBe(200);
  });
});

describe('hooks API', () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver.close();
  });

  it('creates, lists and deletes hooks; bad bodies are 400', async () => {
    const post = (body: unknown) =>
      fetch(`${sim.url}/v1/hooks`, { method: 'POST', headers: { authorization: `Bearer ${sim.credentials.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const created = await post({ hooks: { type: 'incoming_email', url: `${receiver.url}/m` } });
    expect(created.status).toBe(201);
    const hook = ((await created.json()) as Json).hooks;
    expect(hook).toMatchObject({ id: expect.any(String), type: 'incoming_email', url: `${receiver.url}/m` });
    expect((await get('/v1/hooks')).body.hooks.map((h: Json) => h.id)).toContain(hook.id);
    expect((await post({ type: 'incoming_email', url: `${receiver.url}/m` })).status).toBe(400);
    expect((await post({ hooks: { type: 'message_deleted', url: `${receiver.url}/m` } })).status).toBe(400);
    const del = await fetch(`${sim.url}/v1/hooks/${hook.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${sim.credentials.token}` } });
    expect(del.status).toBe(200);
    const again = await fetch(`${sim.url}/v1/hooks/${hook.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${sim.credentials.token}` } });
    expect(again.status).toBe(404);
  });
});
