/**
 * With a shared queue, an operator's backfill and the leader's reconciliation of the same source never
 * overlap (issue 16): both hold the source's run lease `backfill:<source>` in the engine (the real
 * Redis here). The operator's `connector backfill` says who holds it and waits, then starts from the
 * checkpoint as the reconciliation left it; the reconciliation, finding an operator's backfill running,
 * waits for it in turn. The Teamwork simulator's request log shows that nothing was asked meanwhile.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/index.ts';
import { backfillSources } from '../../src/admin/backfill.ts';
import { openDatabase, openQueue } from '../../src/admin/resources.ts';
import { parseConfig, type Config } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import type { SourceName } from '../../src/model.ts';
import type { BullQueue } from '../../src/queue/bull-queue.ts';
import type { Queue } from '../../src/queue/queue.ts';
import { createSources } from '../../src/sources/index.ts';
import { CheckpointStore } from '../../src/sync/checkpoints.ts';
import { RedisLeases } from '../../src/sync/redis-leases.ts';
import { Reconciler } from '../../src/sync/reconciler.ts';
import { spawnConnector } from '../helpers/connector-process.ts';
import { TEST_REDIS_URL, requireRedis } from '../helpers/services.ts';
import { logSink } from './helpers.ts';

const redis = await requireRedis();
const LISTING = '/projects/api/v3/tasks.json';
const WORKER = 'worker@web-2:4411#9f3c';
const OPERATOR = 'backfill@ops:77#00aa';

let teamwork: TeamworkSimulator;
const closers: Array<() => Promise<unknown>> = [];
const dirs: string[] = [];

beforeAll(async () => {
  teamwork = await startTeamworkSimulator({ seed: 'backfill-lease', data: { tasks: 20 }, limits: { perMinute: 100_000 } });
});
afterAll(async () => {
  await teamwork.stop();
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function config(prefix: string): Config {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-backfill-lease-'));
  dirs.push(dir);
  return parseConfig({
    DATA_DIR: dir,
    LOG_DIR: path.join(dir, 'logs'),
    QUEUE_BACKEND: 'redis',
    REDIS_URL: TEST_REDIS_URL,
    REDIS_DURABILITY: 'relaxed',
    QUEUE_PREFIX: prefix,
    RECONCILE_LEASE_SECONDS: '2',
    TEAMWORK_BASE_URL: teamwork.credentials.baseUrl,
    TEAMWORK_API_KEY: teamwork.credentials.apiKey,
    BACKFILL_INITIAL_HOURS: String(40 * 24),
  });
}

async function harness(cfg: Config) {
  const { log, lines } = logSink('info');
  const queue = await openQueue(cfg, log);
  closers.push(async () => {
    await (queue as BullQueue).obliterate();
    await queue.close();
  });
  const db = await openDatabase(cfg, log);
  closers.push(() => db.close());
  const leases = new RedisLeases(TEST_REDIS_URL, cfg.QUEUE_PREFIX, log);
  closers.push(() => leases.close());
  const deps = { queue, checkpoints: new CheckpointStore(db, cfg.checkpointDir), lifecycle: new Lifecycle(), log, overlapSeconds: cfg.BACKFILL_OVERLAP_SECONDS, initialHours: cfg.BACKFILL_INITIAL_HOURS };
  return { sources: createSources(cfg, { log }), queue: queue as Queue, db: db as Database, deps, leases, lines };
}

const listingRequestsSince = (at: number) => teamwork.requests.find((r) => r.path === LISTING && r.startedAt >= at);

describe.skipIf(!redis.available)('backfill and reconciliation hold the run lease of their source', () => {
  it("an operator's backfill names the running reconciliation, waits for it, then starts from the checkpoint it left", async () => {
    const cfg = config(`t${randomUUID().slice(0, 8)}`);
    const { sources, deps, leases } = await harness(cfg);
    // The leader worker is reconciling teamwork.
    expect(await leases.acquire('backfill:teamwork', WORKER, 60_000)).toEqual({ held: true });
    const startedAt = Date.now();
    const waits: Array<[SourceName, string | null]> = [];
    const starts: Date[] = [];
    const report = backfillSources(sources, deps, {
      sources: ['teamwork'],
      lease: { leases, holder: OPERATOR, ttlMs: 2_000 },
      onWaiting: (source, holder) => waits.push([source, holder]),
      onStart: (_source, since) => starts.push(since),
    });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(waits).toEqual([['teamwork', WORKER]]);
    expect(starts).toEqual([]);
    expect(listingRequestsSince(startedAt), 'asked Teamwork while the reconciliation ran').toEqual([]);

    // The reconciliation moves the checkpoint and ends.
    const reconciled = new Date(Date.now() - 3_600_000);
    await deps.checkpoints.advance('teamwork', reconciled, null);
    const releasedAt = Date.now();
    expect(await leases.release('backfill:teamwork', WORKER)).toBe(true);
    const done = await report;
    expect(done.outcomes).toMatchObject([{ source: 'teamwork', status: 'done' }]);
    expect(starts).toEqual([new Date(reconciled.getTime() - cfg.BACKFILL_OVERLAP_SECONDS * 1000)]);
    const asked = listingRequestsSince(startedAt);
    expect(asked.length).toBeGreaterThan(0);
    expect(Math.min(...asked.map((r) => r.startedAt))).toBeGreaterThanOrEqual(releasedAt);
    expect(await leases.holder('backfill:teamwork')).toBeNull(); // released at the end
  });

  it('stops waiting on Ctrl-C, saying whom it waited for', async () => {
    const cfg = config(`t${randomUUID().slice(0, 8)}`);
    const { sources, deps, leases } = await harness(cfg);
    await leases.acquire('backfill:teamwork', WORKER, 60_000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('interrupted')), 500);
    const report = await backfillSources(sources, deps, { sources: ['teamwork'], lease: { leases, holder: OPERATOR, ttlMs: 2_000 }, signal: controller.signal });
    expect(report.aborted).toBe(true);
    expect(report.outcomes).toEqual([{ source: 'teamwork', status: 'skipped', reason: `interrupted while waiting for ${WORKER} to finish backfilling teamwork` }]);
  });

  it("the leader's reconciliation waits for an operator's backfill of the same source, with one INFO line", async () => {
    const cfg = config(`t${randomUUID().slice(0, 8)}`);
    const { sources, deps, leases, lines } = await harness(cfg);
    await leases.acquire('backfill:teamwork', OPERATOR, 60_000);
    const startedAt = Date.now();
    const reconciler = new Reconciler({ sources, deps, log: deps.log, intervalMs: 0, onStart: true, runLease: { leases, holder: WORKER, ttlMs: 2_000 } });
    closers.push(() => reconciler.stop());
    reconciler.start();
    await new Promise((r) => setTimeout(r, 1_500));
    const waiting = lines.filter((l) => /^teamwork reconciliation waits/.test(l.msg));
    expect(waiting).toHaveLength(1);
    expect(waiting[0]).toMatchObject({ level: 'info', holder: OPERATOR, msg: `teamwork reconciliation waits: backfill:teamwork is held by an operator's \`connector backfill\` (${OPERATOR}); it runs as soon as that ends` });
    expect(listingRequestsSince(startedAt)).toEqual([]);
    const releasedAt = Date.now();
    await leases.release('backfill:teamwork', OPERATOR);
    await reconciler.runAll();
    const asked = listingRequestsSince(startedAt);
    expect(asked.length).toBeGreaterThan(0);
    expect(Math.min(...asked.map((r) => r.startedAt))).toBeGreaterThanOrEqual(releasedAt);
  });

  it('`connector backfill` prints who holds the lease while it waits', { timeout: 30_000 }, async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const cfg = config(prefix);
    const { leases } = await harness(cfg);
    await leases.acquire('backfill:teamwork', WORKER, 60_000);
    const cwd = dirs.at(-1) as string;
    const child = await spawnConnector({
      cwd,
      command: 'backfill',
      args: ['--source', 'teamwork'],
      waitForListen: false,
      env: { DATA_DIR: cfg.DATA_DIR, LOG_DIR: cfg.LOG_DIR, QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, REDIS_DURABILITY: 'relaxed', QUEUE_PREFIX: prefix, RECONCILE_LEASE_SECONDS: '2', TEAMWORK_BASE_URL: teamwork.credentials.baseUrl, TEAMWORK_API_KEY: teamwork.credentials.apiKey },
    });
    closers.push(async () => {
      child.kill('SIGKILL');
      await child.exited;
    });
    const deadline = Date.now() + 20_000;
    while (!/waiting:/.test(child.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(child.output()).toContain(`teamwork: waiting: the workers' reconciliation is backfilling teamwork (${WORKER} holds the lease backfill:teamwork); this backfill starts as soon as it ends (Ctrl-C to stop)`);
    await leases.release('backfill:teamwork', WORKER);
    expect(await child.exited, child.output()).toBe(0);
    expect(child.output()).toMatch(/teamwork: \d+ events? in \d+ pages?/);
  });
});
