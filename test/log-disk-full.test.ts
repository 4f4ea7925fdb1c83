/**
 * Disk full (issue 14, item 8): a log write that fails never takes the process down or changes an HTTP
 * answer; deliveries get 503 while the queue cannot be written, and everything resumes when space
 * returns.
 *
 * - In process: app.log is a symlink to /dev/full (every write fails with ENOSPC), then a file again.
 * - The real process, on a real full disk: a 4 MiB tmpfs holding ./data and ./logs (the default
 *   layout), filled up while the connector runs. Needs mount privileges (root); skipped otherwise.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.ts';
import { spawnConnector, type ConnectorProcess } from './helpers/connector-process.ts';
import { postTeamwork, signTeamwork, teamworkTaskPayload } from './helpers/deliveries.ts';

const TOKEN = 'disk-full-token';
const dirs: string[] = [];
const mounts: string[] = [];
const running: ConnectorProcess[] = [];

afterEach(async () => {
  for (const p of running.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-diskfull-'));
  dirs.push(dir);
  return dir;
}

/** Whether this process may mount a tmpfs (root in a container that allows it). */
const canMount = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(path.join(tmpdir(), 'conn-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();

/** app.log's lines; a line cut short when the disk filled (at most one) is left out. */
function lines(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  const parsed: Array<Record<string, unknown>> = [];
  let torn = 0;
  for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    try {
      parsed.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      torn++;
    }
  }
  expect(torn, 'lines that do not read as JSON').toBeLessThanOrEqual(1);
  return parsed;
}

/** Writes a file until the disk is full; returns its path. */
function fill(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  } finally {
    closeSync(fd);
  }
  // Whatever a partial page left: take the last bytes too.
  try {
    const small = openSync(path.join(dir, 'filler2'), 'w');
    try {
      for (;;) writeSync(small, Buffer.alloc(512, 1));
    } catch {
      closeSync(small);
    }
  } catch {
    // not even a new file fits: full
  }
  return file;
}

function delivery(id: number, signed = true) {
  const body = JSON.stringify(teamworkTaskPayload(id));
  return { body, headers: { 'x-projects-signature': signed ? signTeamwork(TOKEN, body) : '0'.repeat(64), 'x-projects-event': 'TASK.UPDATED' } };
}

async function send(url: string, id: number, signed = true): Promise<number> {
  const d = delivery(id, signed);
  return (await postTeamwork(url, d.body, d.headers)).status;
}

describe('a log destination that fails (disk full)', () => {
  it('never throws into the caller, and writes again (saying how many lines were lost) once it can', () => {
    const dir = tempDir();
    symlinkSync('/dev/full', path.join(dir, 'app.log'));
    const log = createLogger({ level: 'info', logDir: dir, console: false });
    for (let i = 0; i < 50; i++) expect(() => log.warn({ i }, 'delivery refused')).not.toThrow();
    expect(() => log.child({ component: 'http' }).error({ err: new Error('x') }, 'could not store delivery')).not.toThrow();

    // Space is back: the file is writable again.
    unlinkSync(path.join(dir, 'app.log'));
    const resumeAt = Date.now() + 1_500;
    while (Date.now() < resumeAt) {
      // the writer tries the file again at most once a second
    }
    log.info({ after: true }, 'written after the disk had room again');
    log.info({ after: true }, 'and the next line too');
    const written = lines(path.join(dir, 'app.log'));
    expect(written.some((l) => typeof l.lost === 'number' && (l.lost as number) >= 51)).toBe(true);
    expect(written.filter((l) => l.after === true)).toHaveLength(2);
  });

  it.skipIf(!canMount)('on a full disk holding data/ and logs/, the connector lives: 503 while the queue cannot be written, 401 unchanged, all back when space returns', async () => {
    const cwd = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', cwd]);
    mounts.push(cwd);
    const connector = await spawnConnector({ cwd, env: { TEAMWORK_WEBHOOK_TOKEN: TOKEN, BACKFILL_ON_START: 'false' } });
    running.push(connector);
    expect(await send(connector.url, 1)).toBe(200);

    const filler = fill(cwd);
    // The queue file's last page may still take a delivery or two; then every one is refused, 503.
    const during: number[] = [];
    for (let i = 0; i < 20; i++) during.push(await send(connector.url, 100 + i));
    expect(during.filter((s) => s !== 200 && s !== 503), `answers on a full disk: ${during.join(' ')}`).toEqual([]);
    expect(during.slice(-10), 'signed deliveries on a full disk').toEqual(Array<number>(10).fill(503));
    expect(await send(connector.url, 200, false), 'an unsigned delivery on a full disk').toBe(401);
    // The process answers; /health tells the truth: 503 once the worker's writes to the database on
    // that disk have failed (issue 15: a full disk is a database that cannot take writes).
    expect((await fetch(`${connector.url}/health/live`)).status).toBe(200);
    const health = await fetch(`${connector.url}/health`);
    const body = (await health.json()) as { database?: { ok: boolean; detail?: string } };
    if (health.status === 503) expect(body.database?.detail).toMatch(/writes have failed since/);
    else expect(health.status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(connector.child.exitCode, `the connector exited:\n${connector.output().slice(-3000)}`).toBeNull();

    rmSync(filler, { force: true });
    rmSync(path.join(cwd, 'filler2'), { force: true });
    await new Promise((r) => setTimeout(r, 1_200));
    const after: number[] = [];
    for (let i = 0; i < 3; i++) after.push(await send(connector.url, 300 + i));
    expect(after, 'signed deliveries once space is back').toEqual([200, 200, 200]);
    expect(await send(connector.url, 400, false)).toBe(401);
    // The log resumes: the refusal just made is in app.log, after a line saying what was lost.
    await new Promise((r) => setTimeout(r, 200));
    const log = lines(path.join(cwd, 'logs', 'app.log'));
    const lostAt = log.findIndex((l) => typeof l.lost === 'number');
    expect(lostAt, 'a line saying how many log lines were lost').toBeGreaterThanOrEqual(0);
    expect(log.slice(lostAt).some((l) => l.msg === 'delivery refused: X-Projects-Signature does not match the body (wrong token, or the body was changed on the way)')).toBe(true);
  });

  it.skipIf(!canMount)('with only the log disk full, deliveries are answered as always', async () => {
    const cwd = tempDir();
    const logs = path.join(cwd, 'logs');
    mkdirSync(logs);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', logs]);
    mounts.push(logs);
    const connector = await spawnConnector({ cwd, env: { TEAMWORK_WEBHOOK_TOKEN: TOKEN, BACKFILL_ON_START: 'false' } });
    running.push(connector);
    fill(logs);
    const answers: number[] = [];
    for (let i = 0; i < 10; i++) answers.push(await send(connector.url, 500 + i, i % 2 === 0));
    expect(answers).toEqual(answers.map((_, i) => (i % 2 === 0 ? 200 : 401)));
    await new Promise((r) => setTimeout(r, 300));
    expect(connector.child.exitCode, `the connector exited:\n${connector.output().slice(-3000)}`).toBeNull();
  });
});
