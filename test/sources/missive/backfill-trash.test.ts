/**
 * The Missive backfill and conversations trashed or restored while inactive (issue 14, item 10).
 * Trash does not move `last_activity_at` (reference U7; the simulator's default), so a walk that stops
 * at `since` never meets a conversation trashed long after its last activity. The backfill walks the
 * token user's Trash whole, list pages only, and snapshots the conversations whose trash state
 * changed since the last run (kept in `${DATA_DIR}/checkpoints/missive-mailboxes.json`).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMissiveLimiter } from '../../../src/sources/missive/client.ts';
import { createMissiveSource, type MissiveSource } from '../../../src/sources/missive/index.ts';
import type { SnapshotPayload } from '../../../src/sources/missive/payloads.ts';
import type { QueueEvent } from '../../../src/model.ts';
import { startMissiveSimulator, type MissiveSimulator, type MvConversation } from '../../../simulators/missive/index.ts';
import { config, logSink } from './helpers.ts';

let sim: MissiveSimulator | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const DAY = 24 * 3600;
const { log } = logSink('warn');

function source(s: MissiveSimulator, dataDir: string): MissiveSource {
  return createMissiveSource(config({ DATA_DIR: dataDir, MISSIVE_API_TOKEN: s.credentials.token, MISSIVE_BASE_URL: s.credentials.baseUrl }), {
    log,
    limiter: createMissiveLimiter({ windowMarginMs: 0 }),
  });
}

async function run(src: MissiveSource, since: Date): Promise<QueueEvent[]> {
  const events: QueueEvent[] = [];
  for await (const page of src.backfill!({ since, log })) events.push(...page.events);
  return events;
}

const everyoneTrashed = (e: QueueEvent) => {
  const users = (e.payload as SnapshotPayload).conversation.users ?? [];
  return users.length > 0 && users.every((u) => u.trashed === true);
};

/** A readable conversation nobody trashed or junked, last active more than two days ago. */
function inactiveConversation(s: MissiveSimulator): MvConversation {
  const now = Date.now() / 1000;
  const found = s
    .data()
    .conversations.find((c) => !c.guest && c.messageIds.length > 0 && c.lastActivityAt < now - 2 * DAY && Object.values(c.flags).every((f) => !f.trashed && !f.junked));
  if (found === undefined) throw new Error('the simulator has no inactive conversation');
  return found;
}

describe('Missive backfill: trash and restore of inactive conversations', () => {
  it('finds a conversation trashed while inactive (and later restored) at the next routine run, asking for list pages only otherwise', async () => {
    sim = await startMissiveSimulator({ seed: 'trash-sweep', data: { conversations: 120, maxMessages: 2 } });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conn-missive-trash-'));
    dirs.push(dataDir);
    const src = source(sim, dataDir);
    const target = inactiveConversation(sim);
    const recent = () => new Date(Date.now() - 300_000); // checkpoint minus overlap: nothing old is in the window

    // The first run records what the Trash holds (a baseline: old trash is the initial/full backfill's).
    expect((await run(src, recent())).filter((e) => e.entityKey === `conversation:${target.id}`)).toEqual([]);
    expect(existsSync(path.join(dataDir, 'checkpoints', 'missive-mailboxes.json'))).toBe(true);

    // Nothing changed: one more run asks for list pages only (no messages), and yields nothing.
    const before = sim.requests.entries.length;
    expect(await run(src, recent())).toEqual([]);
    const asked = sim.requests.entries.slice(before).map((r) => r.path);
    expect(asked.every((p) => p === '/v1/conversations')).toBe(true);
    const trashed = sim.data().conversations.filter((c) => Object.values(c.flags).some((f) => f.trashed)).length;
    // all + junked (windowed: one page each) + the whole Trash (50 a page, plus a last empty-or-short page).
    expect(asked.length).toBeLessThanOrEqual(2 + Math.floor(trashed / 50) + 1);

    // Trashed while inactive: last_activity_at does not move, and the next run still finds it.
    const lastActivity = target.lastActivityAt;
    await sim.trashConversation(target.id);
    expect(sim.conversation(target.id)!.lastActivityAt).toBe(lastActivity);
    const afterTrash = await run(src, recent());
    expect(afterTrash.map((e) => e.entityKey)).toEqual([`conversation:${target.id}`]);
    expect(everyoneTrashed(afterTrash[0]!)).toBe(true);
    expect((afterTrash[0]!.payload as SnapshotPayload).messages.map((m) => m.id).sort()).toEqual([...target.messageIds].sort());

    // Found once: the run after that has nothing to say.
    expect(await run(src, recent())).toEqual([]);

    // Restored while inactive: gone from the Trash, so the next run reads it again, untrashed.
    await sim.restoreConversation(target.id);
    const afterRestore = await run(src, recent());
    expect(afterRestore.map((e) => e.entityKey)).toEqual([`conversation:${target.id}`]);
    expect(everyoneTrashed(afterRestore[0]!)).toBe(false);
    expect(await run(src, recent())).toEqual([]);

    const state = JSON.parse(readFileSync(path.join(dataDir, 'checkpoints', 'missive-mailboxes.json'), 'utf8')) as { mailboxes: Record<string, Record<string, boolean>> };
    expect(state.mailboxes.trashed?.[target.id]).toBeUndefined();
  });

  it('a restart keeps what the Trash held: a restore while the connector was down is found by the first run after it', async () => {
    sim = await startMissiveSimulator({ seed: 'trash-sweep-restart', data: { conversations: 60, maxMessages: 2 } });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conn-missive-trash-'));
    dirs.push(dataDir);
    const target = inactiveConversation(sim);
    const recent = () => new Date(Date.now() - 300_000);
    await run(source(sim, dataDir), recent());
    await sim.trashConversation(target.id);
    expect((await run(source(sim, dataDir), recent())).map((e) => e.entityKey)).toEqual([`conversation:${target.id}`]);
    // Down; restored meanwhile; a new process (a new source object) runs.
    await sim.restoreConversation(target.id);
    const events = await run(source(sim, dataDir), recent());
    expect(events.map((e) => e.entityKey)).toEqual([`conversation:${target.id}`]);
    expect(everyoneTrashed(events[0]!)).toBe(false);
  });
});
