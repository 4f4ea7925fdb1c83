/**
 * Scale-out, proved on several hosts (issue 16): two `serve` and two `work` processes, each on a host of
 * its own (a Linux network namespace with its own address, ports and DATA_DIR: test/helpers/hosts.ts),
 * share a queue engine and a PostgreSQL database that listen only on the bridge between the hosts (a
 * private Redis with AOF `appendfsync always`, a private PostgreSQL; the machine's own servers are not
 * used). Signed Teamwork deliveries stream to both `serve`s, as a load balancer would spread them:
 * versions of a few dozen tasks with increasing `dateUpdated`, several versions per task, so that an
 * older version overwriting a newer one would show. Meanwhile a random `serve` or `work` is SIGKILLed
 * and restarted, again and again. Then, once the queue is drained:
 * - every delivery answered 200 is stored, as its newest acknowledged version or a newer one that was
 *   stored (its `updated_at` agreeing with its title);
 * - no task row twice; the dead-letter queue (BullMQ's failed jobs) is empty; every process stops
 *   gracefully (exit 0) when asked; both `serve`s answered 200s and both `work`s processed events.
 * Once with QUEUE_BACKEND=redis and once with QUEUE_BACKEND=postgres.
 *
 * CRASH_KILLS sets the kills per engine (default 10, the CI form; `npm run test:crash` runs 50).
 * CRASH_SEED replays the choice of victims and the pauses between kills (not the timing).
 * QUEUE_LOCK_SECONDS is 5 here, so that the events a killed `work` had in hand come back within about
 * 10 s (with the default, 30 s, each kill of a `work` costs up to a minute before its events are handed
 * out again: a 10-kill run then drained 57 s after its storm instead of 2-8 s).
 * Where network namespaces cannot be made, the hosts run on loopback and the test says so in one line.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { BullQueue, type EngineSettings } from '../../src/queue/bull-queue.ts';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { postTeamwork, signTeamwork, teamworkTaskPayload } from '../helpers/deliveries.ts';
import { makeHosts, type Host, type Hosts } from '../helpers/hosts.ts';
import { startPrivatePostgres, startPrivateRedis, withPostgresClient, type PrivatePostgres, type PrivateRedis } from '../helpers/services.ts';

const KILLS = Math.max(1, Math.floor(Number(process.env.CRASH_KILLS ?? 10)));
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const TOKEN = 'scale-out-token';
const LOCK_SECONDS = 5;
/** Concurrent delivery streams, each sending to a random live `serve`. */
const STREAMS = 4;
const PACE_MS = 5;
/** Distinct task ids; each gets many versions over the run. */
const TASKS = 40;
const BASE_TIME = Date.UTC(2026, 10, 1);
/** The pause before each kill, ms: at least the first, plus up to the second at random. */
const KILL_GAP_MS = [400, 1_600] as const;
const quiet = createLogger({ level: 'silent', console: false });

/** mulberry32: a small seeded generator, so that a failing run can be replayed with CRASH_SEED. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let hosts: Hosts | null = null;
let postgres: PrivatePostgres | null = null;
let redis: PrivateRedis | null = null;
let missing: string | null = null;
const dirs: string[] = [];
const processes: Member[] = [];

beforeAll(async () => {
  hosts = await makeHosts(4);
  if (hosts.fallback !== null) console.warn(`[scale-out storm] ${hosts.fallback}`);
  postgres = await startPrivatePostgres({ address: hosts.serviceAddress, allow: hosts.cidr, maxConnections: 400 });
  redis = await startPrivateRedis({ address: hosts.serviceAddress });
  const absent = [postgres === null ? 'PostgreSQL binaries (initdb, pg_ctl)' : null, redis === null ? 'redis-server' : null].filter((m) => m !== null);
  if (absent.length > 0) {
    missing = absent.join(' and ');
    if (process.env.CI === 'true') throw new Error(`the scale-out storm needs ${missing} under CI=true`);
    console.warn(`[tests] no ${missing}; skipping the scale-out storm`);
  }
}, 60_000);

afterAll(async () => {
  for (const member of processes.splice(0)) await member.destroy();
  await redis?.destroy();
  await postgres?.destroy();
  await hosts?.destroy();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** One `serve` or `work` on its host: started, killed and restarted on the same DATA_DIR. */
