/**
 * MissiveClient against small Fastify servers: `until` paging with ties longer than a page, servers
 * that ignore `until`, batch message reads, 404s, Bearer auth, 429 with Retry-After, and the shared
 * per-process budget.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/http/clock.ts';
import { createMissiveLimiter, MissiveClient, nextUntil, sharedMissiveLimiter } from '../../../src/sources/missive/client.ts';
import { pageByTime, startFakeServer, type FakeServer } from './fake-server.ts';

const TOKEN = 'missive_pat-test-token';
let server: FakeServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

function client(url: string, extra: Partial<ConstructorParameters<typeof MissiveClient>[0]> = {}): MissiveClient {
  return new MissiveClient({ token: TOKEN, baseUrl: `${url}/v1`, limiter: createMissiveLimiter({ windowMarginMs: 0 }), maxAttempts: 2, ...extra });
}

interface Row {
  id: string;
  last_activity_at: number;
}

/** `count` conversations; times fall in runs so that ties cross page boundaries and exceed a page. */
function conversations(): Row[] {
  const rows: Row[] = [];
  let n = 0;
  const add = (time: number, count: number) => {
    for (let i = 0; i < count; i++) rows.push({ id: `conv-${String(++n).padStart(3, '0')}`, last_activity_at: time });
  };
  add(2000, 3);
  for (let t = 1999; t > 1950; t--) add(t, 1); // 49 distinct
  add(1900, 60); // a run of ties longer than a page
  add(1850, 2);
  add(1800, 51); // exactly ... more than a page again
  for (let t = 1799; t > 1780; t--) add(t, 1);
  return rows;
}

function conversationRoutes(rows: Row[], options: { ignoreUntil?: boolean } = {}) {
  return (app: FakeServer['app']) => {
    app.get('/v1/conversations', async (request, reply) => {
      const q = request.query as Record<string, string>;
      if (q.all !== 'true' && q.trashed !== 'true') return reply.code(400).send({ error: 'You need to paginate at least one mailbox' });
      const until = options.ignoreUntil || q.until === undefined ? undefined : Number(q.until);
      return { conversations: pageByTime(rows, (r) => r.last_activity_at, Number(q.limit ?? 25), until) };
    });
  };
}

describe('walkConversations', () => {
  it('yields every conversation once, newest first, across ties longer than a page', async () => {
    const rows = conversations();
    server = await startFakeServer(conversationRoutes(rows));
    const seen: string[] = [];
    let pages = 0;
    for await (const page of client(server.url).walkConversations({ all: true })) {
      pages++;
      seen.push(...page.conversations.map((c) => c.id));
    }
    expect(seen).toHaveLength(rows.length);
    expect(new Set(seen).size).toBe(rows.length);
    const times = seen.map((id) => rows.find((r) => r.id === id)!.last_activity_at);
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(pages).toBe(server.seen.length);
    expect(pages).toBeLessThanOrEqual(8);
    expect(server.seen[0]).toBe('GET /v1/conversations?all=true&limit=50');
    expect(server.headers[0]?.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('stops at `since`, and yields nothing older', async () => {
    const rows = conversations();
    server = await startFakeServer(conversationRoutes(rows));
    const since = new Date(1950 * 1000);
    const seen: string[] = [];
    for await (const page of client(server.url).walkConversations({ all: true }, { since })) seen.push(...page.conversations.map((c) => c.id));
    expect(seen).toEqual(rows.filter((r) => r.last_activity_at >= 1950).map((r) => r.id));
    expect(server.seen).toHaveLength(2);
  });

  it('never loops on a server that ignores `until` (distinct times)', async () => {
    server = await startFakeServer(conversationRoutes(conversations(), { ignoreUntil: true }));
    const seen: string[] = [];
    for await (const page of client(server.url).walkConversations({ all: true })) seen.push(...page.conversations.map((c) => c.id));
    expect(server.seen).toHaveLength(2);
    expect(seen).toHaveLength(50);
  });

  it('never loops on a server that ignores `until` (a full page of ties)', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ id: `tie-${i}`, last_activity_at: 1000 }));
    server = await startFakeServer(conversationRoutes(rows, { ignoreUntil: true }));
    const seen: string[] = [];
    for await (const page of client(server.url).walkConversations({ all: true })) seen.push(...page.conversations.map((c) => c.id));
    expect(seen).toHaveLength(50);
    expect(server.seen).toEqual(['GET /v1/conversations?all=true&limit=50', 'GET /v1/conversations?all=true&limit=50&until=999']);
  });

  it('the paging rules, one by one', () => {
    expect(nextUntil([5, 4, 3], 3, 50, 3, null, null)).toBeNull(); // short page
    expect(nextUntil([5, 4, 3], 3, 3, 3, null, null)).toBe(3);
    expect(nextUntil([3, 3, 3], 3, 3, 0, 3, null)).toBe(2); // full page of ties, all seen: go below
    expect(nextUntil([5, 4, 3], 3, 3, 0, 5, null)).toBeNull(); // nothing new
    expect(nextUntil([9, 4, 3], 3, 3, 3, 5, null)).toBeNull(); // row newer than until
    expect(nextUntil([5, 4, 3], 3, 3, 3, null, 4)).toBeNull(); // crossed since
    expect(nextUntil([null, undefined], 2, 2, 2, null, null)).toBeNull();
  });
});

