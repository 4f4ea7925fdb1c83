/**
 * Measures what opening a queue with a large backlog costs in memory: RSS before and after the index
 * is built (both after full GCs), then claims and acks events from the backlog, acking one at a time
 * (awaiting each) and then a claimed batch at once (concurrent acks share one write).
 * Run by bench/queue/run.ts:  node --expose-gc --import tsx bench/queue/rss-child.ts <dir>
 */
import { createLogger } from '../../src/log.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: rss-child.ts <dir>');
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

function settledRss(): number {
  gc!();
  gc!();
  return process.memoryUsage().rss;
}

const log = createLogger({ level: 'warn', console: true });
const before = settledRss();
const started = performance.now();
const queue = await FileQueue.open({ dir, log });
const openMs = performance.now() - started;
const stats = await queue.stats();
const after = settledRss();

async function settle(count: number, together: boolean): Promise<number> {
  const t0 = performance.now();
  let settled = 0;
  while (settled < count) {
    const batch = await queue.claim({ limit: 25 });
    if (together) await Promise.all(batch.map((c) => queue.ack(c.event.id)));
    else for (const c of batch) await queue.ack(c.event.id);
    settled += batch.length;
  }
  return (settled / (performance.now() - t0)) * 1000;
}
const oneByOne = await settle(5000, false);
const together = await settle(5000, true);
await queue.close();
process.stdout.write(`${JSON.stringify({ pending: stats.pending, rssBefore: before, rssAfter: after, openMs, oneByOne, together })}\n`);
