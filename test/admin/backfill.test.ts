/**
 * The backfill admin action on the real sources against the simulators, into a real file queue and
 * SQLite checkpoints: what it refuses, what it enqueues, where the checkpoints end, and that one
 * failing source does not stop the other.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMissiveSimulator, startTeamworkSimulator, type MissiveSimulator, type TeamworkSimulator } from '../../simulators/index.ts';
import { backfillSources, chooseBackfillSources } from '../../src/admin/backfill.ts';
import { renderBackfillSummary } from '../../src/admin/render.ts';
import { openDatabase, openQueue } from '../../src/admin/resources.ts';
import { UsageError } from '../../src/admin/usage-error.ts';
import { parseConfig, type Config } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import type { Queue } from '../../src/queue/queue.ts';
import { createSources } from '../../src/sources/index.ts';
import { CheckpointStore } from '../../src/sync/checkpoints.ts';
import { logSink } from './helpers.ts';

let teamwork: TeamworkSimulator;
let missive: MissiveSimulator;
const opened: Array<Queue | Database> = [];
const dirs: string[] = [];

beforeAll(async () => {
  [teamwork, missive] = await Promise.all([startTeamworkSimulator({ seed: 'admin-backfill' }), startMissiveSimulator({ seed: 'admin-backfill' })]);
});
afterAll(async () => {
  await Promise.all([teamwork.stop(), missive.stop()]);
});
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function config(extra: Record<string, string> = {}): Config {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-admin-backfill-'));
  dirs.push(dir);
  return parseConfig({
    DATA_DIR: dir,
    TEAMWORK_BASE_URL: teamwork.credentials.baseUrl,
    TEAMWORK_API_KEY: teamwork.credentials.apiKey,
    MISSIVE_BASE_URL: missive.credentials.baseUrl,
    MISSIVE_API_TOKEN: missive.credentials.token,
    BACKFILL_INITIAL_HOURS: String(40 * 24),
    ...extra,
  });
}

async function harness(cfg: Config) {
  const { log } = logSink('warn');
  const queue = await openQueue(cfg, log);
  opened.push(queue);
  const db = await openDatabase(cfg, log);
  opened.push(db);
  const deps = { queue, checkpoints: new CheckpointStore(db, cfg.checkpointDir), lifecycle: new Lifecycle(), log, overlapSeconds: cfg.BACKFILL_OVERLAP_SECONDS, initialHours: cfg.BACKFILL_INITIAL_HOURS };
  return { sources: createSources(cfg, { log }), queue, db, deps };
}

describe('chooseBackfillSources', () => {
  it('refuses contradictions, future times, unknown and unconfigured sources; skips unconfigured ones by default', async () => {
    const { sources } = await harness(config({ MISSIVE_API_TOKEN: '' }));
    expect(() => chooseBackfillSources(sources, { since: new Date('2025-01-01'), full: true })).toThrow(/contradict/);
    expect(() => chooseBackfillSources(sources, { since: new Date(Date.now() + 60_000) })).toThrow(/in the future/);
    expect(() => chooseBackfillSources(sources, { sources: ['missive'] })).toThrow(new UsageError('missive: backfill needs its API; set MISSIVE_API_TOKEN'));
    const chosen = chooseBackfillSources(sources, {});
    expect(chosen.run.map((s) => s.name)).toEqual(['teamwork']);
    expect(chosen.skipped.map((s) => s.name)).toEqual(['missive']);
    const none = await harness(config({ MISSIVE_API_TOKEN: '', TEAMWORK_API_KEY: '' }));
    expect(() => chooseBackfillSources(none.sources, {})).toThrow(/no source has API credentials/);
  });
});

describe('backfillSources', () => {
  it('enqueues every source in turn, reports progress per page, and moves the checkpoints', async () => {
    const cfg = config();
    const { sources, queue, db, deps } = await harness(cfg);
    const started: string[] = [];
    const pages: Array<{ source: string; events: number }> = [];
    const report = await backfillSources(sources, deps, {
      onStart: (source) => started.push(source),
      onPage: (progress) => pages.push({ source: progress.source, events: progress.events }),
    });
    expect(started).toEqual(['teamwork', 'missive']);
    expect(report.aborted).toBe(false);
    expect(report.outcomes.map((o) => [o.source, o.status])).toEqual([
      ['teamwork', 'done'],
      ['missive', 'done'],
    ]);
    const stats = await queue.stats();
    expect(stats.pending).toBe(report.events);
    expect(report.events).toBeGreaterThan(100);
    // Progress is cumulative per source and ends at the source's total.
    const lastTeamwork = pages.filter((p) => p.source === 'teamwork').at(-1);
    const done = report.outcomes[0];
    expect(done?.status === 'done' && lastTeamwork?.events === done.result.events).toBe(true);
    const checkpoint = await db.getCheckpoint('teamwork');
    expect(checkpoint?.lastEventTime?.getTime()).toBeGreaterThan(Date.now() - 40 * 24 * 3600 * 1000);
    expect(JSON.parse(readFileSync(path.join(cfg.checkpointDir, 'missive.json'), 'utf8'))).toMatchObject({ source: 'missive' });
    expect(renderBackfillSummary(report, { state: 'stopped' }).at(-1)).toBe(`${report.events.toLocaleString('en-US')} events enqueued; no worker is running on this queue: \`npm start\` (or \`npm run work\`) processes them`);

    // A second run starts at the checkpoint minus the overlap and finds (almost) nothing new.
    const again = await backfillSources(sources, deps, { sources: ['teamwork'] });
    const second = again.outcomes[0];
    expect(second?.status).toBe('done');
    if (second?.status === 'done') expect(second.result.since.getTime()).toBe((checkpoint?.lastEventTime?.getTime() ?? 0) - cfg.BACKFILL_OVERLAP_SECONDS * 1000);
  });

  it('a source that fails is reported with its error, and the next one still runs', async () => {
    const { sources, queue, db, deps } = await harness(config({ TEAMWORK_API_KEY: 'wrong-key' }));
    const report = await backfillSources(sources, deps);
    const [tw, mv] = report.outcomes;
    expect(tw).toMatchObject({ source: 'teamwork', status: 'failed', error: { code: 'CONN_ERR_HTTP_AUTH' } });
    expect(mv).toMatchObject({ source: 'missive', status: 'done' });
    expect(await db.getCheckpoint('teamwork')).toBeNull();
    expect((await queue.stats()).pending).toBe(report.events);
    expect(renderBackfillSummary(report, { state: 'running', pid: 1, host: 'h', since: null }).join('\n')).toContain('teamwork: FAILED after 0 events: CONN_ERR_HTTP_AUTH');
  });

  it('stops when the signal aborts, leaving the rest skipped', async () => {
    const { sources, deps } = await harness(config());
    const controller = new AbortController();
    const report = await backfillSources(sources, deps, { signal: controller.signal, onPage: () => controller.abort(new Error('interrupted')) });
    expect(report.aborted).toBe(true);
    expect(report.outcomes.map((o) => [o.source, o.status])).toEqual([
      ['teamwork', 'failed'],
      ['missive', 'skipped'],
    ]);
  });
});
