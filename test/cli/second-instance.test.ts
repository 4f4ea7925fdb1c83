/**
 * A second instance on the same DATA_DIR (issue 15, item 8), two real processes: the second is a
 * standby. It logs one INFO line naming the holder ("standing by; pid N holds the queue"), makes no
 * vendor request (no start-up backfill, no reconciliation) and logs no error while it waits; its
 * webhook endpoint still takes deliveries into the shared queue. When the first stops, the second
 * takes over within seconds, says so once, and processes deliveries.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { deliverSignedTask } from '../helpers/deliveries.ts';

const TOKEN = 'standby-token';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(cwd: string, env: Record<string, string>): Promise<ConnectorProcess> {
  const connector = await spawnConnector({ cwd, env: { TEAMWORK_WEBHOOK_TOKEN: TOKEN, ...env } });
  cleanups.push(async () => {
    connector.kill('SIGKILL');
    await connector.exited;
  });
  return connector;
}

const deliver = (url: string, taskId: number): Promise<number> => deliverSignedTask(url, TOKEN, taskId, { name: `Standby ${taskId}` });

function storedTitle(cwd: string, id: number): string | null {
  const db = new BetterSqlite3(path.join(cwd, 'data', 'connector.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT title FROM tasks WHERE id = ?').get(String(id)) as { title: string } | undefined;
    return row?.title ?? null;
  } finally {
    db.close();
  }
}

async function until(what: string, probe: () => boolean, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const lines = (text: string, pattern: RegExp) => text.split('\n').filter((l) => pattern.test(l));

describe('a second instance on the same DATA_DIR', { timeout: 90_000 }, () => {
  let sim: TeamworkSimulator | null = null;
  afterEach(async () => {
    await sim?.stop();
    sim = null;
  });

  it('stands by with one INFO line, no backfill and no error, then takes over when the first stops', async () => {
    sim = await startTeamworkSimulator({ seed: 3, limits: { perMinute: 100_000 } });
    const cwd = mkdtempSync(path.join(tmpdir(), 'conn-standby-'));
    cleanups.push(() => rmSync(cwd, { recursive: true, force: true }));
    const env = { TEAMWORK_API_KEY: sim.credentials.apiKey, TEAMWORK_BASE_URL: sim.url, TEAMWORK_REQUESTS_PER_MINUTE: '10000', BACKFILL_ON_START: 'true', BACKFILL_INTERVAL_MINUTES: '0' };

    const first = await start(cwd, env);
    await until('the first backfill done', () => /backfill done/.test(first.output()), 30_000, first.output);
    const pid = first.child.pid as number;
    const requestsBefore = sim.requests.entries.length;

    const second = await start(cwd, env);
    const STANDBY = new RegExp(`standing by; pid ${pid} holds the queue`);
    await until('the standby line', () => STANDBY.test(second.output()), 10_000, second.output);
    await new Promise((r) => setTimeout(r, 4000));
    const waiting = second.output();
    expect(lines(waiting, STANDBY), waiting).toHaveLength(1);
    expect(lines(waiting, STANDBY)[0]).toMatch(/INFO/);
    expect(waiting).not.toMatch(/ERROR|could not claim|backfill started/);
    expect(sim.requests.entries.length - requestsBefore, 'API requests while the second stood by').toBe(0);

    // Its endpoint still takes deliveries; the first processes them.
    expect(await deliver(second.url, 7001)).toBe(200);
    await until('task 7001 stored by the first', () => storedTitle(cwd, 7001) === 'Standby 7001', 10_000, first.output);

    first.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    const startedAt = Date.now();
    await until('the takeover line', () => /took over the queue from/.test(second.output()), 10_000, second.output);
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(lines(second.output(), /took over the queue from/)).toHaveLength(1);

    expect(await deliver(second.url, 7002)).toBe(200);
    await until('task 7002 stored by the second', () => storedTitle(cwd, 7002) === 'Standby 7002', 10_000, second.output);
    expect(second.output()).not.toMatch(/ERROR/);
    second.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
