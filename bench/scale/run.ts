/**
 * `npm run bench:scale` (issue 16): what the shared queue engines cost, measured two ways on this
 * machine, in one run. A benchmark, not a test: it prints a table and the verdict against each goal,
 * and exits 0 unless something broke (a server that would not start, a request answered other than
 * 200, an event dead-lettered or not written).
 *
 * 1. Ingest. `connector serve` alone (webhooks only, no worker) on each queue engine, against a no-op
 *    Fastify server (bench/ingest/servers.ts) measured in the same run: requests/s and latency under
 *    wrk (/usr/bin/wrk, or WRK), CONNECTIONS keep-alive connections, one wrk thread. The load is wrk
 *    and not a Node client because on two cores a Node load generator takes a core from the server
 *    under test. wrk sends pre-signed Teamwork v2 deliveries of about 2 KB (bench/scale/deliveries.lua)
 *    read from a file the runner writes before the clock starts, each body once: the connector's
 *    replay window (on, at its default of 24 hours, as an operator runs it) would answer a byte-
 *    identical repeat without queueing it. The file holds 3 times what the server took in its best
 *    round so far; wrk counts any repeat, and the round says so.
 *    The engines: `redis` (a private redis-server with appendonly yes + appendfsync always, see
 *    engines.ts), `postgres` (a database the benchmark creates on the machine's PostgreSQL and drops),
 *    and for comparison `file` (the embedded file queue). Each `serve` runs as an operator runs it:
 *    LOG_LEVEL=info, logging to the console (read by the runner) and to its LOG_DIR, its own
 *    QUEUE_PREFIX, DATA_DIR in a temp dir. Rounds are interleaved: in each round, for each engine (in
 *    an order that rotates from round to round), the no-op and then the engine, so that the ratio
 *    engine / no-op is taken between two measurements seconds apart; its median over the rounds is the
 *    verdict. After each engine round the runner checks that the queue holds one event per 200
 *    answered, then empties it (BullMQ's obliterate; on PostgreSQL a VACUUM of the job table), so that
 *    every round starts as a worker that keeps up leaves the engine. The file queue is left to grow
 *    (there is no way to empty it from outside; it appends).
 *    CPU: the `serve` process, and the engine's own (the redis-server process; the PostgreSQL backends
 *    of the queue's database), per request answered.
 *
 * 2. End to end. A backlog of E2E_EVENTS events, one per task, made by the Teamwork source's own
 *    verify + parse from signed deliveries whose bodies carry every field the handler stores (so no
 *    vendor API call is made), enqueued with the product's BullQueue. Then K `connector work` processes
 *    (K in WORKERS) with DB_BACKEND=postgres on a database of their own, created for the run and
 *    dropped after (the queue, for the postgres engine, in that same database: QUEUE_DATABASE_URL
 *    unset, as by default). The clock starts when all K are up: the runner migrates the database
 *    first and holds its migration lock while the workers start, so each waits at its migration step
 *    with its code loaded and its queue open; once all K wait (pg_locks), the runner lets go. It stops
 *    when every event's row is in the tasks table and the queue is empty (no event waiting, in hand or
 *    delayed): events/s. Reported with the CPU the workers, the engine and the database backends used,
 *    and how busy the machine's cores were, which says whether a second worker has a core to run on.
 *
 * The machine's load average is printed before and after, and each phase's share of the cores.
 *
 * Environment: BENCH_SECONDS (10), BENCH_ROUNDS (5), BENCH_CONNECTIONS (50), BENCH_WARMUP_SECONDS (2),
 * BENCH_LOG_LEVEL (info), BENCH_WRK_THREADS (1), BENCH_ENGINES (redis,postgres), BENCH_FILE (1; 0 skips
 * the file queue's serve), BENCH_PARTS (ingest,e2e), BENCH_E2E_EVENTS (3000), BENCH_E2E_ROUNDS (2),
 * BENCH_WORKERS (1,2,4), BENCH_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres: the server
 * where databases are created and dropped), BENCH_CPU_PROF (a directory: run each `serve` with
 * --cpu-prof there), WRK, REDIS_SERVER.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { parseConfig } from '../../src/config.ts';
import { PostgresDatabase, migrationLockKey } from '../../src/db/postgres/postgres-database.ts';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { BullQueue, type EngineSettings } from '../../src/queue/bull-queue.ts';
import { createSources } from '../../src/sources/index.ts';
import { signedDelivery, writeDeliveryFile } from './deliveries.ts';
import { DatabaseCpu, coresBusy, cpuOf, createDatabase, databaseUrl, dropDatabase, freePort, machineCpu, processCpuSeconds, startPrivateRedis, withAdmin, type PrivateRedis } from './engines.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../..');
const CLI = path.join(ROOT, 'src', 'cli.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const LUA = path.join(here, 'deliveries.lua');
const WRK = process.env.WRK ?? '/usr/bin/wrk';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
const WRK_THREADS = Number(process.env.BENCH_WRK_THREADS ?? 1);
const list = (value: string | undefined, fallback: string) => (value ?? fallback).split(',').map((s) => s.trim()).filter((s) => s !== '');
const ENGINES = list(process.env.BENCH_ENGINES, 'redis,postgres') as Engine[];
const WITH_FILE = process.env.BENCH_FILE !== '0';
const PARTS = list(process.env.BENCH_PARTS, 'ingest,e2e');
const E2E_EVENTS = Number(process.env.BENCH_E2E_EVENTS ?? 3_000);
const E2E_ROUNDS = Number(process.env.BENCH_E2E_ROUNDS ?? 2);
const WORKERS = list(process.env.BENCH_WORKERS, '1,2,4').map(Number);
const ADMIN_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const CPU_PROF = process.env.BENCH_CPU_PROF;
const TOKEN = 'bench-scale-token';
/** Deliveries in the no-op's file: it stores nothing, so it may see a body twice. */
const NOOP_DELIVERIES = 20_000;
/** The most deliveries one round's file holds (about 2.1 KB each, in the file and again in wrk). */
const MAX_DELIVERIES = 400_000;
const E2E_TIMEOUT_MS = 10 * 60_000;
const START_TIMEOUT_MS = 180_000;

