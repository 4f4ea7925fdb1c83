/**
 * A process that claims from the shared queue and then holds what it claimed until it is killed (for
 * bull-queue.test.ts: what a `work` process that dies leaves behind). Nothing here is product code.
 *
 * Environment: CHILD_ENGINE (redis | postgres), CHILD_URL, CHILD_PREFIX, CHILD_LOCK_MS. It prints
 * `CLAIMED <id>,<id>...` once it holds events, then waits.
 */
import { createLogger } from '../../src/log.ts';
import { BullQueue } from '../../src/queue/bull-queue.ts';

const env = process.env;
const queue = await BullQueue.open({
  settings: { engine: env.CHILD_ENGINE === 'postgres' ? 'postgres' : 'redis', url: env.CHILD_URL ?? '', prefix: env.CHILD_PREFIX ?? '', lockMs: Number(env.CHILD_LOCK_MS) },
  log: createLogger({ level: 'silent', console: false }),
});
for (;;) {
  const claimed = await queue.claim({ limit: 10 });
  if (claimed.length > 0) {
    process.stdout.write(`CLAIMED ${claimed.map((c) => c.event.id).join(',')}\n`);
    break;
  }
  await queue.waitForWork(100);
}
setInterval(() => {}, 60_000);
