/**
 * BullMQ alone: three ways to enqueue one event, measured against each other on one engine, for the
 * reading of `npm run bench:scale` in docs/benchmarks.md (not run by it).
 * - `addBulk`: `addBulk([job])`, what BullQueue.enqueue does for each delivery;
 * - `add`: `add(job)`;
 * - `grouped`: the callers of one turn of the event loop share one `addBulk` (as the file queue's
 *   group commit does).
 * 50 concurrent callers, each enqueueing the connector's job data (a Teamwork event of about 2 KB and
 * our bookkeeping) in a loop for SECONDS; the modes alternate over ROUNDS rounds after a warm-up. Per
 * mode: operations/s, this process's CPU per operation, the engine's (the redis-server process; the
 * backends of the PostgreSQL database, by pid) and p99.
 *
 * Usage: node --import tsx bench/scale/enqueue.ts <redis|postgres> <url> [seconds=5] [rounds=3]
 * The Redis should run with appendonly yes + appendfsync always (as the connector requires); the
 * PostgreSQL database should be one made for the purpose (its `bullmq` schema is created).
 */
import { randomUUID } from 'node:crypto';
import { Queue, createPostgresBackend } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { signedDelivery } from './deliveries.ts';
import { processCpuSeconds } from './engines.ts';

const [engine = 'redis', url = 'redis://127.0.0.1:6379', secondsArg = '5', roundsArg = '3'] = process.argv.slice(2);
const SECONDS = Number(secondsArg);
const ROUNDS = Number(roundsArg);
const CALLERS = 50;

const body = JSON.parse(signedDelivery(5, 'token', new Date()).body) as unknown;
const payload = { format: 'v2-json', taskId: '10000005', body };
const job = () => ({
  name: 'TASK.UPDATED',
  data: { event: { id: randomUUID(), source: 'teamwork', type: 'TASK.UPDATED', entityKey: 'task:10000005', origin: 'webhook', receivedAt: new Date().toISOString(), payload }, spent: 0, lastError: null, firstAttemptAt: null },
  opts: { jobId: `ev-${randomUUID()}`, removeOnComplete: true },
});

let queue: Queue;
let engineCpu: () => Promise<number>;
const closers: Array<() => Promise<unknown>> = [];
if (engine === 'redis') {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
  await redis.connect();
  closers.push(async () => redis.disconnect());
  queue = new Queue('enqueue-teamwork', { connection: redis, prefix: 'bench-enqueue' });
  const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
  engineCpu = async () => processCpuSeconds(pid) ?? 0;
} else {
  queue = new Queue('enqueue-teamwork', { connection: { connectionString: url, migrate: true, max: 4 }, prefix: 'bench-enqueue' }, createPostgresBackend) as unknown as Queue;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  closers.push(() => admin.end());
  const name = new URL(url).pathname.slice(1);
  engineCpu = async () => {
    const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    return rows.reduce((sum, r) => sum + (processCpuSeconds(r.pid) ?? 0), 0);
  };
}
await queue.waitUntilReady();

let pending: Array<{ job: ReturnType<typeof job>; resolve: () => void; reject: (err: unknown) => void }> = [];
const modes = {
  addBulk: async () => void (await queue.addBulk([job()])),
  add: async () => {
    const j = job();
    await queue.add(j.name, j.data, j.opts);
  },
  grouped: () =>
    new Promise<void>((resolve, reject) => {
      pending.push({ job: job(), resolve, reject });
      if (pending.length > 1) return;
      setImmediate(() => {
        const batch = pending;
        pending = [];
        queue.addBulk(batch.map((b) => b.job)).then(
          () => batch.forEach((b) => b.resolve()),
          (err: unknown) => batch.forEach((b) => b.reject(err)),
        );
      });
    }),
} as const;
type Mode = keyof typeof modes;

async function run(mode: Mode, print: boolean): Promise<void> {
  const enqueue = modes[mode];
  const deadline = performance.now() + SECONDS * 1000;
  const cpu0 = process.cpuUsage();
  const engine0 = await engineCpu();
  const t0 = performance.now();
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await enqueue();
        latencies.push(performance.now() - start);
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const engineUs = ((await engineCpu()) - engine0) * 1e6;
  const n = latencies.length;
  latencies.sort((a, b) => a - b);
  if (print) {
    console.log(
      `${engine} ${mode.padEnd(7)} ${(n / wall).toFixed(0).padStart(6)} ops/s, this process ${((cpu.user + cpu.system) / n).toFixed(0).padStart(5)} µs/op, ` +
        `engine ${(engineUs / n).toFixed(0).padStart(5)} µs/op, p99 ${(latencies[Math.floor(n * 0.99)] ?? 0).toFixed(1)} ms`,
    );
  }
  await queue.obliterate({ force: true });
}

try {
  for (const mode of Object.keys(modes) as Mode[]) await run(mode, false); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    const order = Object.keys(modes) as Mode[];
    for (const mode of r % 2 === 0 ? order : order.reverse()) await run(mode, true);
  }
} finally {
  await queue.close();
  for (const close of closers) await close();
}
