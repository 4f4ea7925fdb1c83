/**
 * Shutdown signals, on the real CLI (`connector start`) as an operator runs it:
 * - SIGTERM while events are in flight: the process stops claiming, finishes the event in hand, writes
 *   and acks what it handled, and exits 0. Every acknowledged delivery is then either in SQLite or
 *   still in the queue (never both: the acks were persisted), and the next start stores the rest.
 * - A second signal while the first stop waits on a vendor that does not answer: exit at once (code
 *   1), and the event is still queued for the next start.
 * Events are made slow the way they are in production: thin (v1 form) deliveries make the handler
 * fetch each task from the Teamwork API, here the Teamwork simulator with added latency, or a server
 * that never answers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { signTeamwork } from '../helpers/deliveries.ts';

const TOKEN = 'graceful-token';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function workdir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-graceful-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function start(cwd: string, env: Record<string, string>): Promise<ConnectorProcess> {
  const connector = await spawnConnector({ cwd, env: { TEAMWORK_WEBHOOK_TOKEN: TOKEN, BACKFILL_ON_START: 'false', BACKFILL_INTERVAL_MINUTES: '0', ...env } });
  cleanups.push(async () => {
    connector.kill('SIGKILL');
    await connector.exited;
  });
  return connector;
}

/** A thin Teamwork delivery (v1 form: an id and nothing else), as a legacy hook sends it. */
async function deliverThin(url: string, taskId: number): Promise<number> {
  const body = `event=TASK.UPDATED&objectId=${taskId}&accountId=1&userId=9`;
  const res = await fetch(`${url}/webhooks/teamwork`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-projects-signature': signTeamwork(TOKEN, body) },
    body,
  });
  await res.text();
  return res.status;
}

function storedTaskIds(cwd: string): string[] {
  const db = new BetterSqlite3(path.join(cwd, 'data', 'connector.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT id FROM tasks ORDER BY id').all() as Array<{ id: string }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

/** The task ids of the events still in the queue on disk (read with the real queue, the process gone). */
async function queuedTaskIds(cwd: string): Promise<{ ids: string[]; inFlight: number; deadLettered: number }> {
  const queue = await FileQueue.open({ dir: path.join(cwd, 'data', 'queue'), log: createLogger({ level: 'silent', console: false }) });
  try {
    const stats = await queue.stats();
    const events = await queue.peek(1000);
    return { ids: events.map((e) => String(e.entityKey).replace('task:', '')).sort(), inFlight: stats.inFlight, deadLettered: stats.deadLettered };
  } finally {
    await queue.close();
  }
}

async function until(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An HTTP server that takes requests and never answers them (a vendor hanging), with the paths it saw. */
async function silentVendor(): Promise<{ base: string; requests: string[] }> {
  const requests: string[] = [];
  const silent: Server = createServer((req) => {
    requests.push(req.url ?? '');
    // never answers
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        silent.closeAllConnections();
        silent.close(() => resolve());
      }),
  );
  const address = silent.address();
  return { base: `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`, requests };
}

describe('shutdown signals', () => {
  let sim: TeamworkSimulator | null = null;
  afterEach(async () => {
    await sim?.stop();
    sim = null;
  });

  it('SIGTERM with events in flight: finishes the event in hand, exits 0, and loses no acknowledged delivery', async () => {
    sim = await startTeamworkSimulator({ seed: 7, faults: { latencyMs: 150 }, limits: { perMinute: 100_000 } });
    const taskIds = sim
      .data()
      .tasks.slice(0, 12)
      .map((t) => t.id);
    expect(taskIds).toHaveLength(12);
    const cwd = workdir();
    const env = { TEAMWORK_API_KEY: sim.credentials.apiKey, TEAMWORK_BASE_URL: sim.url, TEAMWORK_REQUESTS_PER_MINUTE: '10000' };
    const connector = await start(cwd, env);

    const statuses = await Promise.all(taskIds.map((id) => deliverThin(connector.url, id)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    const fetched = () => sim!.requests.find((r) => r.path.includes('/tasks/')).length;
    await until('the worker fetching its third task', () => fetched() >= 3, 10_000);

    connector.kill('SIGTERM');
    expect(await connector.exited).toBe(0);
    expect(connector.output()).toContain('shutting down');

    const stored = storedTaskIds(cwd);
    const queued = await queuedTaskIds(cwd);
    const acknowledged = taskIds.map(String).sort();
    // In flight at the signal: some stored, some still queued; together exactly what was acknowledged.
    expect(stored.length).toBeGreaterThanOrEqual(2);
    expect(queued.ids.length).toBeGreaterThan(0);
    expect([...stored, ...queued.ids].sort()).toEqual(acknowledged);
    expect(queued).toMatchObject({ inFlight: 0, deadLettered: 0 });

    const again = await start(cwd, env);
    await until('every acknowledged task stored', () => storedTaskIds(cwd).length === acknowledged.length, 15_000);
    expect(storedTaskIds(cwd)).toEqual(acknowledged);
    again.kill('SIGTERM');
    expect(await again.exited).toBe(0);
    expect((await queuedTaskIds(cwd)).ids).toEqual([]);
  });

  it('a second signal exits at once while the first stop waits on a vendor that does not answer; the event stays queued', async () => {
    const { base, requests } = await silentVendor();
    const cwd = workdir();
    const connector = await start(cwd, { TEAMWORK_API_KEY: 'key-for-a-silent-vendor', TEAMWORK_BASE_URL: base });

    expect(await deliverThin(connector.url, 4242)).toBe(200);
    await until('the worker waiting on the vendor', () => requests.some((u) => u.includes('4242')), 10_000);

    connector.kill('SIGTERM');
    const first = await Promise.race([connector.exited, new Promise((r) => setTimeout(() => r('still running'), 700))]);
    expect(first).toBe('still running'); // the graceful stop waits for the event in hand
    const t0 = Date.now();
    connector.kill('SIGTERM');
    expect(await connector.exited).toBe(1);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(connector.output()).toContain('second signal');
    expect(await queuedTaskIds(cwd)).toMatchObject({ ids: ['4242'], inFlight: 0, deadLettered: 0 });
  });

  it('SIGTERM completes within 10 s however long a vendor keeps the event in hand; the event stays queued, no attempt spent (issue 15 item 2)', async () => {
    const { base, requests } = await silentVendor();
    const cwd = workdir();
    const connector = await start(cwd, { TEAMWORK_API_KEY: 'key-for-a-silent-vendor', TEAMWORK_BASE_URL: base, MAX_QUEUE_ATTEMPTS: '1' });
    expect(await deliverThin(connector.url, 4343)).toBe(200);
    await until('the worker waiting on the vendor', () => requests.some((u) => u.includes('4343')), 10_000);
    const t0 = Date.now();
    connector.kill('SIGTERM');
    expect(await connector.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await queuedTaskIds(cwd)).toMatchObject({ ids: ['4343'], inFlight: 0, deadLettered: 0 });
  });
});
