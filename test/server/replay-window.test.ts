/**
 * The replay window (src/server/replay-window.ts) on its own and at the door: a byte-identical
 * delivery already accepted is recognised within the window, across a restart, per source; an expired
 * one is forgotten; a delivery whose enqueue failed is not remembered, so its retry is enqueued.
 * Real file queue, real app (`inject`), real files in a temp directory.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import { createQueue } from '../../src/queue/create-queue.ts';
import { buildApp } from '../../src/server/app.ts';
import { REPLAY_WINDOW_FILE, ReplayWindow } from '../../src/server/replay-window.ts';
import { createMissiveSource } from '../../src/sources/missive/index.ts';
import { hmacSha256Hex } from '../../src/sources/signature.ts';
import { HOUR } from '../../src/retry-policy.ts';

const log = createLogger({ level: 'silent', console: false });
const dirs: string[] = [];
const windows: ReplayWindow[] = [];

afterEach(async () => {
  for (const w of windows.splice(0)) await w.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'replay-window-'));
  dirs.push(dir);
  return dir;
}

/** A clock the test moves. */
function clock(start = Date.parse('2026-11-28T12:00:00Z')) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

async function openWindow(file: string, now: () => number, options: { windowMs?: number; maxEntries?: number } = {}): Promise<ReplayWindow> {
  const w = await ReplayWindow.open({ file, windowMs: options.windowMs ?? 24 * HOUR, maxEntries: options.maxEntries ?? 500_000, log, now });
  windows.push(w);
  return w;
}

/** Accepts a delivery the way the door does: check, then (events durable) accepted(). */
function accept(w: ReplayWindow, source: string, body: string): void {
  const check = w.check(source, Buffer.from(body));
  if (check.duplicate) throw new Error(`already accepted: ${body}`);
  check.accepted();
}

describe('ReplayWindow', () => {
  it('a source may narrow the window for one delivery (replayWindowMs), or turn it off with 0', async () => {
    const c = clock();
    const w = await openWindow(path.join(tempDir(), REPLAY_WINDOW_FILE), c.now);
    accept(w, 'missive', '{"label":"A"}');
    c.advance(20 * 60_000);
    expect(w.check('missive', Buffer.from('{"label":"A"}'), { windowMs: 15 * 60_000 }).duplicate).toBe(false);
    expect(w.check('missive', Buffer.from('{"label":"A"}'), { windowMs: 0 }).duplicate).toBe(false);
    expect(w.check('missive', Buffer.from('{"label":"A"}'), { windowMs: 30 * 60_000 }).duplicate).toBe(true);
    expect(w.check('missive', Buffer.from('{"label":"A"}')).duplicate).toBe(true);
  });

  it('a delivery with a window of 0 is not remembered; the event name is part of the key', async () => {
    const c = clock();
    const w = await openWindow(path.join(tempDir(), REPLAY_WINDOW_FILE), c.now);
    const off = w.check('missive', Buffer.from('{"label":"B"}'), { windowMs: 0 });
    expect(off.duplicate).toBe(false);
    if (!off.duplicate) off.accepted();
    expect(w.check('missive', Buffer.from('{"label":"B"}')).duplicate).toBe(false);
    const updated = w.check('teamwork', Buffer.from('{"task":{"id":1}}'), { eventType: 'TASK.UPDATED' });
    if (!updated.duplicate) updated.accepted();
    expect(w.check('teamwork', Buffer.from('{"task":{"id":1}}'), { eventType: 'TASK.UPDATED' }).duplicate).toBe(true);
    expect(w.check('teamwork', Buffer.from('{"task":{"id":1}}'), { eventType: 'TASK.DELETED' }).duplicate).toBe(false);
  });

  it('recognises the same bytes from the same source, not from the other source, and not different bytes', async () => {
    const c = clock();
    const w = await openWindow(path.join(tempDir(), REPLAY_WINDOW_FILE), c.now);
    accept(w, 'missive', '{"a":1}');
    c.advance(90_000);
    const again = w.check('missive', Buffer.from('{"a":1}'));
    expect(again).toMatchObject({ duplicate: true, acceptedAt: new Date('2026-11-28T12:00:00Z'), note: 'duplicate of a delivery accepted at 2026-11-28T12:00:00.000Z; not enqueued again' });
    expect(w.check('teamwork', Buffer.from('{"a":1}')).duplicate).toBe(false);
    expect(w.check('missive', Buffer.from('{"a":1} ')).duplicate).toBe(false);
  });

  it('survives a restart: a new instance on the same file remembers, after its writes were flushed', async () => {
    const c = clock();
    const file = path.join(tempDir(), REPLAY_WINDOW_FILE);
    const first = await openWindow(file, c.now);
    for (let i = 0; i < 50; i++) accept(first, 'teamwork', `{"n":${i}}`);
    await first.close();
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(50);
    c.advance(3 * HOUR);
    const second = await openWindow(file, c.now);
    expect(second.size).toBe(50);
    expect(second.check('teamwork', Buffer.from('{"n":7}')).duplicate).toBe(true);
    expect(second.check('teamwork', Buffer.from('{"n":50}')).duplicate).toBe(false);
  });

  it('forgets an entry once it leaves the window, in memory and on reopening', async () => {
    const c = clock();
    const file = path.join(tempDir(), REPLAY_WINDOW_FILE);
    const w = await openWindow(file, c.now, { windowMs: 2 * HOUR });
    accept(w, 'missive', 'old');
    c.advance(HOUR);
    accept(w, 'missive', 'newer');
    c.advance(HOUR + 1000);
    expect(w.check('missive', Buffer.from('old')).duplicate).toBe(false);
    expect(w.check('missive', Buffer.from('newer')).duplicate).toBe(true);
    await w.close();
    const reopened = await openWindow(file, c.now, { windowMs: 2 * HOUR });
    expect(reopened.size).toBe(1);
    expect(reopened.check('missive', Buffer.from('old')).duplicate).toBe(false);
  });

  it('keeps at most maxEntries, forgetting the oldest first', async () => {
    const c = clock();
    const w = await openWindow(path.join(tempDir(), REPLAY_WINDOW_FILE), c.now, { maxEntries: 1000 });
    for (let i = 0; i < 1500; i++) accept(w, 'missive', `body-${i}`);
    expect(w.size).toBe(1000);
    expect(w.check('missive', Buffer.from('body-499')).duplicate).toBe(false);
    expect(w.check('missive', Buffer.from('body-500')).duplicate).toBe(true);
  });

  it('compacts the file once dead lines outweigh live ones, and reads past a torn last line', async () => {
    const c = clock();
    const file = path.join(tempDir(), REPLAY_WINDOW_FILE);
    const w = await openWindow(file, c.now, { windowMs: HOUR });
    for (let i = 0; i < 1500; i++) accept(w, 'missive', `early-${i}`);
    await w.close();
    c.advance(2 * HOUR); // all 1,500 expired
    const later = await openWindow(file, c.now, { windowMs: HOUR });
    accept(later, 'missive', 'late');
    await later.close();
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);

    appendFileSync(file, '0123456789abcdef'); // a crash in the middle of an append
    const afterCrash = await openWindow(file, c.now, { windowMs: HOUR });
    expect(afterCrash.check('missive', Buffer.from('late')).duplicate).toBe(true);
    accept(afterCrash, 'missive', 'after the crash');
    await afterCrash.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines.filter((l) => /^[0-9a-f]{32} \d+$/.test(l))).toHaveLength(2);
    writeFileSync(file, 'not a line\n', { flag: 'a' });
    const tolerant = await openWindow(file, c.now, { windowMs: HOUR });
    expect(tolerant.size).toBe(2);
  });
});