const GOALS = { redisRatio: 0.3, redisP99Ms: 50, postgresRatio: 0.15, twoWorkers: 1.5 } as const;

type Engine = 'redis' | 'postgres';
type ServerKey = 'noop' | Engine | 'file';

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const loadAverage = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const dirs: string[] = [];
function tempDir(name: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `bench-scale-${name}-`));
  dirs.push(dir);
  return dir;
}
const cleanups: Array<() => Promise<void>> = [];
const benchLog = createLogger({ level: 'warn' });

// ───────────────────────────── processes ─────────────────────────────

interface Proc {
  child: ChildProcess;
  /** Everything the process printed, up to 256 KB (for errors). */
  head: () => string;
  /** Bytes printed (the console log). */
  printed: () => number;
}

/** Spawns `node --import tsx <args>` with only `env` (and PATH, HOME), reading its output. */
function spawnNode(args: string[], env: Record<string, string>, cwd: string, nodeFlags: string[] = []): Proc {
  const child = spawn(process.execPath, [...nodeFlags, '--import', TSX, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let head = '';
  let printed = 0;
  const onData = (d: Buffer) => {
    printed += d.length;
    if (head.length < 256 * 1024) head += d.toString();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return { child, head: () => head, printed: () => printed };
}

async function stopProcess(child: ChildProcess, graceMs = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await once(child, 'exit').catch(() => {});
  clearTimeout(timer);
}

// ───────────────────────────── ingest ─────────────────────────────

/** CPU an engine's own processes used between `snapshot()` and `since()`, seconds. */
interface EngineCpu {
  snapshot(): Promise<void>;
  since(): Promise<number>;
}

interface Server {
  key: ServerKey;
  name: string;
  proc: Proc;
  url: string;
  engineCpu: EngineCpu | null;
  /** Events in the queue (waiting, delayed, in hand); null for the no-op. */
  backlog(): Promise<number | null>;
  /** Empties the queue after a round (engines only). */
  clear(): Promise<void>;
  /** The best requests/s seen so far (sizes the next round's file). */
  best: number;
}

interface WrkResult {
  requests: number;
  durationUs: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  statusErrors: number;
  timeouts: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  repeats: number;
}

interface Round {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  failed: number;
  repeats: number;
  /** The server process's CPU per wall second (1.0 = one core). */
  serverCores: number;
  serverUsPerRequest: number;
  /** The engine's own CPU (redis-server; PostgreSQL backends of the queue database) per request; null for none. */
  engineUsPerRequest: number | null;
  /** Both cores' business during the round, all processes (2.0 = both busy). */
  machineCores: number;
  steal: number;
  /** Events in the queue after the round; null for the no-op. */
  queued: number | null;
}

let nextDelivery = 0;

/** Starts a `serve` (or the no-op) and resolves once /health (or the no-op's line) answers. */
async function startServer(key: ServerKey, env: Record<string, string>): Promise<{ proc: Proc; url: string }> {
  if (key === 'noop') {
    const proc = spawnNode([path.join(ROOT, 'bench', 'ingest', 'servers.ts'), 'noop', tempDir('noop'), TOKEN], {}, ROOT);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(proc.head());
      if (match) return { proc, url: match[1] as string };
      if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`the no-op server did not start:\n${proc.head()}`);
      await sleep(50);
    }
  }
  const dir = tempDir(`serve-${key}`);
  const port = await freePort();
  const flags = CPU_PROF === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.resolve(CPU_PROF)}`, `--cpu-prof-name=serve-${key}-${process.pid}.cpuprofile`];
  const proc = spawnNode(
    [CLI, 'serve'],
    {
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL,
      DATA_DIR: path.join(dir, 'data'),
      LOG_DIR: path.join(dir, 'logs'),
      TEAMWORK_WEBHOOK_TOKEN: TOKEN,
      BACKFILL_ON_START: 'false',
      BACKFILL_INTERVAL_MINUTES: '0',
      ...env,
    },
    dir,
    flags,
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const ok = await fetch(`${url}/health`).then(
      (res) => res.ok,
      () => false,
    );
    if (ok) return { proc, url };
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`serve (${key}) did not start:\n${proc.head()}`);
    await sleep(100);
  }
}

/** One wrk run against `server` with `count` fresh deliveries (or the no-op's fixed file). */
async function wrkRound(server: Server, seconds: number, file: string): Promise<Round> {
  const cpuProcs = [server.proc.child.pid];
  const args = ['-t', String(WRK_THREADS), '-c', String(CONNECTIONS), '-d', `${seconds}s`, '--timeout', '10s', '-s', LUA, server.url, '--', file, String(WRK_THREADS)];
  const wrk = spawn(WRK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let readyLines = 0;
  let started: Promise<{ t0: number; cpu0: number; machine0: ReturnType<typeof machineCpu> }> | null = null;
  wrk.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    readyLines = out.split('\n').filter((l) => l === 'ready').length;
    if (started === null && readyLines >= WRK_THREADS) {
      started = (async () => {
        const cpu0 = cpuOf(cpuProcs);
        const machine0 = machineCpu();
        await server.engineCpu?.snapshot();
        return { t0: performance.now(), cpu0, machine0 };
      })();
    }
  });
  wrk.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(wrk, 'exit')) as [number | null];
  const wall1 = performance.now();
  const cpu1 = cpuOf(cpuProcs);
  const machine1 = machineCpu();
  if (code !== 0 || started === null) throw new Error(`wrk exited with ${code}:\n${err}\n${out}`);
  const { t0, cpu0, machine0 } = await (started as Promise<{ t0: number; cpu0: number; machine0: ReturnType<typeof machineCpu> }>);
  const engineSeconds = server.engineCpu === null ? null : await server.engineCpu.since();
  const line = out.split('\n').find((l) => l.startsWith('SCALE_JSON '));
  if (line === undefined) throw new Error(`wrk printed no result:\n${out}\n${err}`);
  const r = JSON.parse(line.slice('SCALE_JSON '.length)) as WrkResult;
  const wall = (wall1 - t0) / 1000;
  const perSecond = r.requests / (r.durationUs / 1e6);
  const failed = r.statusErrors + r.connectErrors + r.readErrors + r.writeErrors + r.timeouts;
  const machine = coresBusy(machine0, machine1, wall);
  return {
    perSecond,
    p50Ms: r.p50Us / 1000,
    p99Ms: r.p99Us / 1000,
    requests: r.requests,
    failed,
    repeats: r.repeats,
    serverCores: (cpu1 - cpu0) / wall,
    serverUsPerRequest: ((cpu1 - cpu0) / Math.max(1, r.requests)) * 1e6,
    engineUsPerRequest: engineSeconds === null ? null : (engineSeconds / Math.max(1, r.requests)) * 1e6,
    machineCores: machine.busy,
    steal: machine.steal,
    queued: null,
  };
}

/** A round of `server`: its deliveries written first (outside the clock), measured, checked, cleared. */
async function measure(server: Server, seconds: number, work: string, noopFile: string): Promise<Round> {
  let file = noopFile;
  if (server.key !== 'noop') {
    const count = Math.min(MAX_DELIVERIES, Math.ceil(Math.max(server.best, 2_000) * seconds * 3) + 1_000);
    file = path.join(work, `deliveries-${server.key}.txt`);
    await writeDeliveryFile(file, nextDelivery, count, TOKEN);
    nextDelivery += count;
  }
  const round = await wrkRound(server, seconds, file);
  if (file !== noopFile) rmSync(file, { force: true });
  server.best = Math.max(server.best, round.perSecond);
  round.queued = await server.backlog();
  await server.clear();
  return round;
}

interface IngestResult {
  rounds: Map<ServerKey, Round[]>;
  /** engine -> ratio engine / no-op within each round. */
  ratios: Map<ServerKey, number[]>;
  servers: Server[];
}

/** Runs the ingest rounds; stops its servers before it returns. */
async function ingest(redis: PrivateRedis | null, queueDbName: string | null): Promise<IngestResult> {
  const stops: Array<() => Promise<void>> = [];
  try {
    return await ingestRounds(redis, queueDbName, stops);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => console.error(`stopping failed: ${(err as Error).message}`));
  }
}

async function ingestRounds(redis: PrivateRedis | null, queueDbName: string | null, cleanups: Array<() => Promise<void>>): Promise<IngestResult> {
  const work = tempDir('ingest');
  const noopFile = path.join(work, 'deliveries-noop.txt');
  await writeDeliveryFile(noopFile, 0, NOOP_DELIVERIES, TOKEN);
  nextDelivery = NOOP_DELIVERIES;
  const servers: Server[] = [];
  const none = async () => null;
  const nothing = async () => {};

  const noop = await startServer('noop', {});
  cleanups.push(() => stopProcess(noop.proc.child));
  servers.push({ key: 'noop', name: 'no-op Fastify', ...noop, engineCpu: null, backlog: none, clear: nothing, best: 0 });

  for (const engine of ENGINES) {
    const prefix = `scale-ingest-${engine}`;
    let settings: EngineSettings;
    let env: Record<string, string>;
    let engineCpu: EngineCpu;
    let vacuum: () => Promise<void> = nothing;
    if (engine === 'redis') {
      if (redis === null) throw new Error('no Redis');
      settings = { engine: 'redis', url: redis.url, prefix };
      env = { QUEUE_BACKEND: 'redis', REDIS_URL: redis.url, QUEUE_PREFIX: prefix };
      let base = 0;
      engineCpu = { snapshot: async () => void (base = processCpuSeconds(redis.pid) ?? 0), since: async () => (processCpuSeconds(redis.pid) ?? 0) - base };
    } else {
      if (queueDbName === null) throw new Error('no queue database');
      const url = databaseUrl(ADMIN_URL, queueDbName);
      settings = { engine: 'postgres', url, prefix };
      env = { QUEUE_BACKEND: 'postgres', QUEUE_DATABASE_URL: url, QUEUE_PREFIX: prefix };
      const client = new pg.Client({ connectionString: ADMIN_URL });
      await client.connect();
      cleanups.push(() => client.end().catch(() => {}));
      engineCpu = new DatabaseCpu(client, queueDbName);
      vacuum = async () => {
        const q = new pg.Client({ connectionString: url });
        await q.connect();
        try {
          await q.query('VACUUM bullmq.job');
        } finally {
          await q.end();
        }
      };
    }
    const started = await startServer(engine, env);
    cleanups.push(() => stopProcess(started.proc.child));
    const queue = await BullQueue.open({ settings, log: benchLog });
    cleanups.push(() => queue.close());
    servers.push({
      key: engine,
      name: `serve, ${engine} queue`,
      ...started,
      engineCpu,
      backlog: async () => {
        const s = await queue.stats();
        return s.pending + s.delayed + s.inFlight;
      },
      clear: async () => {
        await queue.obliterate();
        await vacuum();
      },
      best: 0,
    });
  }
  if (WITH_FILE) {
    const started = await startServer('file', { QUEUE_BACKEND: 'file', QUEUE_PREFIX: 'scale-ingest-file' });
    cleanups.push(() => stopProcess(started.proc.child));
    servers.push({
      key: 'file',
      name: 'serve, file queue',
      ...started,
      engineCpu: null,
      backlog: async () => {
        const res = await fetch(`${started.url}/health`);
        return ((await res.json()) as { queue: { size: number } }).queue.size;
      },
      clear: nothing,
      best: 0,
    });
  }

  console.log(`\n## Ingest: serve alone against the no-op, wrk -t${WRK_THREADS} -c${CONNECTIONS}, ${SECONDS} s rounds after ${WARMUP} s of warm-up, ${ROUNDS} rounds`);
  for (const server of servers) {
    const warm = await measure(server, WARMUP, work, noopFile);
    console.log(`  warm-up ${server.name}: ${fmt(warm.perSecond)} req/s`);
  }
  const rounds = new Map<ServerKey, Round[]>(servers.map((s) => [s.key, []]));
  const ratios = new Map<ServerKey, number[]>();
  const engines = servers.filter((s) => s.key !== 'noop');
  const noopServer = servers[0] as Server;
  for (let r = 0; r < ROUNDS; r++) {
    const order = engines.map((_, i) => engines[(i + r) % engines.length] as Server);
    for (const server of order) {
      const base = await measure(noopServer, SECONDS, work, noopFile);
      rounds.get('noop')?.push(base);
      const round = await measure(server, SECONDS, work, noopFile);
      rounds.get(server.key)?.push(round);
      const ratio = round.perSecond / base.perSecond;
      ratios.set(server.key, [...(ratios.get(server.key) ?? []), ratio]);
      console.log(
        `  round ${r + 1}: no-op ${fmt(base.perSecond)} req/s (p99 ${fmt(base.p99Ms, 1)} ms), ${server.name} ${fmt(round.perSecond)} req/s, p50 ${fmt(round.p50Ms, 1)} / p99 ${fmt(round.p99Ms, 1)} ms, ratio ${ratio.toFixed(3)}; ` +
          `serve ${fmt(round.serverUsPerRequest)} µs/req${round.engineUsPerRequest === null ? '' : `, engine ${fmt(round.engineUsPerRequest)} µs/req`}, cores busy ${fmt(round.machineCores, 2)}` +
          `${round.steal > 0.05 ? ` (steal ${fmt(round.steal, 2)})` : ''}; queued ${fmt(round.queued ?? 0)}${round.queued !== null && round.queued < round.requests - round.failed ? ' (FEWER than answered)' : ''}` +
          `${round.failed > 0 ? `, ${round.failed} FAILED` : ''}${round.repeats > 0 ? `, ${fmt(round.repeats)} REPEATED deliveries` : ''}`,
      );
    }
  }
  return { rounds, ratios, servers };
}

