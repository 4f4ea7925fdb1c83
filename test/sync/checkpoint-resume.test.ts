/**
 * Issue 8, checkpoints through the real connector:
 * - a restart resumes from the stored checkpoint minus BACKFILL_OVERLAP_SECONDS (the simulator's
 *   request log shows the `updatedAfter` asked for);
 * - a backfill stopped mid-walk (the connector stopped, or a page that fails for good) leaves the
 *   checkpoint at the last page that was enqueued, never past the one that failed, and the next run
 *   fills the gap: every task ends in the database;
 * - the mirror files data/checkpoints/{source}.json always match the stored checkpoint.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { rfc3339 } from '../../src/sources/teamwork/client.ts';
import { startTeamworkSimulator, type TeamworkSimulator, type TwTask } from '../../simulators/teamwork/index.ts';
import { mirrorMatches, removeTempDirs, startSystem, stopAllSystems, tempDir, waitFor, type System } from '../system/harness.ts';

const HOUR = 3_600_000;
const OVERLAP_SECONDS = 300;
const stops: Array<() => Promise<void>> = [];

afterEach(async () => {
  await stopAllSystems();
  for (const stop of stops.splice(0)) await stop();
});

afterAll(() => removeTempDirs());

async function simulator(tasks: number, spanMs: number): Promise<TeamworkSimulator> {
  const sim = await startTeamworkSimulator({ seed: `resume-${tasks}`, data: { tasks, spanMs }, limits: { perMinute: 1_000_000 }, webhookRetryDelaysMs: [] });
  stops.push(() => sim.stop());
  return sim;
}

const env = (sim: TeamworkSimulator, more: Record<string, string> = {}) => ({
  TEAMWORK_BASE_URL: sim.url,
  TEAMWORK_API_KEY: sim.credentials.apiKey,
  BACKFILL_OVERLAP_SECONDS: String(OVERLAP_SECONDS),
  ...more,
});

/** The `updatedAfter` values the connector asked for, in order. */
const updatedAfterAsked = (sim: TeamworkSimulator) =>
  sim.requests.find((r) => r.path === '/projects/api/v3/tasks.json' && r.query.updatedAfter !== undefined).map((r) => r.query.updatedAfter as string);

async function expectMirror(sys: System): Promise<void> {
  const checkpoint = await sys.db.getCheckpoint('teamwork');
  expect(mirrorMatches(sys.mirror('teamwork'), checkpoint), `mirror ${JSON.stringify(sys.mirror('teamwork'))} vs stored ${JSON.stringify(checkpoint)}`).toBe(true);
}

/** Ids of the simulator's tasks that have no row. */
async function notStored(sys: System, tasks: readonly TwTask[]): Promise<TwTask[]> {
  const out: TwTask[] = [];
  for (const t of tasks) if ((await sys.db.getTask(String(t.id))) === null) out.push(t);
  return out;
}

describe('restart resumes from the checkpoint minus the overlap', () => {
  it('asks Teamwork for updatedAfter = checkpoint - BACKFILL_OVERLAP_SECONDS (- 1 s: the filter is strict)', async () => {
    const sim = await simulator(60, 12 * HOUR);
    const dir = tempDir('conn-sync-restart');
    const first = await startSystem({ dataDir: dir, env: env(sim, { BACKFILL_ON_START: 'true' }) });
    await first.waitBackfillsDone('teamwork', 1);
    await first.waitIdle();
    const checkpoint = await first.db.getCheckpoint('teamwork');
    expect(checkpoint?.lastEventTime).toBeInstanceOf(Date);
    await expectMirror(first);
    await first.stop();

    // While the connector is down, a task changes (no webhook is registered: only the backfill can see it).
    const changed = sim.data().tasks.find((t) => t.status === 'new')!;
    await sim.updateTask(changed.id, { name: 'Changed while the connector was down' });
    sim.requests.clear();

    const second = await startSystem({ dataDir: dir, env: env(sim, { BACKFILL_ON_START: 'true' }) });
    await second.waitBackfillsDone('teamwork', 1);
    await second.waitIdle();
    const resumeFrom = new Date(checkpoint!.lastEventTime!.getTime() - OVERLAP_SECONDS * 1000 - 1000);
    expect(updatedAfterAsked(sim)[0]).toBe(rfc3339(resumeFrom));
    const deletedAfter = sim.requests.find((r) => r.query.deletedAfter !== undefined)[0]?.query.deletedAfter;
    expect(deletedAfter).toBe(rfc3339(resumeFrom));
    expect((await second.db.getTask(String(changed.id)))?.title).toBe('Changed while the connector was down');
    const moved = await second.db.getCheckpoint('teamwork');
    expect(moved!.lastEventTime!.getTime()).toBeGreaterThan(checkpoint!.lastEventTime!.getTime());
    await expectMirror(second);
  });
});

