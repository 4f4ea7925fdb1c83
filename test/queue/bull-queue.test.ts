/**
 * The BullMQ queue (QUEUE_BACKEND=redis and QUEUE_BACKEND=postgres): the shared conformance suite on
 * the real engines, then what only a shared engine can get wrong.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
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

/** What only a queue shared by several processes can get wrong: two processes are two BullQueues on one prefix. */
for (const engine of engines) {
  describe.skipIf(!engine.available)(`BullMQ on ${engine.name}, shared by two processes`, () => {
    const open: BullQueue[] = [];
    let settings: EngineSettings;

    beforeEach(() => {
      settings = { engine: engine.name, url: engine.url, prefix: `t${randomUUID().slice(0, 8)}` };
    });

    afterEach(async () => {
      await open[0]?.obliterate().catch(() => {});
      for (const q of open.splice(0)) await q.close();
    });

    async function process(): Promise<BullQueue> {
      const q = await BullQueue.open({ settings, log: quiet });
      open.push(q);
      return q;
    }

    function event(n: number, entityKey: string | null): QueueEvent {
      return { id: `${settings.prefix}-e${n}`, source: 'teamwork', type: 'TASK.UPDATED', entityKey, origin: 'webhook', receivedAt: new Date(Date.now() - 1000 + n), payload: { n } };
    }

    /** Claims on `q` for `ms`, returning what it got (at most `n`). */
    async function claimFor(q: BullQueue, ms: number, n = 10): Promise<string[]> {
      const got: string[] = [];
      const deadline = Date.now() + ms;
      while (got.length < n && Date.now() < deadline) {
        got.push(...(await q.claim({ limit: n - got.length })).map((c) => c.event.id));
        if (got.length < n) await q.waitForWork(100);
      }
      return got;
    }

    it('commits the enqueues of one turn together: every caller hears its own answer, a bad event fails only its own call', async () => {
      const one = await process();
      const calls = Array.from({ length: 200 }, (_, n) => one.enqueue([event(n, `task:${n}`)]));
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const bad = one.enqueue([{ ...event(999, 'task:999'), payload: cyclic }]);
      await expect(bad).rejects.toMatchObject({ code: 'CONN_ERR_EVENT_INVALID' });
      await Promise.all(calls);
      expect(await one.stats()).toMatchObject({ pending: 200, inFlight: 0 });
      const claimed = await one.claim({ limit: 300 });
      expect(claimed.map((c) => c.event.id).sort()).toEqual(Array.from({ length: 200 }, (_, n) => `${settings.prefix}-e${n}`).sort());
    });

    it("never hands one entity's events to two processes at once; the other gets it once settled", async () => {
      const one = await process();
      const two = await process();
      await one.enqueue([event(1, 'task:A'), event(2, 'task:A'), event(3, 'task:B')]);
      expect((await one.claim({ limit: 10 })).map((c) => c.event.id)).toEqual([`${settings.prefix}-e1`, `${settings.prefix}-e3`]);
      // e2 (task:A) waits while e1 is in the other process's hands, however often it is asked for.
      expect(await claimFor(two, 1500)).toEqual([]);
      // A newer event for the entity, arriving meanwhile, is kept too (no event replaces another).
      await two.enqueue([event(4, 'task:A')]);
      expect(await claimFor(two, 600)).toEqual([]);
      await one.ack(`${settings.prefix}-e1`);
      const next = await claimFor(two, 5000, 1);
      expect(next).toHaveLength(1);
      expect([`${settings.prefix}-e2`, `${settings.prefix}-e4`]).toContain(next[0]);
      // ...and the last one only once that one is settled, by whichever process asks.
      expect(await claimFor(one, 800)).toEqual([]);
      await two.ack(next[0]!);
      const last = await claimFor(one, 5000, 1);
      expect(last).toEqual([`${settings.prefix}-e2`, `${settings.prefix}-e4`].filter((id) => id !== next[0]));
      await one.ack(last[0]!);
      await one.ack(`${settings.prefix}-e3`);
      expect(await one.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
    });

    it.runIf(engine.name === 'redis')('lets an event go, and its entity, when the engine says its lock is gone', async () => {
      const one = await process();
      await one.enqueue([event(1, 'task:A'), event(2, 'task:A')]);
      const [first] = await one.claim();
      expect(first?.event.id).toBe(`${settings.prefix}-e1`);
      // What a lock expiry looks like to the holder: BullMQ's lock key is gone.
      const redis = new Redis(engine.url);
      try {
        const keys = await redis.keys(`${settings.prefix}:${settings.prefix}-teamwork:*:lock`);
        expect(keys).toHaveLength(1);
        await redis.del(keys[0]!);
      } finally {
        redis.disconnect();
      }
      await expect(one.ack(`${settings.prefix}-e1`)).rejects.toMatchObject({ code: 'CONN_ERR_INTERNAL', retryable: false });
      // The entity is not held for ever by an event this process no longer has.
      expect(await claimFor(one, 5000, 1)).toEqual([`${settings.prefix}-e2`]);
    });

    it('gives an entity back when its event is retried or dead-lettered, and when its process closes', async () => {
      const one = await process();
      const two = await process();
      await one.enqueue([event(1, 'task:A'), event(2, 'task:A'), event(3, 'task:B'), event(4, 'task:B')]);
      const first = await one.claim({ limit: 10 });
      expect(first.map((c) => c.event.id)).toEqual([`${settings.prefix}-e1`, `${settings.prefix}-e3`]);
      await one.retry(`${settings.prefix}-e1`, { code: 'CONN_ERR_HTTP_SERVER', message: '503', retryable: true }, { delayMs: 60_000 });
      await one.deadLetter(`${settings.prefix}-e3`, { code: 'CONN_ERR_EVENT_INVALID', message: 'bad', retryable: false });
      expect((await claimFor(two, 5000, 2)).sort()).toEqual([`${settings.prefix}-e2`, `${settings.prefix}-e4`]);
      await two.close();
      // Closed with both in hand: they go back, and their entities are free for the other process.
      expect((await claimFor(one, 5000, 2)).sort()).toEqual([`${settings.prefix}-e2`, `${settings.prefix}-e4`]);
    });
  });
}