// ───────────────────────────── end to end ─────────────────────────────

interface E2eRun {
  engine: Engine;
  workers: number;
  round: number;
  events: number;
  seconds: number;
  perSecond: number;
  /** Seconds until the last row was in the tasks table (the acks follow). */
  rowsSeconds: number;
  workerCores: number;
  engineCores: number | null;
  /** PostgreSQL backends of the run's database (rows; for the postgres engine, the queue too). */
  databaseCores: number;
  machineCores: number;
  steal: number;
  deadLettered: number;
  /** Rows written without a field the body carried (would mean the handler did not map the body as it is). */
  incomplete: number;
  enqueuePerSecond: number;
}

/** Events as the webhook path makes them: each signed delivery verified and parsed by the Teamwork source. */
function backlogEvents(count: number): QueueEvent[] {
  const config = parseConfig({ TEAMWORK_WEBHOOK_TOKEN: TOKEN, DATA_DIR: tempDir('parse') });
  const teamwork = createSources(config, { log: benchLog }).find((s) => s.name === 'teamwork');
  if (teamwork === undefined) throw new Error('no Teamwork source');
  const updatedAt = new Date(Date.now() - 60_000);
  const events: QueueEvent[] = [];
  for (let n = 0; n < count; n++) {
    const { body, signature } = signedDelivery(n, TOKEN, updatedAt);
    const delivery = { rawBody: Buffer.from(body), headers: { 'content-type': 'application/json', 'x-projects-signature': signature, 'x-projects-event': 'TASK.UPDATED' }, receivedAt: new Date() };
    teamwork.verify(delivery);
    events.push(...teamwork.parseWebhook(delivery).events);
  }
  return events;
}

