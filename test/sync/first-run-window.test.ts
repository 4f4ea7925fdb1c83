/**
 * Issue 8, the first run: with no checkpoint, the start-up backfill reaches back exactly
 * BACKFILL_INITIAL_HOURS. Items changed inside the window are fetched and stored; older ones are not.
 * Run through the real connector (start-up backfill of `startConnector`) against simulators whose data
 * spreads over two days; then the checkpoint and its mirror file agree.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startMissiveSimulator } from '../../simulators/missive/index.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { mirrorMatches, removeTempDirs, startSystem, stopAllSystems } from '../system/harness.ts';

const HOUR = 3_600_000;
const WINDOW_HOURS = 24;
/** Items this close to the window's edge are not asserted either way (the edge moves while we start). */
const EDGE_MS = 5_000;
const stops: Array<() => Promise<void>> = [];

afterEach(async () => {
  await stopAllSystems();
  for (const stop of stops.splice(0)) await stop();
});

afterAll(() => removeTempDirs());

describe('first run: no checkpoint -> since = now - BACKFILL_INITIAL_HOURS', () => {
  it('Teamwork: tasks changed inside the window are stored, older ones are not fetched', async () => {
    const sim = await startTeamworkSimulator({ seed: 'first-run', data: { tasks: 120, spanMs: 2 * WINDOW_HOURS * HOUR }, limits: { perMinute: 100_000 } });
    stops.push(() => sim.stop());
    const before = Date.now();
    const sys = await startSystem({ env: { TEAMWORK_BASE_URL: sim.url, TEAMWORK_API_KEY: sim.credentials.apiKey, BACKFILL_ON_START: 'true', BACKFILL_INITIAL_HOURS: String(WINDOW_HOURS) } });
    const after = Date.now();
    await sys.waitBackfillsDone('teamwork', 1);
    expect((await sys.waitIdle()).deadLettered).toBe(0);

    // The API was asked for changes since now - 24 h (one second earlier: the filter is strict).
    const lists = sim.requests.find((r) => r.path === '/projects/api/v3/tasks.json');
    const updatedAfter = lists.map((r) => r.query.updatedAfter).filter((v): v is string => v !== undefined);
    const deletedAfter = lists.map((r) => r.query.deletedAfter).filter((v): v is string => v !== undefined);
    for (const asked of [updatedAfter[0], deletedAfter[0]]) {
      expect(asked).toBeDefined();
      const ms = Date.parse(asked!);
      expect(ms).toBeGreaterThanOrEqual(before - WINDOW_HOURS * HOUR - 2_000);
      expect(ms).toBeLessThanOrEqual(after - WINDOW_HOURS * HOUR);
    }

    const inside: string[] = [];
    const outside: string[] = [];
    for (const task of sim.data().tasks) {
      if (task.updatedAt >= after - WINDOW_HOURS * HOUR + EDGE_MS) inside.push(String(task.id));
      else if (task.updatedAt < before - WINDOW_HOURS * HOUR - EDGE_MS) outside.push(String(task.id));
    }
    expect(inside.length).toBeGreaterThan(10);
    expect(outside.length).toBeGreaterThan(10);
    const missing = [];
    for (const id of inside) if ((await sys.db.getTask(id)) === null) missing.push(id);
    expect(missing, 'tasks changed inside the window that were not stored').toEqual([]);
    const fetched = [];
    for (const id of outside) if ((await sys.db.getTask(id)) !== null) fetched.push(id);
    expect(fetched, 'tasks changed before the window that were stored').toEqual([]);
    // Deleted tasks inside the window come in through the deletedAfter pass, marked deleted.
    const deletedInside = sim.data().tasks.filter((t) => t.status === 'deleted' && inside.includes(String(t.id)));
    for (const t of deletedInside) expect(await sys.db.getTask(String(t.id))).toMatchObject({ deleted: true });

    const checkpoint = await sys.db.getCheckpoint('teamwork');
    const newest = Math.max(...sim.data().tasks.filter((t) => t.status !== 'deleted').map((t) => t.updatedAt));
    expect(checkpoint?.lastEventTime?.getTime()).toBe(newest);
    expect(mirrorMatches(sys.mirror('teamwork'), checkpoint)).toBe(true);
  });

  it('Missive: conversations active inside the window are stored, older ones are not fetched', async () => {
    const sim = await startMissiveSimulator({ seed: 'first-run', data: { conversations: 30, spanMs: 2 * WINDOW_HOURS * HOUR } });
    stops.push(() => sim.stop());
    const before = Date.now();
    const sys = await startSystem({ env: { MISSIVE_BASE_URL: sim.credentials.baseUrl, MISSIVE_API_TOKEN: sim.credentials.token, BACKFILL_ON_START: 'true', BACKFILL_INITIAL_HOURS: String(WINDOW_HOURS) } });
    const after = Date.now();
    await sys.waitBackfillsDone('missive', 1);
    expect((await sys.waitIdle()).deadLettered).toBe(0);

    const data = sim.data();
    const me = sim.credentials.userId;
    const inside: string[] = [];
    const outside: string[] = [];
    for (const c of data.conversations) {
      // A conversation the token's user may not read (a guest row) has nothing to mirror; one that user
      // marked as spam is the next test's subject.
      if (c.guest || !c.userIds.includes(me) || c.flags[me]?.junked === true) continue;
      const at = c.lastActivityAt * 1000;
      if (at >= after - WINDOW_HOURS * HOUR + EDGE_MS) inside.push(...c.messageIds);
      else if (at < before - WINDOW_HOURS * HOUR - EDGE_MS) outside.push(...c.messageIds);
    }
    expect(inside.length).toBeGreaterThan(5);
    expect(outside.length).toBeGreaterThan(5);
    const missing = [];
    for (const id of inside) if ((await sys.db.getEmail(id)) === null) missing.push(id);
    expect(missing, 'emails of conversations active inside the window that were not stored').toEqual([]);
    const fetched = [];
    for (const id of outside) if ((await sys.db.getEmail(id)) !== null) fetched.push(id);
    expect(fetched, 'emails of conversations last active before the window that were stored').toEqual([]);

    // The checkpoint is the newest activity the walk saw (conversations junked by the token's user aside:
    // whether the walk sees those is the next test's subject).
    const checkpoint = await sys.db.getCheckpoint('missive');
    const readable = data.conversations.filter((c) => !c.guest && c.userIds.includes(me));
    const newestSeen = Math.max(...readable.filter((c) => c.flags[me]?.junked !== true).map((c) => c.lastActivityAt * 1000));
    const newestAll = Math.max(...readable.map((c) => c.lastActivityAt * 1000));
    expect(checkpoint!.lastEventTime!.getTime()).toBeGreaterThanOrEqual(newestSeen);
    expect(checkpoint!.lastEventTime!.getTime()).toBeLessThanOrEqual(newestAll);
    expect(mirrorMatches(sys.mirror('missive'), checkpoint)).toBe(true);
  });

  it('Missive: a conversation the token user marked as spam (junked) is backfilled too', async () => {
    // Reference missive.md §2.2/§2.8: per-user flags decide what lists return, and whether `all` includes
    // Spam is not documented; the simulator takes the pessimistic reading (it does not). The other users
    // of such a conversation still work in it, so a missed webhook for it must be recovered as well.
    const sim = await startMissiveSimulator({ seed: 'first-run', data: { conversations: 30, spanMs: 2 * WINDOW_HOURS * HOUR } });
    stops.push(() => sim.stop());
    const sys = await startSystem({ env: { MISSIVE_BASE_URL: sim.credentials.baseUrl, MISSIVE_API_TOKEN: sim.credentials.token, BACKFILL_ON_START: 'true', BACKFILL_INITIAL_HOURS: String(WINDOW_HOURS) } });
    await sys.waitBackfillsDone('missive', 1);
    await sys.waitIdle();
    const me = sim.credentials.userId;
    const junked = sim
      .data()
      .conversations.filter((c) => !c.guest && c.flags[me]?.junked === true && c.lastActivityAt * 1000 > Date.now() - WINDOW_HOURS * HOUR + 60_000);
    expect(junked.length).toBeGreaterThan(0);
    const missing = [];
    for (const c of junked) for (const id of c.messageIds) if ((await sys.db.getEmail(id)) === null) missing.push(id);
    expect(missing, 'emails of junked conversations inside the window that the backfill did not fetch').toEqual([]);
  });
});