describe('a backfill that stops mid-walk resumes without a gap', () => {
  // 1,200 tasks changed within the window: the walk takes at least three pages of 500.
  const TASKS = 1200;

  /**
   * After an interrupted walk: the checkpoint lies before the newest task (the walk did stop), every
   * task changed before the checkpoint is stored (nothing below it was skipped) and every task not
   * stored changed at or after it (the checkpoint never passed a page that was not enqueued).
   */
  async function expectNoGapBelowCheckpoint(sys: System, sim: TeamworkSimulator): Promise<Date> {
    const checkpoint = (await sys.db.getCheckpoint('teamwork'))?.lastEventTime;
    expect(checkpoint).toBeInstanceOf(Date);
    const live = sim.data().tasks.filter((t) => t.status !== 'deleted');
    expect(checkpoint!.getTime()).toBeLessThan(Math.max(...live.map((t) => t.updatedAt)));
    const missing = await notStored(sys, sim.data().tasks);
    expect(missing.length, 'tasks the interrupted walk had not reached').toBeGreaterThan(0);
    expect(missing.filter((t) => t.status === 'deleted'), 'deleted tasks (their pass ran first and completed)').toEqual([]);
    expect(missing.filter((t) => t.updatedAt < checkpoint!.getTime()).map((t) => t.id), 'tasks below the checkpoint that were not stored').toEqual([]);
    await expectMirror(sys);
    return checkpoint!;
  }

  it('the connector stopped during the walk: the restart fills the gap', async () => {
    const sim = await simulator(TASKS, 12 * HOUR);
    const dir = tempDir('conn-sync-crash');
    const first = await startSystem({ dataDir: dir, env: env(sim) });
    let stopping: Promise<void> | null = null;
    first.connector.lifecycle.on('backfill:page', ({ newestUpdate }) => {
      // The first page of updates is enqueued and checkpointed: hold the next page's request in the
      // simulator and stop the connector while it waits (its abort cuts the request).
      if (newestUpdate === null || stopping !== null) return;
      sim.faults.set({ latencyMs: 10_000 });
      stopping = first.stop();
    });
    await first.connector.reconcile();
    await waitFor('the connector to stop', () => stopping !== null);
    await stopping;
    sim.faults.reset();
    expect(first.lines.some((l) => l.msg === 'backfill done')).toBe(false);

    // Restart without a start-up backfill: the queue hands out what was enqueued before the stop.
    const second = await startSystem({ dataDir: dir, env: env(sim) });
    await second.waitIdle();
    const checkpoint = await expectNoGapBelowCheckpoint(second, sim);

    sim.requests.clear();
    await second.connector.reconcile();
    await second.waitIdle(30_000);
    expect(updatedAfterAsked(sim)[0]).toBe(rfc3339(new Date(checkpoint.getTime() - OVERLAP_SECONDS * 1000 - 1000)));
    expect(await notStored(second, sim.data().tasks)).toEqual([]);
    const newest = Math.max(...sim.data().tasks.filter((t) => t.status !== 'deleted').map((t) => t.updatedAt));
    expect((await second.db.getCheckpoint('teamwork'))?.lastEventTime?.getTime()).toBe(newest);
    await expectMirror(second);
  }, 60_000);

  it('a page that fails for good stops the run at the previous page; the next run fills the gap', async () => {
    const sim = await simulator(TASKS, 12 * HOUR);
    const sys = await startSystem({ env: env(sim) });
    let failing = false;
    sys.connector.lifecycle.on('backfill:page', ({ newestUpdate }) => {
      if (newestUpdate === null || failing) return;
      failing = true;
      sim.faults.set({ errorRate: 1 });
    });
    await sys.connector.reconcile();
    expect(failing).toBe(true);
    expect(sys.counters['backfill:failed']).toBe(1);
    expect(sim.requests.find((r) => r.status === 503).length).toBeGreaterThan(0);
    await sys.waitIdle();
    await expectNoGapBelowCheckpoint(sys, sim);

    sim.faults.reset();
    await sys.connector.reconcile();
    expect(sys.counters['backfill:done']).toBe(1);
    await sys.waitIdle(30_000);
    expect(await notStored(sys, sim.data().tasks)).toEqual([]);
    await expectMirror(sys);
  }, 60_000);
});