/** The two halves of a bigint advisory lock key as pg_locks shows them (classid, objid). */
function lockParts(key: string): { classid: number; objid: number } {
  const k = BigInt.asUintN(64, BigInt(key));
  return { classid: Number(k >> 32n), objid: Number(k & 0xffffffffn) };
}

async function e2eRun(engine: Engine, workers: number, round: number, redis: PrivateRedis | null): Promise<E2eRun> {
  const dbName = `bench_scale_${process.pid}_${engine}_${workers}_${round}`;
  const dbUrl = await createDatabase(ADMIN_URL, dbName);
  const procs: Proc[] = [];
  let queue: BullQueue | null = null;
  const gate = new pg.Client({ connectionString: dbUrl });
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  try {
    const db = new PostgresDatabase({ connectionString: dbUrl });
    await db.migrate();
    await db.close();
    const prefix = `scale-e2e-${workers}-${round}`;
    const settings: EngineSettings = engine === 'redis' ? { engine: 'redis', url: (redis as PrivateRedis).url, prefix } : { engine: 'postgres', url: dbUrl, prefix };
    queue = await BullQueue.open({ settings, log: benchLog });
    const events = backlogEvents(E2E_EVENTS);
    const e0 = performance.now();
    for (let i = 0; i < events.length; i += 500) await queue.enqueue(events.slice(i, i + 500));
    const enqueuePerSecond = events.length / ((performance.now() - e0) / 1000);

    await gate.connect();
    await admin.connect();
    const key = migrationLockKey('public');
    await gate.query('SELECT pg_advisory_lock($1::bigint)', [key]);
    const env: Record<string, string> = {
      LOG_LEVEL,
      DB_BACKEND: 'postgres',
      DATABASE_URL: dbUrl,
      TEAMWORK_WEBHOOK_TOKEN: TOKEN,
      BACKFILL_ON_START: 'false',
      BACKFILL_INTERVAL_MINUTES: '0',
      QUEUE_PREFIX: prefix,
      ...(engine === 'redis' ? { QUEUE_BACKEND: 'redis', REDIS_URL: (redis as PrivateRedis).url } : { QUEUE_BACKEND: 'postgres' }),
    };
    for (let i = 0; i < workers; i++) {
      const dir = tempDir(`work-${engine}-${workers}-${i}`);
      procs.push(spawnNode([CLI, 'work'], { ...env, DATA_DIR: path.join(dir, 'data'), LOG_DIR: path.join(dir, 'logs') }, dir));
    }
    const { classid, objid } = lockParts(key);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const { rows } = await gate.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", [classid, objid]);
      if ((rows[0]?.n ?? 0) >= workers) break;
      const dead = procs.find((p) => p.child.exitCode !== null);
      if (dead !== undefined) throw new Error(`a worker exited before starting:\n${dead.head()}`);
      if (Date.now() > deadline) throw new Error(`the workers did not all reach the database in ${START_TIMEOUT_MS / 1000} s`);
      await sleep(100);
    }

    const databaseCpu = new DatabaseCpu(admin, dbName);
    await databaseCpu.snapshot();
    const pids = procs.map((p) => p.child.pid);
    const worker0 = cpuOf(pids);
    const engine0 = engine === 'redis' ? (processCpuSeconds(redis?.pid) ?? 0) : 0;
    const machine0 = machineCpu();
    const t0 = performance.now();
    await gate.query('SELECT pg_advisory_unlock($1::bigint)', [key]);

    let rowsAt = 0;
    for (;;) {
      const { rows } = await gate.query<{ n: number }>('SELECT count(*)::int AS n FROM public.tasks');
      if ((rows[0]?.n ?? 0) >= events.length) {
        rowsAt = performance.now();
        break;
      }
      const dead = procs.find((p) => p.child.exitCode !== null);
      if (dead !== undefined) throw new Error(`a worker exited:\n${dead.head()}`);
      if (performance.now() - t0 > E2E_TIMEOUT_MS) throw new Error(`only ${rows[0]?.n ?? 0} of ${events.length} rows after ${E2E_TIMEOUT_MS / 1000} s`);
      await sleep(100);
    }
    const { rows: incompleteRows } = await gate.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM public.tasks WHERE title IS NULL OR project_name IS NULL OR tasklist_name IS NULL OR updated_by IS NULL OR created_by IS NULL OR assignees = '[]'::jsonb",
    );
    const incomplete = incompleteRows[0]?.n ?? 0;
    let deadLettered = 0;
    for (;;) {
      const s = await queue.stats();
      deadLettered = s.deadLettered;
      if (s.pending + s.inFlight + s.delayed === 0) break;
      if (performance.now() - t0 > E2E_TIMEOUT_MS) throw new Error(`the queue still holds ${s.pending + s.inFlight + s.delayed} events`);
      await sleep(50);
    }
    const t1 = performance.now();
    const seconds = (t1 - t0) / 1000;
    const machine = coresBusy(machine0, machineCpu(), seconds);
    const workerCores = (cpuOf(pids) - worker0) / seconds;
    const engineCores = engine === 'redis' ? ((processCpuSeconds(redis?.pid) ?? 0) - engine0) / seconds : null;
    const databaseCores = (await databaseCpu.since()) / seconds;
    return {
      engine,
      workers,
      round,
      events: events.length,
      seconds,
      perSecond: events.length / seconds,
      rowsSeconds: (rowsAt - t0) / 1000,
      workerCores,
      engineCores,
      databaseCores,
      machineCores: machine.busy,
      steal: machine.steal,
      deadLettered,
      incomplete,
      enqueuePerSecond,
    };
  } finally {
    await Promise.all(procs.map((p) => stopProcess(p.child)));
    if (queue !== null) {
      await queue.obliterate().catch(() => {});
      await queue.close();
    }
    await gate.end().catch(() => {});
    await admin.end().catch(() => {});
    await dropDatabase(ADMIN_URL, dbName);
  }
}

