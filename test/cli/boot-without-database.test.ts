/**
 * A database that is down at boot (issue 15, item 7), on the real CLI in a child process: `start`
 * listens anyway and acknowledges deliveries into the queue; its worker waits for the database with
 * one clear line (repeated every 30 s while it lasts), and /health says the database is not ok. `work`
 * waits likewise instead of exiting. When the database appears, the worker migrates it and stores what
 * was queued.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { deliverSignedTask } from '../helpers/deliveries.ts';
import { requirePostgres, TEST_POSTGRES_URL } from '../helpers/services.ts';

const TOKEN = 'boot-token';
const WAITING = /waiting for the database \(.+\); deliveries are being queued/;
const cwd = mkdtempSync(path.join(tmpdir(), 'conn-boot-nodb-'));
let closedPort = 0;
const running: ConnectorProcess[] = [];

beforeAll(async () => {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});
afterEach(async () => {
  for (const connector of running.splice(0)) {
    connector.kill('SIGKILL');
    await connector.exited;
  }
});
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

function env(name: string, databaseUrl: string): Record<string, string> {
  return {
    DB_BACKEND: 'postgres',
    DATABASE_URL: databaseUrl,
    DATA_DIR: path.join(cwd, `${name}-data`),
    LOG_DIR: path.join(cwd, `${name}-logs`),
    TEAMWORK_WEBHOOK_TOKEN: TOKEN,
    BACKFILL_ON_START: 'false',
    BACKFILL_INTERVAL_MINUTES: '0',
  };
}

async function spawn(command: string, environment: Record<string, string>): Promise<ConnectorProcess> {
  const connector = await spawnConnector({ cwd, command, env: environment });
  running.push(connector);
  return connector;
}

const deliver = (url: string, taskId: number): Promise<number> => deliverSignedTask(url, TOKEN, taskId);

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs: number, output?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${output === undefined ? '' : `:\n${output()}`}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const lines = (text: string, pattern: RegExp) => text.split('\n').filter((l) => pattern.test(l));

describe('a database down at boot', { timeout: 60_000 }, () => {
  it('`start` listens, acknowledges a signed delivery into the queue, logs the waiting line once, and /health says the database is down', async () => {
    const environment = env('start', `postgres://conn_user:hunter2-secret@127.0.0.1:${closedPort}/connector`);
    const connector = await spawn('start', environment);
    expect(await deliver(connector.url, 4242)).toBe(200);
    await until('the waiting line', () => WAITING.test(connector.output()), 10_000, connector.output);
    await new Promise((r) => setTimeout(r, 1500)); // several tries of the database, one line
    const output = connector.output();
    expect(lines(output, WAITING), output).toHaveLength(1);
    expect(lines(output, WAITING)[0]).toContain(`127.0.0.1:${closedPort}`);
    expect(output).not.toContain('hunter2');
    expect(output).not.toMatch(/ERROR|FATAL/);

    const health = await fetch(`${connector.url}/health`);
    const body = (await health.json()) as { database?: { ok: boolean; detail?: string }; queue: { pending: number } };
    expect(body.database?.ok, JSON.stringify(body)).toBe(false);
    expect(body.database?.detail).toMatch(/waiting for the database/);
    expect(body.queue.pending).toBe(1);

    connector.kill('SIGTERM');
    expect(await connector.exited).toBe(0);
    const queue = await FileQueue.open({ dir: path.join(environment.DATA_DIR as string, 'queue'), log: createLogger({ level: 'silent', console: false }) });
    try {
      expect((await queue.peek(10)).map((e) => e.entityKey)).toEqual(['task:4242']);
    } finally {
      await queue.close();
    }
  });

  it('`work` waits for the database instead of exiting', async () => {
    const connector = await spawnConnector({ cwd, command: 'work', env: env('work', `postgres://conn_user:hunter2-secret@127.0.0.1:${closedPort}/connector`) });
    running.push(connector);
    let exited: number | string | null = null;
    void connector.exited.then((code) => (exited = code));
    await until('the waiting line', () => WAITING.test(connector.output()) || exited !== null, 15_000, connector.output);
    await new Promise((r) => setTimeout(r, 1000));
    expect(exited, connector.output()).toBeNull();
    expect(lines(connector.output(), WAITING)).toHaveLength(1);
    connector.kill('SIGTERM');
    expect(await connector.exited).toBe(0);
  });

  it('when the database appears, the worker migrates it and stores what was queued meanwhile', async (context) => {
    if (!(await requirePostgres()).available) return context.skip();
    const name = `conn_boot_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await admin.connect();
    try {
      const url = new URL(TEST_POSTGRES_URL);
      url.pathname = `/${name}`;
      const connector = await spawn('start', env('appears', url.toString()));
      expect(await deliver(connector.url, 5151)).toBe(200);
      await until('the waiting line', () => WAITING.test(connector.output()), 10_000, connector.output);
      expect(connector.output()).toMatch(/does not exist/);

      await admin.query(`CREATE DATABASE ${name}`);
      const reader = new pg.Client({ connectionString: url.toString() });
      await reader.connect();
      try {
        const stored = async () => {
          const exists = await reader.query<{ t: string | null }>("SELECT to_regclass('public.tasks')::text AS t");
          if (exists.rows[0]?.t === null) return false;
          return (await reader.query('SELECT id FROM tasks WHERE id = $1', ['5151'])).rowCount === 1;
        };
        await until('the queued task stored', stored, 30_000, connector.output);
        expect(connector.output()).toMatch(/database is back|worker started/);
      } finally {
        await reader.end();
      }
      connector.kill('SIGTERM');
      expect(await connector.exited).toBe(0);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await admin.end();
    }
  });
});
