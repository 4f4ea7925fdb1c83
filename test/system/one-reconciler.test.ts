/**
 * Issue 16, "one reconciler", through real processes: three `connector work` processes (each with a
 * DATA_DIR of its own, as on three hosts) share a queue (on Redis, then on PostgreSQL: the lease lives
 * in the queue's engine) and a PostgreSQL database, with a short
 * reconciler lease (RECONCILE_LEASE_SECONDS=3) and a short reconciliation interval (3 s). Each reaches
 * the Teamwork simulator through a proxy of its own that tags its requests (`x-worker`), so the
 * simulator's request log says which process asked what, and when.
 *
 * The leader is SIGKILLed in the middle of a backfill; another takes over within the lease time; the
 * new leader is then stopped cleanly (SIGTERM) and the third takes over at once. From the simulator's
 * log: every backfill request came from the leader of the moment, and the requests of different
 * processes never interleave in time (each process's requests form one block, ended before the next
 * block starts), so two processes never reconciled at once.
 *
 * The second test runs two connectors in this process to read their /health: `reconciler: leader` and
 * `follower`, with the leader named.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import type { SeenRequest } from '../../simulators/common.ts';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis, withPostgresClient } from '../helpers/services.ts';
import { createLogger } from '../../src/log.ts';
import { BullQueue } from '../../src/queue/bull-queue.ts';
import { removeTempDirs, startSystem, stopAllSystems, waitFor } from './harness.ts';

const LEASE_SECONDS = 3;
/** The shared queue engines (about 25 s each). */
const ENGINES = ['redis', 'postgres'] as const;
const TASKS = 40;

const redis = await requireRedis();
const postgres = await requirePostgres();

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  await stopAllSystems();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => removeTempDirs());

/** An HTTP proxy to `target` that adds `x-worker: <tag>` to every request. */
async function taggingProxy(target: string, tag: string): Promise<string> {
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, 'x-worker': tag } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as { port: number };
  return `http://127.0.0.1:${port}`;
}

/** Removes what the test's queues left in the shared Redis. */
function obliterateLater(prefix: string): void {
  cleanups.push(async () => {
    const queue = await BullQueue.open({ settings: { engine: 'redis', url: TEST_REDIS_URL, prefix }, log: createLogger({ level: 'silent', console: false }) });
    await queue.obliterate();
    await queue.close();
  });
}

