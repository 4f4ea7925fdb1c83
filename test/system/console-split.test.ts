/**
 * The console with `serve` and `work` in separate connectors on one shared queue (Redis): the serve
 * process's console shows the events the worker worked on (through the activity board), with the row
 * each wrote read from the database, and both processes in the overview.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { startConnector, type RunningConnector } from '../../src/main.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { requireRedis, TEST_REDIS_URL } from '../helpers/services.ts';
import { memoryLogger, removeTempDirs, tempDir, waitFor } from './harness.ts';

const redis = await requireRedis();
const ADMIN = 'console-split-admin-token';
const TW_TOKEN = 'console-split-tw';
const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  removeTempDirs();
});

async function api<T>(base: string, route: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${base}/dashboard/api/${route}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return { status: res.status, body: (await res.json()) as T };
}

describe.skipIf(!redis.available)('the console of a serve process beside a separate worker', () => {
  it("shows the worker's events, their rows and both processes", async () => {
    const tw = await startTeamworkSimulator({ seed: 'console-split', data: { tasks: 2 }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
    stops.push(() => tw.stop());
    const dir = tempDir('console-split');
    const env = {
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: path.join(dir, 'data'),
      LOG_DIR: path.join(dir, 'logs'),
      QUEUE_BACKEND: 'redis',
      REDIS_URL: TEST_REDIS_URL,
      REDIS_DURABILITY: 'relaxed',
      QUEUE_PREFIX: `console-split-${process.pid}-${Date.now()}`,
      BACKFILL_ON_START: 'false',
      BACKFILL_INTERVAL_MINUTES: '0',
      ADMIN_TOKEN: ADMIN,
      TEAMWORK_BASE_URL: tw.url,
      TEAMWORK_API_KEY: tw.credentials.apiKey,
      TEAMWORK_WEBHOOK_TOKEN: TW_TOKEN,
    };
    const start = async (serve: boolean): Promise<RunningConnector> => {
      const connector = await startConnector(parseConfig(env), { roles: { serve, work: !serve }, log: memoryLogger('warn').log });
      stops.push(() => connector.stop());
      return connector;
    };
    const work = await start(false);
    const serve = await start(true);
    const base = serve.url as string;
    tw.registerAllTaskWebhooks(`${base}/webhooks/teamwork`, { token: TW_TOKEN });

    const task = await tw.createTask({ name: 'Split: seen from the serve console' });
    await waitFor('the worker to store the task', async () => (await work.db?.getTask(String(task.id))) != null);

    type Events = { events: Array<{ id: string; outcome: string; entityKey: string }> };
    const found = await waitFor('the serve console to show the event as done', async () => {
      const { body } = await api<Events>(base, `events?q=${task.id}`);
      return body.events.find((e) => e.outcome === 'ok');
    });
    expect(found.entityKey).toBe(`task:${task.id}`);
    const detail = await api<{ history: Array<{ outcome: string }>; rows: Array<{ table: string; id: string; row: { title?: string } | null }> }>(base, `events/${found.id}`);
    expect(detail.status).toBe(200);
    expect(detail.body.history.at(-1)?.outcome).toBe('ok');
    expect(detail.body.rows).toEqual([expect.objectContaining({ table: 'tasks', id: String(task.id), row: expect.objectContaining({ title: 'Split: seen from the serve console' }) })]);

    const overview = await api<{ processes: Array<{ role: string; self: boolean; lastClaimAt: string | null }>; sources: Array<{ name: string; perMinute: { deliveries: number[]; events: number[] } }> }>(base, 'overview');
    expect(overview.body.processes.map((p) => [p.role, p.self]).sort()).toEqual([['serve', true], ['work', false]]);
    expect(overview.body.processes.find((p) => p.role === 'work')?.lastClaimAt).not.toBeNull();
    const teamwork = overview.body.sources.find((s) => s.name === 'teamwork')!;
    // Deliveries counted by the serve process, events by the worker: the console adds them up.
    expect(teamwork.perMinute.deliveries.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
    expect(teamwork.perMinute.events.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