describe('messages', () => {
  const messages = Array.from({ length: 25 }, (_, i) => ({
    id: `msg-${String(i).padStart(2, '0')}`,
    delivered_at: 5000 - Math.floor(i / 3) * 10, // runs of three ties
    subject: `Message ${i}`,
  }));

  function messageRoutes(app: FakeServer['app']) {
    app.get('/v1/conversations/:id/messages', async (request, reply) => {
      const { id } = request.params as { id: string };
      if (id !== 'conv-1') return reply.code(404).send({ error: 'Conversation not found' });
      const q = request.query as Record<string, string>;
      if (Number(q.limit) > 10) return reply.code(400).send({ error: 'limit must be 10 or less' });
      return { messages: pageByTime(messages, (m) => m.delivered_at, Number(q.limit), q.until === undefined ? undefined : Number(q.until)) };
    });
    app.get('/v1/messages/:ids', async (request, reply) => {
      const raw = (request.params as { ids: string }).ids;
      const ids = raw.split(',');
      const found = ids.map((id) => messages.find((m) => m.id === id));
      if (found.some((m) => m === undefined)) return reply.code(404).send({ error: 'Message not found' });
      const full = found.map((m) => ({ ...m, body: `<p>${m!.subject}</p>` }));
      return { messages: raw.includes(',') ? full : full[0] };
    });
    app.get('/v1/conversations/:id', async (request, reply) => {
      const { id } = request.params as { id: string };
      if (id !== 'conv-1') return reply.code(404).send({ error: 'Conversation not found' });
      return { conversations: [{ id: 'conv-1', last_activity_at: 5000 }] };
    });
  }

  it('lists every message of a conversation once, ten at a time', async () => {
    server = await startFakeServer(messageRoutes);
    const listed = await client(server.url).listConversationMessages('conv-1');
    expect(listed.map((m) => m.id)).toEqual(messages.map((m) => m.id));
    expect(server.seen.every((s) => s.startsWith('GET /v1/conversations/conv-1/messages?limit=10'))).toBe(true);
    expect(server.seen.length).toBeLessThanOrEqual(4);
  });

  it('reads bodies in batches of at most ten ids, accepting array and object answers', async () => {
    server = await startFakeServer(messageRoutes);
    const ids = messages.slice(0, 21).map((m) => m.id);
    const full = await client(server.url).getMessages(ids);
    expect(full.map((m) => m.id).sort()).toEqual([...ids].sort());
    expect(full.every((m) => m.body === `<p>${m.subject}</p>`)).toBe(true);
    const batches = server.seen.map((s) => s.replace('GET /v1/messages/', '').split(','));
    expect(batches.map((b) => b.length).sort((a, b) => a - b)).toEqual([1, 10, 10]);
  });

  it('asks id by id when a batch is refused because one id is unknown', async () => {
    server = await startFakeServer(messageRoutes);
    const full = await client(server.url).getMessages(['msg-01', 'gone', 'msg-02']);
    expect(full.map((m) => m.id).sort()).toEqual(['msg-01', 'msg-02']);
    expect(server.seen).toEqual(expect.arrayContaining(['GET /v1/messages/msg-01,gone,msg-02', 'GET /v1/messages/gone']));
  });

  it('splits a batch whose URL is too long for the server (414)', async () => {
    server = await startFakeServer((app) => {
      app.addHook('onRequest', async (request, reply) => {
        if (request.url.length > 40) return reply.code(414).send({ error: 'URI Too Long' });
      });
      messageRoutes(app);
    });
    const ids = messages.slice(0, 7).map((m) => m.id);
    const full = await client(server.url).getMessages(ids);
    expect(full.map((m) => m.id).sort()).toEqual(ids);
    const counts = server.seen.map((s) => s.replace('GET /v1/messages/', '').split(',').length);
    expect(counts).toEqual([7, 4, 3]);
  });

  it('answers null for a conversation or message Missive does not have', async () => {
    server = await startFakeServer(messageRoutes);
    const c = client(server.url);
    expect(await c.getConversation('nope')).toBeNull();
    expect(await c.getMessage('nope')).toBeNull();
    expect((await c.getConversation('conv-1'))?.id).toBe('conv-1');
    expect((await c.getMessage('msg-03'))?.body).toBe('<p>Message 3</p>');
  });
});

