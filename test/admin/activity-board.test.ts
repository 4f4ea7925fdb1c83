/**
 * The activity board (src/admin/activity-board.ts) on each place it can live — files, Redis,
 * PostgreSQL — and two Activities sharing one: the console of a `serve` process shows the events a
 * separate `work` process worked on, its per-minute counts and its last claim, and forgets a process
 * that stopped.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Activity } from '../../src/admin/activity.ts';
import { createActivityBoard, STALE_MS, type ActivityBoard, type ActivityReport } from '../../src/admin/activity-board.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { EngineSettings } from '../../src/queue/bull-queue.ts';
import { requirePostgres, requireRedis, TEST_POSTGRES_URL, TEST_REDIS_URL } from '../helpers/services.ts';
import { removeTempDirs, tempDir } from '../system/harness.ts';

const quiet = createLogger({ level: 'silent' });
const redis = await requireRedis();
const postgres = await requirePostgres();
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const close of closers.splice(0)) await close();
  removeTempDirs();
});

const prefix = `board-test-${process.pid}-${Date.now()}`;
const places: Array<{ name: string; available: boolean; settings: () => EngineSettings | null }> = [
  { name: 'files', available: true, settings: () => null },
  { name: 'redis', available: redis.available, settings: () => ({ engine: 'redis', url: TEST_REDIS_URL, prefix }) },
  { name: 'postgres', available: postgres.available, settings: () => ({ engine: 'postgres', url: TEST_POSTGRES_URL, prefix }) },
];

function report(id: string, at = new Date()): ActivityReport {
  return { id, role: 'work', at: at.toISOString(), startedAt: at.toISOString(), lastClaimAt: null, sources: [], events: [] };
}

async function open(settings: EngineSettings | null, dir: string): Promise<ActivityBoard> {
  const board = await createActivityBoard(settings, dir, quiet);
  closers.push(() => board.close());
  return board;
}

for (const place of places) {
  describe.skipIf(!place.available)(`the activity board on ${place.name}`, () => {
    it('keeps one report per process, replaced on each post, gone when removed or stale', async () => {
      const dir = tempDir('board');
      const a = await open(place.settings(), dir);
      const b = await open(place.settings(), dir);
      await a.post(report('work@host:1#aa'));
      await a.post({ ...report('work@host:1#aa'), lastClaimAt: '2026-01-01T00:00:00.000Z' });
      await b.post(report('serve@host:2#bb'));
      await b.post(report('work@host:3#cc', new Date(Date.now() - STALE_MS - 1_000)));
      const read = (await b.read()).sort((x, y) => x.id.localeCompare(y.id));
      expect(read.map((r) => r.id)).toEqual(['serve@host:2#bb', 'work@host:1#aa']);
      expect(read[1]?.lastClaimAt).toBe('2026-01-01T00:00:00.000Z');
      await a.remove('work@host:1#aa');
      expect((await b.read()).map((r) => r.id)).toEqual(['serve@host:2#bb']);
      await b.remove('serve@host:2#bb');
    });

    it("lets a serve process's console show what a separate worker did", async () => {
      const dir = tempDir('board-pair');
      const queue = await FileQueue.open({ dir: path.join(dir, 'queue'), log: quiet, lifecycle: new Lifecycle() });
      closers.push(() => queue.close());
      const redact = (p: unknown) => p;
      const workLife = new Lifecycle();
      const worker = new Activity({ lifecycle: workLife, queue, sources: [], database: () => null, redact, board: { board: await open(place.settings(), dir), id: `work@${place.name}#1`, role: 'work' }, postEveryMs: 50 });
      const serve = new Activity({ lifecycle: new Lifecycle(), queue, sources: [], database: () => null, redact, board: { board: await open(place.settings(), dir), id: `serve@${place.name}#2`, role: 'serve' }, postEveryMs: 50 });
      worker.start();
      serve.start();
      closers.push(() => serve.close());

      const event: QueueEvent = { id: `e-${place.name}`, source: 'teamwork', type: 'TASK.UPDATED', entityKey: 'task:42', origin: 'webhook', receivedAt: new Date(), payload: { secret: 'x' } };
      workLife.emit('events:claimed', { count: 1, sources: ['teamwork'] });
      workLife.emit('event:succeeded', { source: 'teamwork', eventId: event.id, attempt: 1, records: 1, durationMs: 7, event, rows: [{ table: 'tasks', id: '42', deleted: false }] });
      await new Promise((resolve) => setTimeout(resolve, 1_300)); // a post, and the serve's cached read expires

      const found = await serve.events({ query: '42', limit: 10 });
      expect(found).toEqual([expect.objectContaining({ id: event.id, outcome: 'ok', attempts: 1, durationMs: 7 })]);
      const detail = await serve.event(event.id);
      // Succeeded elsewhere: its payload is held nowhere any more; its attempts and rows are known.
      expect(detail).toMatchObject({ payload: null, history: [expect.objectContaining({ outcome: 'ok' })], rows: [{ table: 'tasks', id: '42', row: null }] });
      const processes = await serve.processes();
      expect(processes.map((p) => [p.role, p.self])).toEqual([['serve', true], ['work', false]]);
      expect(processes[1]?.lastClaimAt).not.toBeNull();

      await worker.close();
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect((await serve.processes()).map((p) => p.role)).toEqual(['serve']);
    });
  });
}