async function e2e(redis: PrivateRedis | null): Promise<E2eRun[]> {
  console.log(`\n## End to end: a backlog of ${fmt(E2E_EVENTS)} Teamwork events (one task each) into PostgreSQL by ${WORKERS.join(', ')} \`work\` processes, ${E2E_ROUNDS} round(s)`);
  const runs: E2eRun[] = [];
  for (let round = 0; round < E2E_ROUNDS; round++) {
    // The order of the worker counts alternates, so that a drift of the machine's speed favours none.
    const counts = round % 2 === 0 ? WORKERS : [...WORKERS].reverse();
    for (const engine of ENGINES) {
      for (const workers of counts) {
        const run = await e2eRun(engine, workers, round, redis);
        runs.push(run);
        console.log(
          `  round ${round + 1} ${engine}, ${workers} worker${workers === 1 ? '' : 's'}: ${fmt(run.perSecond)} events/s (${fmt(run.events)} in ${fmt(run.seconds, 1)} s; rows in at ${fmt(run.rowsSeconds, 1)} s); ` +
            `CPU cores: workers ${fmt(run.workerCores, 2)}${run.engineCores === null ? '' : `, redis ${fmt(run.engineCores, 2)}`}, PostgreSQL backends ${fmt(run.databaseCores, 2)}, machine ${fmt(run.machineCores, 2)} of ${os.availableParallelism()}` +
            `${run.steal > 0.05 ? ` (steal ${fmt(run.steal, 2)})` : ''}; backlog enqueued at ${fmt(run.enqueuePerSecond)} events/s${run.deadLettered > 0 ? `; ${run.deadLettered} DEAD-LETTERED` : ''}${run.incomplete > 0 ? `; ${run.incomplete} rows INCOMPLETE` : ''}`,
        );
      }
    }
  }
  return runs;
}

