/**
 * The BullMQ queue (QUEUE_BACKEND=redis and QUEUE_BACKEND=postgres): the shared conformance suite on
 * the real engines, then what only a shared engine can get wrong.
 */
import { randomUUID } from 'node:crypto';
import { describe } from 'vitest';
import { createLogger, type Logger } from '../../src/log.ts';
import { BullQueue, type EngineSettings } from '../../src/queue/bull-queue.ts';
import { TEST_POSTGRES_URL, TEST_REDIS_URL, requirePostgres, requireRedis } from '../helpers/services.ts';
import { queueConformance } from './conformance.ts';

const quiet: Logger = createLogger({ level: 'warn', console: false });

const engines: Array<{ name: 'redis' | 'postgres'; url: string; available: boolean }> = [
  { name: 'redis', url: TEST_REDIS_URL, available: (await requireRedis()).available },
  { name: 'postgres', url: TEST_POSTGRES_URL, available: (await requirePostgres()).available },
];

for (const engine of engines) {
  describe.skipIf(!engine.available)(`BullMQ on ${engine.name}`, () => {
    queueConformance(`bullmq on ${engine.name}`, async () => {
      const settings: EngineSettings = { engine: engine.name, url: engine.url, prefix: `t${randomUUID().slice(0, 8)}` };
      const opened: BullQueue[] = [];
      return {
        open: async () => {
          const q = await BullQueue.open({ settings, log: quiet });
          opened.push(q);
          return q;
        },
        destroy: async () => {
          const q = await BullQueue.open({ settings, log: quiet });
          await q.obliterate();
          await q.close();
        },
      };
    });
  });
}