class Member {
  current: ConnectorProcess | null = null;
  /** The URL deliveries go to while it is up (serve), else null. */
  url: string | null = null;
  up = false;
  starts = 0;
  /** Milliseconds each start took until listening (serve) or the worker started (work). */
  readonly startMs: number[] = [];
  /** Events this member's incarnations said they processed (work). */
  processed = 0;
  /** Exits this test did not cause (a crash of the connector): any makes the run fail. */
  readonly unexpected: string[] = [];
  private killing = false;

  constructor(
    readonly role: 'serve' | 'work',
    readonly host: Host,
    private readonly dir: string,
    private readonly env: Record<string, string>,
  ) {}

  get label(): string {
    return `${this.role}@${this.host.name}`;
  }

  async start(): Promise<void> {
    this.starts += 1;
    const began = Date.now();
    const proc = await spawnConnector({
      command: this.role,
      cwd: this.dir,
      env: this.env,
      wrap: this.host.wrap,
      timeoutMs: 60_000,
    });
    this.current = proc;
    let partial = '';
    proc.child.stdout?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{') || !line.includes('processed"')) continue;
        const entry = JSON.parse(line) as { msg?: string; events?: number };
        if (entry.msg === 'event processed' || /^\d+ events processed$/.test(entry.msg ?? '')) this.processed += entry.events ?? 0;
      }
    });
    void proc.exited.then((how) => {
      if (this.current !== proc) return;
      this.up = false;
      this.url = null;
      if (!this.killing) this.unexpected.push(`${this.label} exited by itself (${how}):\n${proc.output().slice(-3000)}`);
    });
    if (this.role === 'work') {
      const deadline = Date.now() + 60_000;
      while (!proc.output().includes('"msg":"worker started"')) {
        if (Date.now() > deadline || proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`${this.label} did not start its worker:\n${proc.output().slice(-3000)}`);
        await sleep(25);
      }
    }
    this.url = this.role === 'serve' ? proc.url : null;
    this.up = true;
    this.startMs.push(Date.now() - began);
  }

  async kill(): Promise<void> {
    const proc = this.current;
    if (proc === null) return;
    this.killing = true;
    this.up = false;
    this.url = null;
    proc.kill('SIGKILL');
    await proc.exited;
    this.killing = false;
  }

  /** SIGTERM; resolves with the exit code (0 for a graceful stop). */
  async stop(): Promise<number | string> {
    const proc = this.current;
    if (proc === null) return 'not running';
    this.killing = true;
    this.up = false;
    this.url = null;
    proc.kill('SIGTERM');
    const how = await proc.exited;
    this.current = null;
    this.killing = false;
    return how;
  }

  async destroy(): Promise<void> {
    this.killing = true;
    const proc = this.current;
    this.current = null;
    if (proc !== null && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.kill('SIGKILL');
      await proc.exited;
    }
  }

  output(): string {
    return this.current?.output() ?? '';
  }
}

const titleOf = (id: number, version: number) => `Task ${id} v${version}`;
const updatedAtOf = (version: number) => new Date(BASE_TIME + version * 1000).toISOString();

interface Tally {
  next: number;
  /** Acknowledged versions per task id. */
  acked: Map<number, number[]>;
  ackedBy: Map<string, number>;
  refused503: number;
  cut: number;
  /** Milliseconds each 200 took. */
  latencies: number[];
  unexpected: string[];
}

/** Sends deliveries until `over()`, each to a random `serve` that is up; records each 200. */
async function stream(serves: Member[], tally: Tally, rand: () => number, over: () => boolean): Promise<void> {
  while (!over()) {
    const live = serves.filter((s) => s.up && s.url !== null);
    if (live.length === 0) {
      await sleep(20);
      continue;
    }
    const target = live[Math.floor(rand() * live.length)] as Member;
    const url = target.url as string;
    const version = tally.next++;
    const id = 1 + (version % TASKS);
    const body = JSON.stringify(teamworkTaskPayload(id, { name: titleOf(id, version), dateUpdated: updatedAtOf(version) }));
    const sentAt = Date.now();
    try {
      const res = await postTeamwork(url, body, { 'x-projects-signature': signTeamwork(TOKEN, body), 'x-projects-event': 'TASK.UPDATED' });
      const text = await res.text();
      if (res.status === 200) {
        tally.latencies.push(Date.now() - sentAt);
        const list = tally.acked.get(id) ?? [];
        list.push(version);
        tally.acked.set(id, list);
        tally.ackedBy.set(target.label, (tally.ackedBy.get(target.label) ?? 0) + 1);
      } else if (res.status === 503) {
        tally.refused503 += 1;
      } else {
        tally.unexpected.push(`${res.status} from ${target.label}: ${text}`);
      }
    } catch {
      tally.cut += 1; // the kill cut the request off: no answer, no promise made
    }
    await sleep(PACE_MS);
  }
}