// ───────────────────────────── the run ─────────────────────────────

let failures = 0;
const loadBefore = loadAverage();
const cpus = os.availableParallelism();
const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`scale benchmark: Node ${process.version}, ${cpus} CPUs (${cpuModel}), ${fmt(os.totalmem() / 2 ** 30, 1)} GiB; load average before: ${loadBefore}`);
const machineStart = machineCpu();
const wallStart = performance.now();
let redis: PrivateRedis | null = null;
let queueDbName: string | null = null;
let ingestResult: IngestResult | null = null;
let e2eRuns: E2eRun[] = [];
try {
  if (ENGINES.includes('redis')) {
    redis = await startPrivateRedis();
    const r = redis;
    cleanups.push(() => r.stop());
    console.log(`private Redis ${redis.version} at ${redis.url} (${redis.durability}; RDB snapshots off)`);
  }
  const pgVersion = await withAdmin(ADMIN_URL, async (c) => (await c.query<{ v: string; s: string }>("SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS s")).rows[0]);
  console.log(`PostgreSQL ${pgVersion?.v} at ${new URL(ADMIN_URL).host} (synchronous_commit ${pgVersion?.s}; the machine's shared server, databases created and dropped by this run)`);
  if (PARTS.includes('ingest')) {
    if (ENGINES.includes('postgres')) {
      queueDbName = `bench_scale_${process.pid}_queue`;
      await createDatabase(ADMIN_URL, queueDbName);
      const name = queueDbName;
      cleanups.push(() => dropDatabase(ADMIN_URL, name));
    }
    ingestResult = await ingest(redis, queueDbName);
  }
  if (PARTS.includes('e2e')) e2eRuns = await e2e(redis);
} catch (err) {
  failures++;
  console.error(`the benchmark broke: ${(err as Error).stack ?? String(err)}`);
} finally {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err: unknown) => console.error(`cleanup failed: ${(err as Error).message}`));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

