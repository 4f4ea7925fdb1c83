/**
 * The Missive backfill against the simulator: a 2,000-conversation walk that stays inside Missive's
 * budget (5 in flight, 300 per minute, 900 per 15 minutes; both sides scaled by WINDOW_SCALE so the
 * same ratios run in seconds), mailboxes deduplicated, `since` honoured, the checkpoint moved only by
 * the last page, and a failure thrown rather than a page yielded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectorError } from '../../../src/errors.ts';
import type { BackfillPage } from '../../../src/sources/source.ts';
import { backfillMissive } from '../../../src/sources/missive/backfill.ts';
import { createMissiveLimiter, MissiveClient } from '../../../src/sources/missive/client.ts';
import { createMissiveSource } from '../../../src/sources/missive/index.ts';
import type { SnapshotPayload } from '../../../src/sources/missive/payloads.ts';
import { startMissiveSimulator, type MissiveSimulator, type MvConversation } from '../../../simulators/missive/index.ts';
import { config, logSink } from './helpers.ts';

/** 60 s -> 120 ms and 15 min -> 1.8 s, on the simulator and in our limiter alike. */
const WINDOW_SCALE = 0.002;
/**
 * Our limiter's allowance for the gap between a request leaving and arriving, ms (unscaled). Production
 * uses 1 s; 50 ms was too little on a loaded CI run (one request arrived late enough to make 901 in a
 * simulated 15 minutes).
 */
const WINDOW_MARGIN_MS = 250;

let sim: MissiveSimulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

/** What the token user's `all`, `trashed` and `junked` mailboxes hold together: every readable conversation. */
function backfillable(s: MissiveSimulator): MvConversation[] {
  return s.data().conversations.filter((c) => !c.guest);
}

async function collect(pages: AsyncIterable<BackfillPage>): Promise<BackfillPage[]> {
  const out: BackfillPage[] = [];
  for await (const page of pages) out.push(page);
  return out;
}