describe('the replay window at the door', () => {
  it('a delivery whose enqueue failed (503) is not remembered: its retry is enqueued', async () => {
    const dir = tempDir();
    const config = parseConfig({ DATA_DIR: path.join(dir, 'data'), MISSIVE_WEBHOOK_SECRET: 'door-secret' });
    const window = await openWindow(path.join(config.queueDir, REPLAY_WINDOW_FILE), Date.now);
    const sources = [createMissiveSource(config, { log })];
    const body = JSON.stringify({ rule: { type: 'label_change' }, conversation: { id: 'c-503' }, latest_message: { id: 'm-503' } });
    const signature = `sha256=${hmacSha256Hex('door-secret', body)}`;
    const post = (app: Awaited<ReturnType<typeof buildApp>>) => app.inject({ method: 'POST', url: '/webhooks/missive', headers: { 'content-type': 'application/json', 'x-hook-signature': signature }, payload: body });

    const lifecycle = new Lifecycle(() => {});
    const broken = await createQueue(config, { log, lifecycle });
    const first = await buildApp({ log, queue: broken, sources, lifecycle, maxBodyBytes: 1 << 20, replayWindow: window });
    await broken.close(); // the queue cannot be written: the next delivery is answered 503
    const refused = await post(first);
    expect(refused.statusCode).toBe(503);
    expect(window.size).toBe(0);
    await first.close();

    const queue = await createQueue(config, { log, lifecycle });
    const second = await buildApp({ log, queue, sources, lifecycle, maxBodyBytes: 1 << 20, replayWindow: window });
    const retried = await post(second);
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toMatchObject({ ok: true, events: 1 });
    expect((await queue.stats()).pending).toBe(1);
    const duplicate = await post(second);
    expect(duplicate.json()).toMatchObject({ ok: true, events: 0, duplicate: true, note: expect.stringMatching(/^duplicate of a delivery accepted at /) });
    expect((await queue.stats()).pending).toBe(1);
    const metrics = await second.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('connector_deliveries_duplicate_total{source="missive"} 1');
    await second.close();
    await queue.close();
  });
});
