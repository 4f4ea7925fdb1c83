/**
 * Queue benchmark (npm run bench:queue). Prints, for this machine:
 * 1. the raw cost of durability: write + fsync of one small record, in a loop (the baseline);
 * 2. durable enqueue throughput with 64 concurrent single-event callers (a webhook burst), with group
 *    commit and with one fsync per event, in the same run, as events/s and as a ratio to the baseline;
 * 3. the RSS growth of a fresh process that opens a queue holding 1,000,000 pending events (measured in a
 *    child started with --expose-gc, after full GCs), and claim+ack throughput from that backlog.
 * Options (env): BENCH_EVENTS (single-event enqueues per mode, default 3000), BENCH_BACKLOG (default 1e6).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const EVENTS = Number(process.env.BENCH_EVENTS ?? 3000);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 1_000_000);
const CONCURRENCY = 64;
const log = createLogger({ level: 'warn', console: true });
const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-queue-'));
  dirs.push(dir);
  return dir;
};

/** A realistic webhook event: a Teamwork task update of about 400 bytes on disk. */
function event(n: number): QueueEvent {
  return {
    id: `evt-${n.toString(36)}-${(n * 2654435761) % 1e9}`,
    source: n % 3 === 0 ? 'missive' : 'teamwork',
    type: n % 3 === 0 ? 'incoming_email' : 'TASK.UPDATED',
    entityKey: n % 3 === 0 ? `conversation:${n % 5000}` : `task:${n % 20000}`,
    origin: 'webhook',
    receivedAt: new Date(),
    payload: { eventCreator: { id: 4242, firstName: 'Ada' }, task: { id: 1_000_000 + (n % 20000), name: `Task number ${n}`, status: 'active', tags: ['ops'] } },
  };
}

async function fsyncBaseline(): Promise<number> {
  const file = path.join(tempDir(), 'baseline.jsonl');
  const handle = await open(file, 'a');
  const line = Buffer.from(`${JSON.stringify(event(1))}\n`);
  const n = 500;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await handle.write(line);
    await handle.sync();
  }
  const ms = performance.now() - t0;
  await handle.close();
  return (n / ms) * 1000;
}

async function enqueueThroughput(groupCommit: boolean): Promise<{ perSecond: number; fsyncs: number; p99Ms: number }> {
  const queue = await FileQueue.open({ dir: tempDir(), log, groupCommit });
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < EVENTS) {
        const n = next++;
        const s = performance.now();
        await queue.enqueue([event(n)]);
        latencies.push(performance.now() - s);
      }
    }),
  );
  const ms = performance.now() - t0;
  const fsyncs = queue.counters.fsyncs;
  await queue.close();
  latencies.sort((a, b) => a - b);
  return { perSecond: (EVENTS / ms) * 1000, fsyncs, p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0 };
}

async function buildBacklog(dir: string): Promise<{ ms: number; bytes: number }> {
  const queue = await FileQueue.open({ dir, log });
  const t0 = performance.now();
  const batch = 5000;
  for (let i = 0; i < BACKLOG; i += batch) {
    await queue.enqueue(Array.from({ length: Math.min(batch, BACKLOG - i) }, (_, k) => event(i + k)));
  }
  const ms = performance.now() - t0;
  await queue.close();
  return { ms, bytes: statSync(path.join(dir, 'inbox.jsonl')).size };
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

try {
  console.log(`queue benchmark: Node ${process.version}, ${EVENTS} single-event enqueues per mode from ${CONCURRENCY} concurrent callers`);
  const baseline = await fsyncBaseline();
  console.log(`  baseline     write+fsync of one record in a loop: ${baseline.toFixed(0)} /s`);
  const single = await enqueueThroughput(false);
  console.log(`  one fsync per event : ${single.perSecond.toFixed(0)} events/s (${(single.perSecond / baseline).toFixed(2)}x baseline), ${single.fsyncs} fsyncs, p99 ${single.p99Ms.toFixed(1)} ms`);
  const grouped = await enqueueThroughput(true);
  console.log(`  group commit        : ${grouped.perSecond.toFixed(0)} events/s (${(grouped.perSecond / baseline).toFixed(2)}x baseline), ${grouped.fsyncs} fsyncs, p99 ${grouped.p99Ms.toFixed(1)} ms`);
  console.log(`  group commit speed-up: ${(grouped.perSecond / single.perSecond).toFixed(1)}x, ${(EVENTS / grouped.fsyncs).toFixed(1)} events per fsync`);

  const dir = tempDir();
  const built = await buildBacklog(dir);
  console.log(`  backlog: ${BACKLOG} events enqueued in batches of 5000 in ${(built.ms / 1000).toFixed(1)} s (${((BACKLOG / built.ms) * 1000).toFixed(0)} events/s), inbox.jsonl ${mb(built.bytes)} MB`);
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(here, 'rss-child.ts'), dir], { encoding: 'utf8', cwd: path.resolve(here, '../..') });
  if (child.status !== 0) throw new Error(`rss child failed: ${child.stderr}`);
  const r = JSON.parse(child.stdout.trim().split('\n').pop() as string) as { pending: number; rssBefore: number; rssAfter: number; openMs: number; oneByOne: number; together: number };
  const growth = r.rssAfter - r.rssBefore;
  console.log(`  open with ${r.pending} pending: ${(r.openMs / 1000).toFixed(1)} s; RSS ${mb(r.rssBefore)} -> ${mb(r.rssAfter)} MB: +${mb(growth)} MB (${(growth / r.pending).toFixed(1)} bytes/event; limit ~50 MB)`);
  console.log(`  claim (25) + ack from that backlog: ${r.oneByOne.toFixed(0)} events/s acking one by one, ${r.together.toFixed(0)} events/s acking each batch at once`);
  console.log(
    JSON.stringify({
      baselineFsyncsPerSecond: Math.round(baseline),
      oneFsyncPerEvent: { eventsPerSecond: Math.round(single.perSecond), fsyncs: single.fsyncs, p99Ms: +single.p99Ms.toFixed(1) },
      groupCommit: { eventsPerSecond: Math.round(grouped.perSecond), fsyncs: grouped.fsyncs, p99Ms: +grouped.p99Ms.toFixed(1) },
      groupCommitSpeedup: +(grouped.perSecond / single.perSecond).toFixed(1),
      backlog: { events: r.pending, inboxMB: +mb(built.bytes), openSeconds: +(r.openMs / 1000).toFixed(1), rssGrowthMB: +mb(growth), claimAckPerSecond: { oneByOne: Math.round(r.oneByOne), batchAtOnce: Math.round(r.together) } },
    }),
  );
  if (growth > 50 * 1024 * 1024 * 1.1) {
    console.error(`RSS growth ${mb(growth)} MB is over the ~50 MB budget`);
    process.exitCode = 1;
  }
} finally {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