describe('Missive backfill', () => {
  it('walks 2,000 conversations inside the budget: <= 5 in flight, <= 300 per minute, <= 900 per 15 minutes', { timeout: 120_000 }, async () => {
    sim = await startMissiveSimulator({ data: { conversations: 2000, maxMessages: 3 }, limits: { windowScale: WINDOW_SCALE } });
    const { log } = logSink('info');
    const source = createMissiveSource(config({ MISSIVE_API_TOKEN: sim.credentials.token, MISSIVE_BASE_URL: sim.credentials.baseUrl }), {
      log,
      rateLimit: { windowScale: WINDOW_SCALE, windowMarginMs: WINDOW_MARGIN_MS },
    });
    const pages = await collect(source.backfill!({ since: new Date(0), log }));

    const requests = sim.requests;
    const api = (r: { path: string }) => r.path.startsWith('/v1/');
    expect(requests.maxConcurrency(api)).toBeLessThanOrEqual(5);
    expect(requests.maxInWindow(60_000 * WINDOW_SCALE, api)).toBeLessThanOrEqual(300);
    expect(requests.maxInWindow(15 * 60_000 * WINDOW_SCALE, api)).toBeLessThanOrEqual(900);
    const limited = requests.entries.filter((r) => r.status === 429);
    expect(limited.length).toBeLessThanOrEqual(1);
    // More requests than two 15-minute windows allow: the walk had to spread over several of them.
    expect(requests.entries.filter(api).length).toBeGreaterThan(2 * 900);

    // Every conversation of both mailboxes once, with all its messages and their bodies.
    const expected = backfillable(sim);
    const events = pages.flatMap((p) => p.events);
    expect(events.map((e) => e.entityKey).sort()).toEqual(expected.map((c) => `conversation:${c.id}`).sort());
    const data = sim.data();
    const messages = new Map(data.messages.map((m) => [m.id, m]));
    for (const event of events) {
      const payload = event.payload as SnapshotPayload;
      const conversation = expected.find((c) => c.id === payload.conversation.id)!;
      expect(payload.messages.map((m) => m.id).sort()).toEqual([...conversation.messageIds].sort());
      for (const m of payload.messages) expect(m.body).toBe(messages.get(m.id)!.body);
      expect(event).toMatchObject({ source: 'missive', type: 'conversation.snapshot', origin: 'backfill' });
    }

    // Bodies came in batches of at most ten ids. (Needs a simulator that accepts the batch form's long
    // path: Fastify's default maxParamLength of 100 answers 414 to three ids or more.)
    const batches = requests.entries.filter((r) => r.path.startsWith('/v1/messages/')).map((r) => decodeURIComponent(r.path.slice('/v1/messages/'.length)).split(','));
    expect(Math.max(...batches.map((b) => b.length))).toBeLessThanOrEqual(10);
    expect(batches.length).toBeLessThan(data.messages.length / 5);

    // Only the last page moves the checkpoint, to the newest activity seen.
    expect(pages.slice(0, -1).every((p) => p.newestUpdate === null)).toBe(true);
    const newest = Math.max(...expected.map((c) => c.lastActivityAt));
    expect(pages.at(-1)!.newestUpdate).toEqual(new Date(newest * 1000));
  });

  it('takes a conversation listed in two mailboxes once, and nothing older than `since`', async () => {
    sim = await startMissiveSimulator({ data: { conversations: 150, maxMessages: 2, guestShare: 0.1 }, quirks: { allIncludesTrash: true } });
    const client = new MissiveClient({ token: sim.credentials.token, baseUrl: sim.credentials.baseUrl, limiter: createMissiveLimiter({ windowMarginMs: 0 }) });
    // With this quirk `all` lists Trash and Spam too, so trashed conversations come from both mailboxes.
    const all = sim.data().conversations.filter((c) => !c.guest).sort((a, b) => b.lastActivityAt - a.lastActivityAt);
    expect(all.some((c) => c.flags[sim!.credentials.userId]?.trashed === true && c.lastActivityAt >= all[60]!.lastActivityAt)).toBe(true);
    const cutoff = all[60]!.lastActivityAt;
    const { log, lines } = logSink('info');
    const pages = await collect(backfillMissive({ client, clock: { now: () => Date.now(), sleep: async () => {} } }, { since: new Date(cutoff * 1000), log }));
    const ids = pages.flatMap((p) => p.events.map((e) => (e.payload as SnapshotPayload).conversation.id));
    // Guest rows are listed but their messages are not readable: skipped with a warning, no event.
    const guests = sim.data().conversations.filter((c) => c.guest && c.lastActivityAt >= cutoff);
    expect(guests.length).toBeGreaterThan(0);
    expect(lines().filter((l) => l.level === 'warn' && String(l.msg).includes('cannot read the messages')).map((l) => l.conversationId).sort()).toEqual(guests.map((c) => c.id).sort());
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(all.filter((c) => c.lastActivityAt >= cutoff).map((c) => c.id).sort());
    // The trashed mailbox was walked too, and stopped at `since` as well.
    const trashedPages = sim.requests.entries.filter((r) => r.path === '/v1/conversations' && r.query.trashed === 'true');
    expect(trashedPages.length).toBeGreaterThan(0);
  });

  it('yields nothing (and moves no checkpoint) when nothing changed since', async () => {
    sim = await startMissiveSimulator({ data: { conversations: 20, maxMessages: 2 } });
    const client = new MissiveClient({ token: sim.credentials.token, baseUrl: sim.credentials.baseUrl, limiter: createMissiveLimiter({ windowMarginMs: 0 }) });
    const { log } = logSink('info');
    const pages = await collect(backfillMissive({ client, clock: { now: () => Date.now(), sleep: async () => {} } }, { since: new Date(Date.now() + 60_000), log }));
    expect(pages).toEqual([]);
  });

  it('throws on a failure and never yields the page that failed; earlier pages keep the checkpoint where it was', async () => {
    sim = await startMissiveSimulator({ data: { conversations: 200, maxMessages: 2 } });
    const client = new MissiveClient({ token: sim.credentials.token, baseUrl: sim.credentials.baseUrl, limiter: createMissiveLimiter({ windowMarginMs: 0 }), maxAttempts: 1 });
    const { log } = logSink('info');
    const yielded: BackfillPage[] = [];
    const run = async () => {
      for await (const page of backfillMissive({ client, clock: { now: () => Date.now(), sleep: async () => {} } }, { since: new Date(0), log })) {
        yielded.push(page);
        sim!.faults.set({ errorRate: 1 });
      }
    };
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectorError);
    expect((err as ConnectorError).code).toBe('CONN_ERR_HTTP_SERVER');
    expect(yielded).toHaveLength(1);
    expect(yielded[0]!.newestUpdate).toBeNull();
    expect(yielded[0]!.events.length).toBeGreaterThan(0);
  });
});
