/**
 * Start-up failures an operator meets first, through the real CLI in a child process: each is one line
 * naming the cause and the fix, with no stack at the default LOG_LEVEL, exit 2 for a setting and 1
 * otherwise; LOG_LEVEL=debug adds the stack.
 */
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

  it('QUEUE_BACKEND=redis on a Redis it cannot reach: exit 2, one line naming REDIS_URL, never its password', async () => {
    const result = await runCli(['start'], { cwd, env: { QUEUE_BACKEND: 'redis', REDIS_URL: 'redis://user:redis-pass@127.0.0.1:1', DATA_DIR: path.join(cwd, 'redis-data'), LOG_DIR: path.join(cwd, 'redis-logs') } });
    expect(result.code).toBe(2);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    const line = expectOneLine(result, /REDIS_URL/);
    expect(line).toContain('Invalid setting REDIS_URL: cannot reach Redis at 127.0.0.1:1 (ECONNREFUSED)');
    expect(result.stderr).not.toContain('redis-pass');
  });

  it('QUEUE_BACKEND=redis without REDIS_URL: exit 2, one line saying REDIS_URL is required', async () => {
    const result = await runCli(['start'], { cwd, env: { QUEUE_BACKEND: 'redis', DATA_DIR: path.join(cwd, 'redis-data'), LOG_DIR: path.join(cwd, 'redis-logs') } });
    expect(result.code).toBe(2);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('Invalid setting REDIS_URL: required when QUEUE_BACKEND=redis');
  });

  it('with LOG_LEVEL=debug the stack is printed too', async () => {
    const [port, db] = await Promise.all([
      runCli(['serve'], { cwd, env: { LOG_LEVEL: 'debug', PORT: String(busyPort), DATA_DIR: path.join(cwd, 'port-data'), LOG_DIR: path.join(cwd, 'port-logs') } }),
      runCli(['work'], { cwd, env: { LOG_LEVEL: 'debug', ...postgres() }, timeoutMs: 4000 }),
    ]);
    expect(port.code).toBe(1);
    expect(port.stderr).toMatch(STACK);
    expect(port.stderr).toContain(`port ${busyPort} is in use: set PORT`);
    expect(db.stderr).toMatch(STACK); // the waiting worker's cause, at debug level
    expect(db.stderr).toContain('check DATABASE_URL');
    expect(db.stderr).not.toContain('hunter2');
  });
});