// ───────────────────────────── report ─────────────────────────────

const wallAll = (performance.now() - wallStart) / 1000;
const machineAll = coresBusy(machineStart, machineCpu(), wallAll);
const mark = (ok: boolean) => (ok ? 'met' : 'MISSED');
const verdicts: Record<string, unknown> = {};
const summary: Record<string, unknown> = {};

if (ingestResult !== null) {
  const { rounds, ratios, servers } = ingestResult;
  console.log('\n### Ingest (median of the rounds; ratio = engine / the no-op measured just before it, median of the rounds)\n');
  console.log('| server | requests/s | p50 ms | p99 ms | ratio to no-op (per round) | serve CPU µs/req | engine CPU µs/req | cores busy (machine) |');
  console.log('| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |');
  for (const server of servers) {
    const rs = rounds.get(server.key) ?? [];
    if (rs.length === 0) continue;
    const rr = ratios.get(server.key);
    const engineUs = rs.map((r) => r.engineUsPerRequest).filter((v): v is number => v !== null);
    const row = {
      perSecond: median(rs.map((r) => r.perSecond)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      ratio: rr === undefined ? null : median(rr),
      serveUs: median(rs.map((r) => r.serverUsPerRequest)),
      engineUs: engineUs.length === 0 ? null : median(engineUs),
      machineCores: median(rs.map((r) => r.machineCores)),
      failed: rs.reduce((n, r) => n + r.failed, 0),
      repeats: rs.reduce((n, r) => n + r.repeats, 0),
    };
    summary[server.key] = row;
    if (server.key !== 'noop') {
      failures += row.failed;
      // Fewer events queued than deliveries answered 200 would mean lost deliveries.
      failures += rs.filter((r) => r.queued !== null && server.key !== 'file' && r.queued < r.requests - r.failed).length;
    }
    const ratioText = rr === undefined ? '1 (reference)' : `**${row.ratio?.toFixed(2)}** (${rr.map((v) => v.toFixed(2)).join(', ')})`;
    console.log(
      `| ${server.name} | ${fmt(row.perSecond)} | ${fmt(row.p50Ms, 1)} | ${fmt(row.p99Ms, 1)} | ${ratioText} | ${fmt(row.serveUs)} | ${row.engineUs === null ? '-' : fmt(row.engineUs)} | ${fmt(row.machineCores, 2)} |`,
    );
  }
  for (const server of servers) {
    if (server.key === 'noop') continue;
    const rs = rounds.get(server.key) ?? [];
    const repeats = rs.reduce((n, r) => n + r.repeats, 0);
    const lost = server.key === 'file' ? [] : rs.filter((r) => r.queued !== null && r.queued < r.requests - r.failed);
    console.log(
      `${server.name}: ${repeats === 0 ? 'every delivery sent once' : `${fmt(repeats)} deliveries sent twice (answered without queueing: the figures are flattered)`}` +
        `${server.key === 'file' ? '' : lost.length === 0 ? '; after every round the queue held at least one event per 200 answered' : `; ${lost.length} round(s) with FEWER events queued than deliveries answered 200`}`,
    );
  }
  const redisRow = summary.redis as { ratio: number; p99Ms: number } | undefined;
  const postgresRow = summary.postgres as { ratio: number; p99Ms: number } | undefined;
  console.log('');
  if (redisRow !== undefined) {
    const ok = redisRow.ratio >= GOALS.redisRatio && redisRow.p99Ms <= GOALS.redisP99Ms;
    verdicts.redisIngest = { ratio: +redisRow.ratio.toFixed(3), p99Ms: +redisRow.p99Ms.toFixed(1), met: ok };
    console.log(`Redis ingest: ${redisRow.ratio.toFixed(2)}x the no-op (goal >= ${GOALS.redisRatio}: ${mark(redisRow.ratio >= GOALS.redisRatio)}), p99 ${redisRow.p99Ms.toFixed(1)} ms (goal <= ${GOALS.redisP99Ms} ms: ${mark(redisRow.p99Ms <= GOALS.redisP99Ms)}): ${mark(ok)}`);
  }
  if (postgresRow !== undefined) {
    const ok = postgresRow.ratio >= GOALS.postgresRatio;
    verdicts.postgresIngest = { ratio: +postgresRow.ratio.toFixed(3), p99Ms: +postgresRow.p99Ms.toFixed(1), met: ok };
    console.log(`PostgreSQL ingest: ${postgresRow.ratio.toFixed(2)}x the no-op (goal >= ${GOALS.postgresRatio}): ${mark(ok)} (p99 ${postgresRow.p99Ms.toFixed(1)} ms)`);
  }
}

if (e2eRuns.length > 0) {
  console.log(`\n### End to end (${fmt(E2E_EVENTS)} events into PostgreSQL; median of ${E2E_ROUNDS} round(s); ${cpus} cores)\n`);
  console.log('| engine | workers | events/s (per round) | vs 1 worker | workers CPU (cores) | engine CPU (cores) | PostgreSQL backends (cores) | machine busy (cores) |');
  console.log('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
  const e2eSummary: Record<string, unknown> = {};
  for (const engine of ENGINES) {
    const one = e2eRuns.filter((r) => r.engine === engine && r.workers === 1);
    const oneRate = one.length > 0 ? median(one.map((r) => r.perSecond)) : null;
    for (const workers of WORKERS) {
      const runs = e2eRuns.filter((r) => r.engine === engine && r.workers === workers);
      if (runs.length === 0) continue;
      const rate = median(runs.map((r) => r.perSecond));
      const engineCores = runs.map((r) => r.engineCores).filter((v): v is number => v !== null);
      const row = {
        perSecond: rate,
        vsOne: oneRate === null ? null : rate / oneRate,
        workerCores: median(runs.map((r) => r.workerCores)),
        engineCores: engineCores.length === 0 ? null : median(engineCores),
        databaseCores: median(runs.map((r) => r.databaseCores)),
        machineCores: median(runs.map((r) => r.machineCores)),
      };
      e2eSummary[`${engine}-${workers}`] = row;
      failures += runs.reduce((n, r) => n + r.deadLettered + r.incomplete, 0);
      console.log(
        `| ${engine} | ${workers} | **${fmt(rate)}** (${runs.map((r) => fmt(r.perSecond)).join(', ')}) | ${row.vsOne === null ? '-' : `${row.vsOne.toFixed(2)}x`} | ${fmt(row.workerCores, 2)} | ${row.engineCores === null ? '(in PostgreSQL)' : fmt(row.engineCores, 2)} | ${fmt(row.databaseCores, 2)} | ${fmt(row.machineCores, 2)} |`,
      );
    }
  }
  summary.e2e = e2eSummary;
  console.log('');
  for (const engine of ENGINES) {
    const one = e2eSummary[`${engine}-1`] as { perSecond: number; workerCores: number; engineCores: number | null; databaseCores: number; machineCores: number } | undefined;
    const two = e2eSummary[`${engine}-2`] as { perSecond: number; vsOne: number } | undefined;
    if (one === undefined || two === undefined) continue;
    // What one worker's events cost in CPU, our processes together (worker, engine, database
    // backends), and so the most events/s the cores could give us: 1.5x one worker is within their
    // reach only below that. Other processes' load is reported beside it, not subtracted: ours get
    // their share of a busy machine whenever they are ready to run (with Redis, 2 workers reached
    // 1.94x one while other processes kept 1.6 cores busy).
    const ours = one.workerCores + (one.engineCores ?? 0) + one.databaseCores;
    const perEventCores = ours / one.perSecond;
    const others = Math.max(0, one.machineCores - ours);
    const ceiling = cpus / perEventCores;
    const wanted = GOALS.twoWorkers * one.perSecond;
    const ok = two.vsOne >= GOALS.twoWorkers;
    verdicts[`${engine}TwoWorkers`] = { vsOne: +two.vsOne.toFixed(2), cpuPerEventUs: Math.round(perEventCores * 1e6), cpuCeilingPerSecond: Math.round(ceiling), coresAllow: ceiling >= wanted, otherLoadCores: +others.toFixed(2), met: ok };
    console.log(
      `${engine}: 2 workers ${two.vsOne.toFixed(2)}x one (goal >= ${GOALS.twoWorkers}: ${mark(ok)}). One worker: ${fmt(one.perSecond)} events/s, busy ${fmt(one.workerCores * 100)}% of a core; ` +
        `${fmt(perEventCores * 1e6)} µs of CPU per event (worker + engine + database), so ${cpus} cores allow at most ${fmt(ceiling)} events/s: ` +
        `${ceiling >= wanted ? `the cores allow ${GOALS.twoWorkers}x (${fmt(wanted)})` : `the cores do NOT allow ${GOALS.twoWorkers}x (${fmt(wanted)}) here`}. ` +
        `Other processes kept ${fmt(others, 2)} of the ${cpus} cores busy meanwhile.`,
    );
  }
}

const loadAfter = loadAverage();
console.log(`\nload average before: ${loadBefore}; after: ${loadAfter}; cores busy over the whole run (all processes): ${fmt(machineAll.busy, 2)} of ${cpus} (steal ${fmt(machineAll.steal, 2)}), ${fmt(wallAll)} s`);
console.log(
  JSON.stringify({
    machine: { cpus, cpu: cpuModel, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, loadBefore, loadAfter, coresBusy: +machineAll.busy.toFixed(2) },
    settings: { seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, wrkThreads: WRK_THREADS, logLevel: LOG_LEVEL, engines: ENGINES, file: WITH_FILE, e2eEvents: E2E_EVENTS, e2eRounds: E2E_ROUNDS, workers: WORKERS },
    summary,
    verdicts,
    failures,
  }),
);
if (failures > 0) {
  console.error(`${failures} failure(s): see above`);
  process.exitCode = 1;
}
// Pools and timers of the libraries loaded here must not keep the benchmark alive.
setTimeout(() => process.exit(process.exitCode ?? 0), 1_000).unref();
