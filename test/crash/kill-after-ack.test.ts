/**
 * "Acknowledged = durable", with a real SIGKILL: a delivery answered 200 is stored after a restart,
 * even when the process died before the worker wrote it to the database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { postTeamwork, signTeamwork, teamworkTaskPayload } from '../helpers/deliveries.ts';

const TOKEN = 'crash-token';
const running: ConnectorProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const p of running.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function countTasks(dataDir: string, ids: string[]): number {
  const db = new BetterSqlite3(path.join(dataDir, 'connector.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM tasks WHERE id IN (${ids.map(() => '?').join(',')})`).get(...ids) as { n: number }).n;
  } finally {
    db.close();
  }
}

async function waitForCount(dataDir: string, ids: string[], expected: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = -1;
  while (Date.now() < deadline) {
    try {
      n = countTasks(dataDir, ids);
      if (n === expected) return n;
    } catch {
      // not created yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return n;
}

async function deliver(url: string, id: number): Promise<number> {
  const body = JSON.stringify(teamworkTaskPayload(id));
  const res = await postTeamwork(url, body, { 'x-projects-signature': signTeamwork(TOKEN, body), 'x-projects-event': 'TASK.CREATED' });
  return res.status;
}

describe('SIGKILL after the 200', () => {
  it('stores a delivery whose process was killed before any database write', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'conn-crash-'));
    dirs.push(cwd);
    const env = { TEAMWORK_WEBHOOK_TOKEN: TOKEN };

    // Only the receiving role runs: the 200 comes back, and no worker exists to write the row.
    const receiver = await spawnConnector({ cwd, command: 'serve', env });
    running.push(receiver);
    expect(await deliver(receiver.url, 9001)).toBe(200);
    receiver.kill('SIGKILL');
    expect(await receiver.exited).toBe('SIGKILL');

    const restarted = await spawnConnector({ cwd, command: 'start', env });
    running.push(restarted);
    expect(await waitForCount(path.join(cwd, 'data'), ['9001'], 1)).toBe(1);
  });

  it('stores each acknowledged delivery exactly once when the whole connector is killed mid-stream', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'conn-crash-'));
    dirs.push(cwd);
    const env = { TEAMWORK_WEBHOOK_TOKEN: TOKEN };
    const acknowledged: string[] = [];

    for (let round = 0; round < 3; round++) {
      const connector = await spawnConnector({ cwd, env });
      running.push(connector);
      const before = acknowledged.length;
      const sends = Array.from({ length: 20 }, (_, i) => 10_000 + round * 100 + i).map(async (id) => {
        try {
          if ((await deliver(connector.url, id)) === 200) acknowledged.push(String(id));
        } catch {
          // the kill may cut a request off before its answer: not acknowledged, no promise made
        }
      });
      // Mid-stream: once the first of the round is acknowledged (a loaded machine may take longer than
      // a fixed delay to answer any), then a little later, while the others are in flight.
      const deadline = Date.now() + 10_000;
      while (acknowledged.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 5 + round * 10));
      connector.kill('SIGKILL');
      await Promise.all(sends);
      await connector.exited;
    }

    const final = await spawnConnector({ cwd, env });
    running.push(final);
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(await waitForCount(path.join(cwd, 'data'), acknowledged, acknowledged.length)).toBe(acknowledged.length);
  });
});