async function createDatabase(server: PrivatePostgres, name: string): Promise<string> {
  await withPostgresClient(server.url, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

for (const engine of ['redis', 'postgres'] as const) {
  describe(`scale-out storm, QUEUE_BACKEND=${engine}`, () => {
    it(
      `keeps every acknowledged delivery, exactly once and newest version, across 2 serve and 2 work hosts through ${KILLS} SIGKILLs`,
      async (ctx) => {
        if (missing !== null) return ctx.skip();
        const started = Date.now();
        const net = hosts as Hosts;
        const server = postgres as PrivatePostgres;
        // The kills' pauses and victims from one generator; the senders' choice of serve from another.
        const rand = seeded(SEED + (engine === 'redis' ? 0 : 1));
        const spread = seeded(SEED + (engine === 'redis' ? 2 : 3));
        const note = `seed ${SEED} (replay with CRASH_SEED=${SEED}); hosts on ${net.mode}`;
        const databaseUrl = await createDatabase(server, `storm_${engine}`);
        const queueUrl = engine === 'redis' ? (redis as PrivateRedis).url : await createDatabase(server, `storm_${engine}_queue`);
        const prefix = `storm-${engine}`;
        const settings: EngineSettings = { engine, url: queueUrl, prefix };

        const members: Member[] = [];
        for (const [i, role] of (['serve', 'serve', 'work', 'work'] as const).entries()) {
          const host = net.hosts[i] as Host;
          const dir = mkdtempSync(path.join(tmpdir(), `conn-scale-${engine}-${role}-`));
          dirs.push(dir);
          mkdirSync(path.join(dir, 'data'), { recursive: true });
          const env: Record<string, string> = {
            HOST: host.address,
            // Each host has its ports to itself: both serves listen on 8080, as on two machines.
            PORT: net.mode === 'netns' ? '8080' : '0',
            DATA_DIR: path.join(dir, 'data'),
            LOG_DIR: path.join(dir, 'logs'),
            LOG_FORMAT: 'json',
            DB_BACKEND: 'postgres',
            DATABASE_URL: databaseUrl,
            QUEUE_BACKEND: engine,
            ...(engine === 'redis' ? { REDIS_URL: queueUrl } : { QUEUE_DATABASE_URL: queueUrl }),
            QUEUE_PREFIX: prefix,
            QUEUE_LOCK_SECONDS: String(LOCK_SECONDS),
            TEAMWORK_WEBHOOK_TOKEN: TOKEN,
            BACKFILL_ON_START: 'false',
            BACKFILL_INTERVAL_MINUTES: '0',
          };
          const member = new Member(role, host, dir, env);
          members.push(member);
          processes.push(member);
        }
        await Promise.all(members.map((m) => m.start()));
        const upAfterMs = Date.now() - started;
        const serves = members.filter((m) => m.role === 'serve');

        const tally: Tally = { next: 1, acked: new Map(), ackedBy: new Map(), refused503: 0, cut: 0, unexpected: [], latencies: [] };
        let over = false;
        const senders = Array.from({ length: STREAMS }, () => stream(serves, tally, spread, () => over));

        // The storm: a pause, a random member that is up killed, and restarted in the background.
        const kills = new Map<string, number>();
        const restarts: Promise<void>[] = [];
        try {
          for (let k = 0; k < KILLS; k++) {
            await sleep(KILL_GAP_MS[0] + Math.floor(rand() * KILL_GAP_MS[1]));
            let candidates = members.filter((m) => m.up);
            while (candidates.length === 0) {
              await sleep(50);
              candidates = members.filter((m) => m.up);
            }
            const victim = candidates[Math.floor(rand() * candidates.length)] as Member;
            await victim.kill();
            kills.set(victim.role, (kills.get(victim.role) ?? 0) + 1);
            restarts.push(victim.start());
          }
          await Promise.all(restarts);
          // A little more traffic with everyone up, then the senders stop.
          await sleep(1_000);
        } finally {
          over = true;
          await Promise.all(senders);
        }
        const stormMs = Date.now() - started - upAfterMs;
        const crashed = members.flatMap((m) => m.unexpected);
        expect(crashed, note).toEqual([]);

        // Drained: nothing waiting, delayed or in hand (a killed worker's events come back once their
        // lock expires), nothing dead-lettered. Read with the real queue, from the test's side.
        const observer = await BullQueue.open({ settings, log: quiet });
        let drainedAfterMs: number;
        try {
          const drainStart = Date.now();
          let stats = await observer.stats();
          while (stats.pending + stats.delayed + stats.inFlight > 0 && Date.now() - drainStart < 60_000) {
            await sleep(200);
            stats = await observer.stats();
          }
          drainedAfterMs = Date.now() - drainStart;
          expect(stats, `${note}\n${members.map((m) => `${m.label}: ${m.output().slice(-1500)}`).join('\n')}`).toMatchObject({ pending: 0, delayed: 0, inFlight: 0, deadLettered: 0 });
          expect(await observer.listDeadLetters(), note).toEqual([]);
        } finally {
          await observer.close();
        }

        // Every member stops gracefully.
        for (const member of members) expect(await member.stop(), `${member.label} stops with exit 0\n${member.output().slice(-2000)}`).toBe(0);

        expect(tally.unexpected, note).toEqual([]);
        const ackCount = [...tally.acked.values()].reduce((n, l) => n + l.length, 0);
        expect(ackCount, 'deliveries were acknowledged').toBeGreaterThan(KILLS * 10);
        for (const serve of serves) expect(tally.ackedBy.get(serve.label) ?? 0, `${serve.label} acknowledged deliveries`).toBeGreaterThan(0);
        const workers = members.filter((m) => m.role === 'work');
        for (const worker of workers) expect(worker.processed, `${worker.label} processed events`).toBeGreaterThan(0);
        expect([...kills.values()].reduce((a, b) => a + b, 0)).toBe(KILLS);

        // Every acknowledged delivery is stored, as its newest version; no row twice.
        const { rows, duplicates } = await withPostgresClient(databaseUrl, async (client: pg.Client) => ({
          rows: (await client.query<{ id: string; title: string; updated_at: Date }>('SELECT id, title, updated_at FROM tasks')).rows,
          duplicates: (await client.query('SELECT id, count(*) AS n FROM tasks GROUP BY id HAVING count(*) > 1')).rows,
        }));
        expect(duplicates).toEqual([]);
        const byId = new Map(rows.map((r) => [Number(r.id), r]));
        const wrong: string[] = [];
        for (const [id, versions] of tally.acked) {
          const newestAcked = Math.max(...versions);
          const row = byId.get(id);
          const stored = Number(/ v(\d+)$/.exec(row?.title ?? '')?.[1] ?? -1);
          if (row === undefined) wrong.push(`task ${id}: missing (acknowledged v${newestAcked})`);
          else if (stored < newestAcked) wrong.push(`task ${id}: holds v${stored}, older than acknowledged v${newestAcked}`);
          else if (row.updated_at.toISOString() !== updatedAtOf(stored)) wrong.push(`task ${id}: title v${stored} with updated_at ${row.updated_at.toISOString()}`);
        }
        expect(wrong, note).toEqual([]);
        for (const id of byId.keys()) expect(id >= 1 && id <= TASKS, `unexpected task id ${id}`).toBe(true);

        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        const sorted = [...tally.latencies].sort((a, b) => a - b);
        const percentile = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
        const killed = [...kills].map(([role, n]) => `${role} ${n}`).join(', ');
        console.log(
          `scale-out storm (${engine}, hosts on ${net.mode}): ${KILLS} SIGKILLs (${killed}); ${ackCount} deliveries acknowledged (${[...tally.ackedBy].map(([k, v]) => `${k} ${v}`).join(', ')}), ` +
            `${tally.refused503} answered 503, ${tally.cut} cut off by a kill, ${tally.next - 1} sent; events processed by ${workers.map((w) => `${w.label} ${w.processed}`).join(', ')}; ` +
            `${rows.length} tasks stored, each at its newest acknowledged version or later; ` +
            `200s took ${percentile(50)} ms (median), ${percentile(99)} ms (p99); a start took ${Math.round(mean(members.flatMap((m) => m.startMs)))} ms on average; hosts up in ${(upAfterMs / 1000).toFixed(1)} s, storm ${(stormMs / 1000).toFixed(1)} s, ` +
            `drained ${(drainedAfterMs / 1000).toFixed(1)} s after it; ${seconds} s in all; ${note}`,
        );
      },
      120_000 + KILLS * 6_000,
    );
  });
}
