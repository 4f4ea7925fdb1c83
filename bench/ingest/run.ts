/**
 * `npm run bench:ingest`: how fast the connector takes webhook deliveries, against two references
 * measured the same way in the same run:
 *   (a) the connector, run as an operator runs it (`connector start`: webhooks and worker in one
 *       process, SQLite, file queue, LOG_LEVEL=info, logs to the console and logs/app.log);
 *   (b) a no-op Fastify server (reads the body, answers 200): the ceiling on this machine;
 *   (c) the seed's design: signature, parse, then append + fsync under an exclusive lock, one at a time.
 * Each server runs in a process of its own, and so does the load generator (load.ts): signed Teamwork
 * v2 JSON deliveries of about 2 KB, CONNECTIONS keep-alive connections, SECONDS seconds, after a short
 * warm-up. Servers are measured in ROUNDS interleaved rounds (so that load from other processes hits
 * all alike), in the order b, a, (a2, s), c: each round of the connector right after the no-op's. Each
 * server's median round is reported (requests/s, p50/p99 latency, CPU used by the server process), and
 * the ratios a/b and a/c against the targets (a/b >= 0.5 with p99 <= 25 ms, a/c >= 5). A ratio is taken
 * within each round and the median of those is the verdict: this shared machine's speed drifts by up to
 * 2x over minutes, and servers measured seconds apart see the same machine, where the medians of
 * separate rounds may not (the ratio of the medians is printed beside it). It is a benchmark, not a
 * test: it prints and exits 0 unless something broke.
 *
 * For comparison it also measures (a2) the connector split in two processes, `serve` and `work`, on one
 * data directory, and on request (s) `serve` alone, without a worker. After each round of a connector
 * it waits until the worker has processed the round's backlog (reported, with how long it took), so
 * that the next server's round is not measured beside a worker still busy.
 *
 * Environment: BENCH_SECONDS (10), BENCH_CONNECTIONS (50), BENCH_ROUNDS (5), BENCH_WARMUP_SECONDS (2),
 * BENCH_LOG_LEVEL (info: the connector's LOG_LEVEL), BENCH_SPLIT (1; 0 skips (a2)), BENCH_ONLY (the
 * servers to run, e.g. `a,b,c` or `s`; default a, a2, b, c).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
/** Also measure `serve` and `work` as two processes (BENCH_SPLIT=0 to skip). */
const SPLIT = process.env.BENCH_SPLIT !== '0';
/** Only these servers (comma-separated keys, e.g. `a,b`); all when unset. */
const ONLY = process.env.BENCH_ONLY?.split(',').map((k) => k.trim()) ?? null;
const wanted = (key: string) => ONLY === null || ONLY.includes(key);
const TOKEN = 'bench-ingest-token';
const DRAIN_TIMEOUT_MS = 300_000;

interface Server {
  key: 'a' | 'a2' | 's' | 'b' | 'c';
  name: string;
  child: ChildProcess;
  /** Other processes of the same server (the `work` process beside `serve`); their CPU counts too. */
  helpers: ChildProcess[];
  url: string;
  /** Bytes the server printed (the connector's console log). */
  printed: () => number;
}

interface Load {
  requests: number;
  non200: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  statuses: Record<string, number>;
}

interface Round extends Load {
  /** CPU seconds the server's processes used during the round, per wall second (1.0 = one core). */
  serverCpu: number | null;
  /** CPU microseconds the server's processes used per request answered. */
  cpuPerRequestUs: number | null;
  /** The connector's queue (pending + delayed + in flight) at the end of the round. */
  backlog: number | null;
  /** Seconds the connector's worker took, after the round, to process that backlog (null: no worker). */
  drainSeconds: number | null;
}

const dirs: string[] = [];
const tempDir = (name: string) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), `bench-ingest-${name}-`));
  dirs.push(dir);
  return dir;
};

/**
 * Starts a server and resolves once it answers. `port`: the server was told to listen there (the
 * connector, whose "listening on" line is not printed below LOG_LEVEL=info); else it prints its URL.
 */
async function startServer(key: Server['key'], name: string, args: string[], env: Record<string, string>, cwd: string, port?: number): Promise<Server> {
  const child = spawn(process.execPath, ['--import', TSX, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let printed = 0;
  let head = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      printed += d.length;
      if (head.length < 64 * 1024) head += d.toString();
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(head);
      if (match && port === undefined) resolve(match[1] as string);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening:\n${head}`)));
    if (port !== undefined) {
      const poll = () =>
        fetch(`http://127.0.0.1:${port}/health`).then(
          (res) => (res.ok ? resolve(`http://127.0.0.1:${port}`) : setTimeout(poll, 50)),
          () => setTimeout(poll, 50),
        );
      poll();
    }
  });
  return { key, name, child, helpers: [], url, printed: () => printed };
}

