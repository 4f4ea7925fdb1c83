/**
 * The first end-to-end slice, run as an operator runs it: `connector start` with no .env on SQLite and
 * the file queue; a signed Teamwork delivery lands in `tasks`; a bad signature is refused and queues
 * nothing; health reports the queue; SIGTERM stops it cleanly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { postTeamwork, signTeamwork, teamworkTaskPayload } from '../helpers/deliveries.ts';

const TOKEN = 'e2e-teamwork-token';
const running: ConnectorProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const p of running.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function workdir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-e2e-'));
  dirs.push(dir);
  return dir;
}

export function readTask(dataDir: string, id: string): Record<string, unknown> | undefined {
  const db = new BetterSqlite3(path.join(dataDir, 'connector.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as Record<string, unknown> | undefined;
  } finally {
    db.close();
  }
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const value = probe();
      if (value !== undefined) return value;
    } catch {
      // the database file may not exist yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

describe('first end-to-end slice', () => {
  it('stores a signed Teamwork delivery in tasks, refuses a bad signature, reports health, stops on SIGTERM', async () => {
    const cwd = workdir();
    const connector = await spawnConnector({ cwd, env: { TEAMWORK_WEBHOOK_TOKEN: TOKEN } });
    running.push(connector);
    expect(connector.output()).toContain(`listening on ${connector.url}`);
    const dataDir = path.join(cwd, 'data');

    const body = JSON.stringify(teamworkTaskPayload(4711));
    const accepted = await postTeamwork(connector.url, body, { 'x-projects-signature': signTeamwork(TOKEN, body), 'x-projects-event': 'TASK.CREATED' });
    const answeredAt = Date.now();
    expect(accepted.status).toBe(200);

    const row = await waitFor(() => readTask(dataDir, '4711'), 5_000);
    const latencyMs = Date.now() - answeredAt;
    expect(row).toMatchObject({ id: '4711', title: 'Task 4711', status: 'new', project_id: '77', deleted: 0 });
    expect(latencyMs, 'from the 200 to the row in tasks').toBeLessThan(1_000);

    const healthBefore = (await (await fetch(`${connector.url}/health`)).json()) as { status: string; queue: { size: number } };
    expect(healthBefore.status).toBe('ok');
    expect(typeof healthBefore.queue.size).toBe('number');

    const forged = JSON.stringify(teamworkTaskPayload(4712));
    const refused = await postTeamwork(connector.url, forged, { 'x-projects-signature': signTeamwork('not-the-token', forged), 'x-projects-event': 'TASK.CREATED' });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ error: 'CONN_ERR_WEBHOOK_SIGNATURE' });
    const healthAfter = (await (await fetch(`${connector.url}/health`)).json()) as { queue: { size: number } };
    expect(healthAfter.queue.size).toBe(healthBefore.queue.size);
    await new Promise((r) => setTimeout(r, 200));
    expect(readTask(dataDir, '4712')).toBeUndefined();

    connector.kill('SIGTERM');
    expect(await connector.exited).toBe(0);
    expect(connector.output()).toContain('stopped');
  });

  it('refuses a bad setting with exit code 2 and a line naming the variable', async () => {
    const connector = await spawnConnector({ cwd: workdir(), env: { MAX_QUEUE_ATTEMPTS: 'abc' }, waitForListen: false });
    running.push(connector);
    expect(await connector.exited).toBe(2);
    expect(connector.output().trim()).toBe('connector: Invalid setting MAX_QUEUE_ATTEMPTS: must be a number (got "abc")');
  });
});
