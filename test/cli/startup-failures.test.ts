/**
 * Start-up failures an operator meets first, through the real CLI in a child process: each is one line
 * naming the cause and the fix, with no stack at the default LOG_LEVEL, exit 2 for a setting and 1
 * otherwise; LOG_LEVEL=debug adds the stack.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from './run-cli.ts';

const cwd = mkdtempSync(path.join(tmpdir(), 'conn-cli-startup-'));
let busy: net.Server;
let busyPort = 0;
let closedPort = 0;

beforeAll(async () => {
  busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  busyPort = (busy.address() as net.AddressInfo).port;
  // A port nothing listens on: take one, then let it go.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});
afterAll(async () => {
  await new Promise<void>((resolve) => busy.close(() => resolve()));
  rmSync(cwd, { recursive: true, force: true });
});

const STACK = /^\s+at .+[:(]/m;

/** The lines about the failure: every stderr line except ordinary log lines written before it. */
function failureLines(result: CliResult, about: RegExp): string[] {
  return result.stderr.split('\n').filter((line) => about.test(line));
}

/** Nothing but one line about the failure, and it is the last thing printed; no stack, no error dump. */
function expectOneLine(result: CliResult, about: RegExp): string {
  const lines = failureLines(result, about);
  expect(lines, result.stderr).toHaveLength(1);
  expect(result.stderr.trimEnd().split('\n').at(-1)).toBe(lines[0]);
  expect(result.stderr).not.toMatch(STACK);
  expect(result.stderr).not.toMatch(/"stack"|err: \{|caused by/);
  return lines[0] as string;
}

describe('start-up failures are one line with the cause and the fix', { timeout: 60_000 }, () => {
  const postgres = () => ({ DB_BACKEND: 'postgres', DATABASE_URL: `postgres://conn_user:hunter2-secret@127.0.0.1:${closedPort}/connector`, DATA_DIR: path.join(cwd, 'pg-data'), LOG_DIR: path.join(cwd, 'pg-logs') });

  it('port in use: exit 1, "port N is in use: set PORT", no stack', async () => {
    const result = await runCli(['serve'], { cwd, env: { PORT: String(busyPort), DATA_DIR: path.join(cwd, 'port-data'), LOG_DIR: path.join(cwd, 'port-logs') } });
    expect(result.code).toBe(1);
    const line = expectOneLine(result, /in use|EADDRINUSE/);
    expect(line).toContain(`port ${busyPort} is in use: set PORT`);
  });

  it('database unreachable: not a start-up failure; `work` stays up and waits, one line naming host:port and the code, never the password', async () => {
    // The database is an outage, not a setting (issue 15, item 7): the worker waits for it (see
    // boot-without-database.test.ts for `start` and the delivery it takes meanwhile).
    const result = await runCli(['work'], { cwd, env: postgres(), timeoutMs: 4000 });
    expect(result.code, result.stderr).toBeNull(); // still running when killed
    const lines = failureLines(result, /database|ECONNREFUSED/i).filter((l) => !/worker/.test(l) || /waiting/.test(l));
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`waiting for the database (cannot reach the database at 127.0.0.1:${closedPort} (ECONNREFUSED): check DATABASE_URL`);
    expect(result.stderr).not.toMatch(STACK);
    expect(result.stderr).not.toContain('hunter2');
    expect(result.stderr).not.toContain('conn_user');
    expect((lines[0] as string).split('ECONNREFUSED')).toHaveLength(2);
  });

  const queueEnv = (name: string) => ({ DATA_DIR: path.join(cwd, `${name}-data`), LOG_DIR: path.join(cwd, `${name}-logs`) });

  it('an unknown queue engine, or one without its URL: exit 2, one line naming the setting', async () => {
    const unknown = await runCli(['start'], { cwd, env: { QUEUE_BACKEND: 'kafka', ...queueEnv('kafka') } });
    expect(unknown.code).toBe(2);
    expect(expectOneLine(unknown, /QUEUE_BACKEND/)).toMatch(/Invalid setting QUEUE_BACKEND: must be file, redis or postgres \(got "kafka"\)/);
    const noUrl = await runCli(['start'], { cwd, env: { QUEUE_BACKEND: 'redis', ...queueEnv('redis-nourl') } });
    expect(noUrl.code).toBe(2);
    expect(expectOneLine(noUrl, /REDIS_URL/)).toMatch(/Invalid setting REDIS_URL: required when QUEUE_BACKEND=redis/);
    const noPgUrl = await runCli(['start'], { cwd, env: { QUEUE_BACKEND: 'postgres', ...queueEnv('pg-nourl') } });
    expect(noPgUrl.code).toBe(2);
    expect(expectOneLine(noPgUrl, /QUEUE_DATABASE_URL/)).toMatch(/required when QUEUE_BACKEND=postgres \(or set DATABASE_URL\)/);
  });

  it('a queue engine that does not answer: exit 2, one line naming the URL setting and host:port, never the password', async () => {
    const redis = await runCli(['start'], { cwd, env: { QUEUE_BACKEND: 'redis', REDIS_URL: `redis://user:redis-pass@127.0.0.1:${closedPort}`, ...queueEnv('redis-down') } });
    expect(redis.code).toBe(2);
    expect(expectOneLine(redis, /REDIS_URL/)).toBe(`connector: Invalid setting REDIS_URL: cannot reach Redis at 127.0.0.1:${closedPort} (ECONNREFUSED)`);
    expect(redis.stderr).not.toContain('redis-pass');
    const pg = await runCli(['work'], { cwd, env: { QUEUE_BACKEND: 'postgres', QUEUE_DATABASE_URL: `postgres://q_user:pg-pass@127.0.0.1:${closedPort}/queue`, ...queueEnv('pg-down') } });
    expect(pg.code).toBe(2);
    expect(expectOneLine(pg, /QUEUE_DATABASE_URL/)).toBe(`connector: Invalid setting QUEUE_DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:${closedPort} (ECONNREFUSED)`);
    expect(pg.stderr).not.toContain('pg-pass');
  });

  it('a Redis that answers before its writes are on disk: exit 2, one line naming the settings; REDIS_DURABILITY=relaxed starts with a warning', async () => {
    // A Redis of this test's own, as CI's runs: no AOF.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    try {
      await waitForPort(port);
      const strict = await runCli(['serve'], { cwd, env: { QUEUE_BACKEND: 'redis', REDIS_URL: `redis://127.0.0.1:${port}`, ...queueEnv('redis-aof') } });
      expect(strict.code).toBe(2);
      expect(expectOneLine(strict, /REDIS_URL/)).toMatch(
        new RegExp(`^connector: Invalid setting REDIS_URL: the Redis at 127\\.0\\.0\\.1:${port} does not keep acknowledged deliveries \\(it has appendonly no, appendfsync everysec\\): set appendonly yes and appendfsync always in Redis, or REDIS_DURABILITY=relaxed`),
      );
      const relaxed = await runCli(['serve'], { cwd, env: { QUEUE_BACKEND: 'redis', REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_DURABILITY: 'relaxed', PORT: '0', ...queueEnv('redis-relaxed') }, timeoutMs: 5_000 });
      expect(relaxed.code, relaxed.stderr).toBeNull(); // still running when the test stopped it
      expect(relaxed.stderr).toMatch(/WARN: REDIS_DURABILITY=relaxed: the Redis at 127\.0\.0\.1:\d+ answers before writing to disk/);
      expect(relaxed.stderr).toMatch(/listening on http:/);
    } finally {
      redis.kill('SIGKILL');
      await new Promise((resolve) => (redis.exitCode !== null || redis.signalCode !== null ? resolve(null) : redis.once('exit', resolve)));
    }
  });

  it('with LOG_LEVEL=debug the stack is printed too', async () => {
    const [port, db] = await Promise.all([
      runCli(['serve'], { cwd, env: { LOG_LEVEL: 'debug', PORT: String(busyPort), DATA_DIR: path.join(cwd, 'port-data'), LOG_DIR: path.join(cwd, 'port-logs') } }),
      runCli(['work'], { cwd, env: { LOG_LEVEL: 'debug', ...postgres() }, timeoutMs: 8000 }), // stopped by the test: it waits for the database
    ]);
    expect(port.code).toBe(1);
    expect(port.stderr).toMatch(STACK);
    expect(port.stderr).toContain(`port ${busyPort} is in use: set PORT`);
    expect(db.stderr).toMatch(STACK); // the waiting worker's cause, at debug level
    expect(db.stderr).toContain('check DATABASE_URL');
    expect(db.stderr).not.toContain('hunter2');
  });
});

/** Resolves once something accepts connections on 127.0.0.1:port (ten seconds at most). */
async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