describe('budget', () => {
  it('honours 429 Retry-After in seconds and as an HTTP date, pausing the shared limiter', async () => {
    const clock = new FakeClock({ autoAdvance: true, now: Date.now() });
    let calls = 0;
    server = await startFakeServer((app) => {
      app.get('/v1/conversations/:id', async (_request, reply) => {
        calls++;
        if (calls === 1) return reply.code(429).header('retry-after', '7').send({ error: 'Too Many Requests' });
        if (calls === 3) return reply.code(429).header('retry-after', new Date(clock.now() + 20_000).toUTCString()).send({ error: 'Too Many Requests' });
        return { conversations: [{ id: 'c', last_activity_at: 1 }] };
      });
    });
    const limiter = createMissiveLimiter({ windowMarginMs: 0 }, clock);
    const c = client(server.url, { clock, limiter });
    const start = clock.now();
    expect((await c.getConversation('c'))?.id).toBe('c');
    expect(clock.now() - start).toBeGreaterThanOrEqual(7000);
    const second = clock.now();
    expect((await c.getConversation('c'))?.id).toBe('c');
    expect(clock.now() - second).toBeGreaterThanOrEqual(19_000);
    expect(calls).toBe(4);
  });

  it('gives every client of one base URL and token the same limiter, with Missive\'s limits', () => {
    const a = sharedMissiveLimiter('http://127.0.0.1:1/v1', 'tok-a');
    expect(sharedMissiveLimiter('http://127.0.0.1:1/v1', 'tok-a')).toBe(a);
    expect(sharedMissiveLimiter('http://127.0.0.1:1/v1', 'tok-b')).not.toBe(a);
    expect(new MissiveClient({ token: 'tok-a', baseUrl: 'http://127.0.0.1:1/v1' }).limiter).toBe(a);
    expect(a.stats().windows).toEqual([
      { limit: 300, intervalMs: 61_000, used: 0 },
      { limit: 900, intervalMs: 901_000, used: 0 },
    ]);
    const scaled = createMissiveLimiter({ windowScale: 0.01, windowMarginMs: 5 });
    expect(scaled.stats().windows.map((w) => w.intervalMs)).toEqual([605, 9005]);
  });
});