async function freshDatabase(): Promise<string> {
  const name = `conn_leader_${randomBytes(4).toString('hex')}`;
  await withPostgresClient(TEST_POSTGRES_URL, (c) => c.query(`CREATE DATABASE ${name}`));
  cleanups.push(() => withPostgresClient(TEST_POSTGRES_URL, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

type Line = { time: string; level: string; msg: string } & Record<string, unknown>;

interface Worker {
  name: string;
  process: ConnectorProcess;
  /** The JSON lines it printed so far (LOG_FORMAT=json). */
  lines(): Line[];
}

function jsonLines(text: string): Line[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

const count = (w: Worker, msg: string | RegExp) => w.lines().filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg))).length;
const TOOK = /^took the reconciler lease/;
const timeOf = (w: Worker, msg: RegExp) => {
  const line = w.lines().find((l) => msg.test(l.msg));
  return line === undefined ? null : Date.parse(line.time);
};

/** Backfill requests of the simulator's log, as one block per run of consecutive requests of one worker. */
function blocks(requests: readonly SeenRequest[]): Array<{ worker: string; from: number; to: number; requests: number }> {
  const out: Array<{ worker: string; from: number; to: number; requests: number }> = [];
  for (const r of [...requests].sort((a, b) => a.startedAt - b.startedAt)) {
    const worker = r.headers['x-worker'] ?? '?';
    const last = out.at(-1);
    if (last !== undefined && last.worker === worker) {
      last.to = Math.max(last.to, r.endedAt);
      last.requests += 1;
    } else {
      out.push({ worker, from: r.startedAt, to: r.endedAt, requests: 1 });
    }
  }
  return out;
}

describe.skipIf(!redis.available || !postgres.available)('one reconciler across worker processes (issue 16)', () => {
  it.each(ENGINES)('kill the reconciling process: another takes over within the lease time, and two never reconcile at once (QUEUE_BACKEND=%s)', { timeout: 90_000 }, async (engine) => {
    const tw: TeamworkSimulator = await startTeamworkSimulator({ seed: 'one-reconciler', data: { tasks: TASKS }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
    cleanups.push(() => tw.stop());
    // Each request takes a while, so a backfill lasts about a second and the kill lands inside one.
    tw.faults.set({ latencyMs: 300 });
    const databaseUrl = await freshDatabase();
    const cwd = mkdtempSync(path.join(tmpdir(), 'conn-leader-'));
    cleanups.push(() => rmSync(cwd, { recursive: true, force: true }));
    const prefix = `leader-${randomUUID().slice(0, 8)}`;
    if (engine === 'redis') obliterateLater(prefix); // PostgreSQL: the database is dropped
    const queueEnv: Record<string, string> = engine === 'redis' ? { QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, REDIS_DURABILITY: 'relaxed' } : { QUEUE_BACKEND: 'postgres' };

    const workers: Worker[] = [];
    await Promise.all(
      ['A', 'B', 'C'].map(async (name) => {
        const proxy = await taggingProxy(tw.url, name);
        const child = await spawnConnector({
          cwd,
          command: 'work',
          waitForListen: false,
          env: {
            LOG_FORMAT: 'json',
            DATA_DIR: path.join(cwd, `${name}-data`),
            LOG_DIR: path.join(cwd, `${name}-logs`),
            DB_BACKEND: 'postgres',
            DATABASE_URL: databaseUrl,
            ...queueEnv,
            QUEUE_PREFIX: prefix,
            RECONCILE_LEASE_SECONDS: String(LEASE_SECONDS),
            BACKFILL_ON_START: 'true',
            BACKFILL_INITIAL_HOURS: String(24 * 365), // the simulator's tasks span the last month
            BACKFILL_INTERVAL_MINUTES: '0.05',
            TEAMWORK_BASE_URL: proxy,
            TEAMWORK_API_KEY: tw.credentials.apiKey,
            TEAMWORK_REQUESTS_PER_MINUTE: '10000',
          },
        });
        cleanups.push(async () => {
          child.kill('SIGKILL');
          await child.exited;
        });
        workers.push({ name, process: child, lines: () => jsonLines(child.output()) });
      }),
    );
    const dump = () => workers.map((w) => `--- ${w.name}\n${w.process.output()}`).join('\n');
    const leaders = () => workers.filter((w) => count(w, TOOK) > 0);

    // 1. Exactly one leads; it reconciles on start and every 3 s; the others follow.
    const first = await waitFor('a leader', () => leaders()[0], 30_000).catch((err: Error) => Promise.reject(new Error(`${err.message}\n${dump()}`)));
    await waitFor('a backfill by the leader', () => count(first, 'backfill done') >= 1, 20_000);
    expect(leaders(), dump()).toEqual([first]);
    const followers = workers.filter((w) => w !== first);
    for (const f of followers) {
      await waitFor(`${f.name} to say who leads`, () => count(f, /holds the reconciler lease: this worker processes events and runs no backfill/) === 1, 10_000);
      expect(count(f, 'backfill started'), `${f.name} backfilled while following`).toBe(0);
    }

    // 2. SIGKILL the leader in the middle of a backfill (a periodic one: its start-up run is done).
    await waitFor('the leader inside a backfill', () => count(first, 'backfill started') > count(first, 'backfill done'), 15_000);
    await new Promise((r) => setTimeout(r, 150)); // its first request is on the wire
    const killedAt = Date.now();
    first.process.kill('SIGKILL');
    await first.process.exited;

    // 3. Another takes over within the lease time (plus one try), and reconciles.
    const second = await waitFor('a new leader', () => followers.find((w) => count(w, TOOK) > 0), (LEASE_SECONDS + 5) * 1000);
    const takeoverMs = (timeOf(second, TOOK) as number) - killedAt;
    console.log(`[one-reconciler] takeover after SIGKILL of the leader: ${takeoverMs} ms (RECONCILE_LEASE_SECONDS=${LEASE_SECONDS})`);
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_SECONDS * 1000 + 1000 + 1500);
    expect(second.lines().find((l) => TOOK.test(l.msg))?.msg).toContain(`from worker@`);
    await waitFor('two backfills by the new leader', () => count(second, 'backfill done') >= 2, 20_000);
    const third = followers.find((w) => w !== second) as Worker;
    expect(count(third, TOOK)).toBe(0);

    // 4. The new leader stops cleanly: it hands the lease over, and the third takes it at once.
    const stoppedAt = Date.now();
    second.process.kill('SIGTERM');
    expect(await second.process.exited).toBe(0);
    expect(count(second, /^handed the reconciler lease over \(stopping\)/)).toBe(1);
    await waitFor('the third to lead', () => count(third, TOOK) > 0, 5_000);
    const handoverMs = (timeOf(third, TOOK) as number) - stoppedAt;
    console.log(`[one-reconciler] takeover after SIGTERM of the leader: ${handoverMs} ms`);
    expect(handoverMs).toBeLessThan(LEASE_SECONDS * 1000);
    await waitFor('a backfill by the third', () => count(third, 'backfill done') >= 1, 20_000);

    // Meanwhile the events were processed by whichever worker claimed them: every task is stored.
    const live = tw.data().tasks.filter((t) => t.status !== 'deleted').map((t) => String(t.id));
    await waitFor(
      `the ${live.length} tasks not deleted stored`,
      async () => {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        try {
          const { rows } = await client.query<{ id: string }>('SELECT id FROM tasks WHERE NOT deleted');
          const stored = new Set(rows.map((r) => r.id));
          return live.every((id) => stored.has(id));
        } finally {
          await client.end();
        }
      },
      20_000,
    );
    third.process.kill('SIGTERM');
    expect(await third.process.exited).toBe(0);

    // 5. From the simulator's log: only the leader of the moment asked, and never two at once.
    const listing = tw.requests.find((r) => r.path === '/projects/api/v3/tasks.json');
    const runs = blocks(listing);
    expect(runs.map((b) => b.worker), JSON.stringify(runs)).toEqual([first.name, second.name, third.name]);
    for (let i = 1; i < runs.length; i++) {
      const [before, after] = [runs[i - 1], runs[i]] as [(typeof runs)[number], (typeof runs)[number]];
      expect(after.from, `${after.worker}'s first request started after ${before.worker}'s last ended`).toBeGreaterThan(before.to);
    }
    // The killed leader's last request was in flight: the next leader's first came at least most of a lease later.
    expect((runs[1]?.from ?? 0) - killedAt).toBeGreaterThan((LEASE_SECONDS * 1000) / 2);
    // Each leader's own runs never overlapped either.
    expect(count(first, 'backfill started')).toBeGreaterThanOrEqual(2);
    expect(tw.requests.maxConcurrency((r) => r.path === '/projects/api/v3/tasks.json')).toBe(1);
  });

  it('/health says which worker is the reconciler, and names it on the followers', async () => {
    const prefix = `health-${randomUUID().slice(0, 8)}`;
    obliterateLater(prefix);
    const env = { QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, REDIS_DURABILITY: 'relaxed', QUEUE_PREFIX: prefix, RECONCILE_LEASE_SECONDS: '3' };
    const one = await startSystem({ env });
    const health = async (url: string) => ((await (await fetch(`${url}/health`)).json()) as { worker: Record<string, unknown> }).worker;
    await waitFor('the first to lead', async () => (await health(one.url)).reconciler === 'leader');
    const two = await startSystem({ env });
    await waitFor('the second to follow, naming the leader', async () => {
      const worker = await health(two.url);
      return worker.reconciler === 'follower' && typeof worker.reconcilerHolder === 'string' && worker.reconcilerHolder.startsWith('worker@');
    });
    expect(await health(one.url)).toMatchObject({ state: 'running', reconciler: 'leader' });
    expect(one.lines.filter((l) => TOOK.test(l.msg))).toHaveLength(1);
    // SQLite with a shared queue is warned about at start-up.
    expect(two.lines.some((l) => l.level === 'warn' && /^DB_BACKEND=sqlite with QUEUE_BACKEND=redis/.test(l.msg))).toBe(true);

    await one.stop();
    await waitFor('the second to lead', async () => (await health(two.url)).reconciler === 'leader', 5_000);
  });
});
