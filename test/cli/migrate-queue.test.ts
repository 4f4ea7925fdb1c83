/**
 * `connector migrate-queue`, as an operator runs it: a file queue with events waiting (ready, backing
 * off, in the hands of no one) and a dead letter is moved into the shared engine; every event arrives
 * once, as it was; a second run moves nothing; a worker on the file queue makes it refuse.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { BullQueue, type EngineSettings } from '../../src/queue/bull-queue.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import { requireRedis, TEST_REDIS_URL } from '../helpers/services.ts';
import { runCli } from './run-cli.ts';

const redis = await requireRedis();
const log = createLogger({ level: 'warn', console: false });
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function event(n: number): QueueEvent {
  return { id: `mig-${n}`, source: n % 3 === 0 ? 'missive' : 'teamwork', type: n % 3 === 0 ? 'incoming_email' : 'TASK.UPDATED', entityKey: `task:${n}`, origin: 'webhook', receivedAt: new Date(Date.UTC(2026, 11, 1, 8, 0, 0, n)), payload: { n, text: `event ${n} ✓` } };
}

describe.skipIf(!redis.available)('connector migrate-queue', () => {
  it('moves every waiting event of the file queue into Redis once, leaves dead letters, and refuses while a worker holds the file queue', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'conn-migrate-'));
    cleanups.push(async () => rmSync(cwd, { recursive: true, force: true }));
    const dataDir = path.join(cwd, 'data');
    const prefix = `mig${randomBytes(4).toString('hex')}`;
    const settings: EngineSettings = { engine: 'redis', url: TEST_REDIS_URL, prefix };
    cleanups.push(async () => {
      const q = await BullQueue.open({ settings, log });
      await q.obliterate();
      await q.close();
    });
    const env = { DATA_DIR: dataDir, LOG_DIR: path.join(cwd, 'logs'), QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, REDIS_DURABILITY: 'relaxed', QUEUE_PREFIX: prefix };

    // The file queue: 1,200 events; one dead letter; one backing off for 2 s; one claimed and not acked.
    const events = Array.from({ length: 1200 }, (_, n) => event(n));
    const file = await FileQueue.open({ dir: path.join(dataDir, 'queue'), log });
    await file.enqueue(events);
    const [dead, backingOff, unacked] = await file.claim({ limit: 3 });
    await file.deadLetter(dead!.event.id, { code: 'CONN_ERR_EVENT_INVALID', message: 'bad', retryable: false });
    await file.retry(backingOff!.event.id, { code: 'CONN_ERR_HTTP_SERVER', message: '503', retryable: true }, { delayMs: 2_000 });

    // While this process is the file queue's worker, the command refuses.
    const refused = await runCli(['migrate-queue'], { cwd, env });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/is working on this file queue: stop the connector on this DATA_DIR first/);
    expect(unacked).toBeDefined();
    await file.close();

    const dry = await runCli(['migrate-queue', '--dry-run'], { cwd, env });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/1199 event\(s\) in .* would move to redis/);

    const run = await runCli(['migrate-queue'], { cwd, env, timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/moved 1199 event\(s\) from .* to redis \(127\.0\.0\.1:6379, queues mig[0-9a-f]+-\*\)/);
    expect(run.stdout).toMatch(/1 dead letter\(s\) stay in/);

    const again = await runCli(['migrate-queue'], { cwd, env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/moved 0 event\(s\)/);

    const engine = await BullQueue.open({ settings, log });
    cleanups.push(() => engine.close());
    expect(await engine.stats()).toMatchObject({ pending: 1199, inFlight: 0, delayed: 0, deadLettered: 0 });
    const claimed = await engine.claim({ limit: 2000 });
    const byId = new Map(claimed.map((c) => [c.event.id, c]));
    expect(byId.size).toBe(1199);
    for (const e of events) {
      if (e.id === dead!.event.id) expect(byId.has(e.id)).toBe(false);
      else expect(byId.get(e.id)?.event).toEqual(e);
    }
    expect([...byId.values()].every((c) => c.attempt === 1)).toBe(true);
    const leftover = await FileQueue.open({ dir: path.join(dataDir, 'queue'), log });
    cleanups.push(() => leftover.close());
    expect(await leftover.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 1 });
  }, 90_000);
});