/** A port free right now on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** CPU seconds (user + system) the processes have used so far, from /proc; null where there is none. */
function cpuSeconds(children: readonly ChildProcess[]): number | null {
  let total = 0;
  for (const child of children) {
    if (child.pid === undefined) return null;
    try {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      total += (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
    } catch {
      return null;
    }
  }
  return total;
}

async function load(url: string, seconds: number): Promise<Load> {
  const child = spawn(process.execPath, ['--import', TSX, path.join(here, 'load.ts'), url, TOKEN, String(seconds), String(CONNECTIONS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`the load generator exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop() as string) as Load;
}

async function backlog(server: Server): Promise<number | null> {
  if (server.key === 'b' || server.key === 'c') return null;
  const res = await fetch(`${server.url}/health`);
  const health = (await res.json()) as { queue: { size: number } };
  return health.queue.size;
}

async function measure(server: Server): Promise<Round> {
  const processes = [server.child, ...server.helpers];
  const cpu0 = cpuSeconds(processes);
  const t0 = performance.now();
  const result = await load(server.url, SECONDS);
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(processes);
  const used = cpu0 === null || cpu1 === null ? null : cpu1 - cpu0;
  return {
    ...result,
    serverCpu: used === null ? null : used / wall,
    cpuPerRequestUs: used === null || result.requests === 0 ? null : (used / result.requests) * 1e6,
    ...(await drained(server)),
  };
}

/**
 * The backlog at the end of the round, then waits until the worker has processed it, so that it does not
 * take CPU from the next server's round (which it did: the no-op server measured after the connector
 * was slowed by the connector's worker still draining).
 */
async function drained(server: Server): Promise<{ backlog: number | null; drainSeconds: number | null }> {
  const left = await backlog(server);
  if (left === null || server.key === 's') return { backlog: left, drainSeconds: null };
  const t0 = performance.now();
  for (let size = left; size > 0; size = (await backlog(server)) ?? 0) {
    if (performance.now() - t0 > DRAIN_TIMEOUT_MS) throw new Error(`${server.name}: ${size} events still queued ${DRAIN_TIMEOUT_MS / 1000} s after the round`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { backlog: left, drainSeconds: (performance.now() - t0) / 1000 };
}

/** Within a round: the no-op first, then the connector at once, then the rest. */
const ROUND_ORDER: ReadonlyArray<Server['key']> = ['b', 'a', 'a2', 's', 'c'];
const middle = (values: number[]): number => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] as number;
const median = (rounds: Round[]): Round => [...rounds].sort((x, y) => x.perSecond - y.perSecond)[Math.floor(rounds.length / 2)] as Round;
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const servers: Server[] = [];
try {
  const connectorEnv = { HOST: '127.0.0.1', LOG_LEVEL, TEAMWORK_WEBHOOK_TOKEN: TOKEN, BACKFILL_ON_START: 'false', BACKFILL_INTERVAL_MINUTES: '0' };
  const cli = path.join(ROOT, 'src', 'cli.ts');
  if (wanted('a')) {
    const port = await freePort();
    servers.push(await startServer('a', 'connector (start)', [cli, 'start'], { ...connectorEnv, PORT: String(port) }, tempDir('connector'), port));
  }
  if (SPLIT && wanted('a2')) {
    // The scale-out layout on one machine: `serve` and `work` as two processes on one DATA_DIR.
    const splitDir = tempDir('split');
    const splitPort = await freePort();
    const serve = await startServer('a2', 'connector (serve + work)', [cli, 'serve'], { ...connectorEnv, PORT: String(splitPort) }, splitDir, splitPort);
    const work = spawn(process.execPath, ['--import', TSX, cli, 'work'], { cwd: splitDir, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...connectorEnv }, stdio: ['ignore', 'ignore', 'ignore'] });
    serve.helpers.push(work);
    servers.push(serve);
  }
  if (ONLY?.includes('s')) {
    // Diagnosis only (BENCH_ONLY=s): the webhook path alone, `serve` with no worker draining the queue.
    const servePort = await freePort();
    servers.push(await startServer('s', 'connector (serve alone)', [cli, 'serve'], { ...connectorEnv, PORT: String(servePort) }, tempDir('serve'), servePort));
  }
  if (wanted('b')) servers.push(await startServer('b', 'no-op Fastify', [path.join(here, 'servers.ts'), 'noop', tempDir('noop'), TOKEN], {}, ROOT));
  if (wanted('c')) servers.push(await startServer('c', 'serialised append + fsync', [path.join(here, 'servers.ts'), 'serial-fsync', tempDir('serial'), TOKEN], {}, ROOT));

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`ingest benchmark: Node ${process.version}, ${os.availableParallelism()} CPUs (${cpu}), ${fmt(os.totalmem() / 2 ** 30, 1)} GiB, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`${CONNECTIONS} connections, ${SECONDS} s per round after ${WARMUP} s of warm-up, ${ROUNDS} interleaved rounds, signed ~2 KB Teamwork deliveries; connector LOG_LEVEL=${LOG_LEVEL}`);

  for (const server of servers) {
    await load(server.url, WARMUP);
    await drained(server);
  }
  const rounds = new Map<Server['key'], Round[]>(servers.map((s) => [s.key, []]));
  const order = [...servers].sort((x, y) => ROUND_ORDER.indexOf(x.key) - ROUND_ORDER.indexOf(y.key));
  for (let r = 0; r < ROUNDS; r++) {
    for (const server of order) {
      const round = await measure(server);
      rounds.get(server.key)?.push(round);
      console.log(
        `  round ${r + 1} ${server.name}: ${fmt(round.perSecond)} req/s, p50 ${fmt(round.p50Ms, 1)} ms, p99 ${fmt(round.p99Ms, 1)} ms` +
          `${round.non200 + round.errors > 0 ? `, ${round.non200} non-200, ${round.errors} errors` : ''}${round.serverCpu === null ? '' : `, server CPU ${fmt(round.serverCpu, 2)} (${fmt(round.cpuPerRequestUs ?? 0)} µs/request)`}` +
          `${round.backlog === null ? '' : `, queue backlog ${fmt(round.backlog)}`}${round.drainSeconds === null ? '' : ` (processed ${fmt(round.drainSeconds, 1)} s later)`}`,
      );
    }
  }

  const result = Object.fromEntries(servers.map((s) => [s.key, median(rounds.get(s.key) as Round[])])) as Record<Server['key'], Round>;
  console.log('');
  console.log('| server | requests/s | p50 ms | p99 ms | server CPU (cores) | CPU µs / request |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const s of servers) {
    const m = result[s.key];
    const cpu = m.serverCpu === null ? '- | -' : `${fmt(m.serverCpu, 2)} | ${fmt(m.cpuPerRequestUs ?? 0)}`;
    console.log(`| (${s.key}) ${s.name} | ${fmt(m.perSecond)} | ${fmt(m.p50Ms, 1)} | ${fmt(m.p99Ms, 1)} | ${cpu} |`);
  }
  const { a, a2, b, c } = result as Partial<Record<Server['key'], Round>>;
  const mark = (ok: boolean) => (ok ? 'met' : 'MISSED');
  const ratios: Record<string, number> = {};
  /** x/y within each round, their median, and the ratio of the two servers' medians. */
  const paired = (x: Server['key'], y: Server['key'], digits: number) => {
    const xs = rounds.get(x) as Round[];
    const ys = rounds.get(y) as Round[];
    const perRound = xs.map((round, i) => round.perSecond / (ys[i] as Round).perSecond);
    const m = +middle(perRound).toFixed(digits);
    const ofMedians = (result[x] as Round).perSecond / (result[y] as Round).perSecond;
    return { value: m, text: `${m.toFixed(digits)} (per round ${perRound.map((v) => v.toFixed(digits)).join(', ')}; ratio of the medians ${ofMedians.toFixed(digits)})` };
  };
  if (a !== undefined && b !== undefined) {
    const ab = paired('a', 'b', 2);
    ratios.ab = ab.value;
    console.log('');
    console.log(`a/b = ${ab.text}: target >= 0.5 ${mark(ab.value >= 0.5)}; connector p99 ${a.p99Ms.toFixed(1)} ms (target <= 25 ms: ${mark(a.p99Ms <= 25)})`);
  }
  if (a !== undefined && c !== undefined) {
    const ac = paired('a', 'c', 1);
    ratios.ac = ac.value;
    console.log(`a/c = ${ac.text}: target >= 5 ${mark(ac.value >= 5)}`);
  }
  if (a2 !== undefined && b !== undefined && c !== undefined) {
    ratios.a2b = +(a2.perSecond / b.perSecond).toFixed(2);
    ratios.a2c = +(a2.perSecond / c.perSecond).toFixed(1);
    console.log(`a2/b = ${ratios.a2b.toFixed(2)}, a2/c = ${ratios.a2c.toFixed(1)}, a2 p99 ${a2.p99Ms.toFixed(1)} ms (serve and work as two processes)`);
  }
  const failures = servers.reduce((n, s) => n + (rounds.get(s.key) ?? []).reduce((k, r) => k + r.non200 + r.errors, 0), 0);
  console.log(
    JSON.stringify({
      machine: { cpus: os.availableParallelism(), cpu, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version },
      settings: { seconds: SECONDS, connections: CONNECTIONS, rounds: ROUNDS, logLevel: LOG_LEVEL },
      results: Object.fromEntries(
        servers.map((s) => {
          const m = result[s.key];
          return [s.key, { name: s.name, perSecond: Math.round(m.perSecond), p50Ms: +m.p50Ms.toFixed(2), p99Ms: +m.p99Ms.toFixed(2), serverCpu: m.serverCpu, cpuPerRequestUs: m.cpuPerRequestUs }];
        }),
      ),
      ratios,
      connectorConsoleBytes: servers[0]?.printed(),
      failures,
    }),
  );
  if (failures > 0) {
    console.error(`${failures} requests failed or were answered other than 200`);
    process.exitCode = 1;
  }
} finally {
  for (const s of servers) {
    for (const child of [s.child, ...s.helpers]) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill('SIGTERM');
      await once(child, 'exit').catch(() => {});
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
