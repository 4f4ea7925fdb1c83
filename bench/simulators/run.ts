/**
 * `npm run bench:simulators`: requests per second served by the Teamwork and Missive simulators, and
 * the ratio against a no-op Fastify server measured the same way in the same run. Each server runs in a
 * child process; this process drives it over loopback with keep-alive connections, CONCURRENCY requests
 * in flight, for REQUESTS requests or SECONDS seconds, whichever ends first (after a warm-up), in
 * ROUNDS interleaved rounds; the median round of each server is reported.
 *
 * Environment: BENCH_REQUESTS (default 10000), BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONCURRENCY (32).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BenchRequest, BenchTarget } from './server.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 10_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const WARMUP = Math.min(2_000, Math.floor(REQUESTS / 10));

interface Result {
  name: string;
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
}

async function startTarget(kind: string): Promise<{ child: ChildProcess; target: BenchTarget }> {
  const serverFile = fileURLToPath(new URL('./server.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', serverFile, kind], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  return { child, target: JSON.parse(first) as BenchTarget };
}

function request(agent: http.Agent, target: BenchTarget, what: BenchRequest): Promise<number> {
  const { method, path, body } = typeof what === 'string' ? { method: 'GET', path: what, body: undefined } : what;
  return new Promise((resolve, reject) => {
    const req = http.request(`${target.url}${path}`, { agent, method, headers: target.headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs `count` requests (or until `deadline`) with CONCURRENCY in flight; returns done and failed counts. */
async function load(agent: http.Agent, target: BenchTarget, count: number, deadline: number): Promise<{ done: number; errors: number }> {
  let next = 0;
  let done = 0;
  let errors = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      const what = target.paths[next++ % target.paths.length] as BenchRequest;
      try {
        const status = await request(agent, target, what);
        if (status !== 200) errors++;
      } catch {
        errors++;
      }
      done++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { done, errors };
}

/** One timed run against a started target. */
async function measure(target: BenchTarget, agent: http.Agent): Promise<{ requests: number; errors: number; seconds: number; perSecond: number }> {
  const started = process.hrtime.bigint();
  const { done, errors } = await load(agent, target, REQUESTS, Date.now() + SECONDS * 1000);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { requests: done, errors, seconds, perSecond: done / seconds };
}

const KINDS = [
  ['no-op Fastify', 'noop'],
  ['Teamwork simulator', 'teamwork'],
  ['Missive simulator', 'missive'],
  ['Airtable simulator', 'airtable'],
] as const;

// Start every server, warm each up, then measure them in interleaved rounds so that load from other
// processes on the machine hits all three alike; report the median round per server.
const servers = [] as Array<{ name: string; child: ChildProcess; target: BenchTarget; agent: http.Agent; runs: Result[] }>;
try {
  for (const [name, kind] of KINDS) {
    const { child, target } = await startTarget(kind);
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    servers.push({ name, child, target, agent, runs: [] });
    await load(agent, target, WARMUP, Date.now() + 5_000);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const server of servers) server.runs.push({ name: server.name, ...(await measure(server.target, server.agent)) });
  }
} finally {
  for (const server of servers) {
    server.agent.destroy();
    server.child.kill('SIGTERM');
    await new Promise((resolve) => server.child.once('exit', resolve));
  }
}

const median = (runs: Result[]): Result => [...runs].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(runs.length / 2)] as Result;
const results = servers.map((s) => ({ ...median(s.runs), errors: s.runs.reduce((n, r) => n + r.errors, 0) }));
const baseline = (results[0] as Result).perSecond;
process.stdout.write(
  `Simulator throughput (loopback, keep-alive, ${CONCURRENCY} in flight; median of ${ROUNDS} interleaved rounds of up to ${REQUESTS} requests or ${SECONDS} s)\n`,
);
for (const r of results) {
  process.stdout.write(
    `${r.name.padEnd(20)} ${r.perSecond.toFixed(0).padStart(7)} req/s  ratio ${(r.perSecond / baseline).toFixed(2)}  (${r.requests} requests in ${r.seconds.toFixed(2)} s; ${r.errors} non-200 in all rounds)\n`,
  );
}
const failed = results.filter((r) => r.errors > 0);
if (failed.length > 0) {
  process.stdout.write(`FAILED: non-200 answers from ${failed.map((r) => r.name).join(', ')}\n`);
  process.exitCode = 1;
}
