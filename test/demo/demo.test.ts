/**
 * `npm run demo`, run the way a new user runs it (one node process with tsx's loader, no .env, no
 * servers), in a temp working directory so that nothing is written into the repository: rows land in
 * the SQLite file within 10 s, the summary counts processed events, the dropped webhook is reported
 * recovered and its change is in the database, and SIGINT stops everything: exit 0 within seconds, no
 * child process, every port closed, and nothing left holding the process open.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEMO = path.join(ROOT, 'demo', 'index.ts');
/** tsx's loader by absolute URL: the child's working directory is a temp dir with no node_modules. */
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

interface DemoProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

const running: DemoProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const demo of running.splice(0)) {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
    await demo.exited;
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function workdir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-demo-'));
  dirs.push(dir);
  return dir;
}

function spawnDemo(cwd: string, args: string[]): DemoProcess {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, DEMO, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null, at: Date.now() }));
  const demo = { child, output: () => output, exited };
  running.push(demo);
  return demo;
}

/** Polls `probe` until it gives a value; gives up early when the demo exits, unless `afterExit`. */
async function waitFor<T>(what: string, probe: () => T | undefined | null | false, timeoutMs: number, demo: DemoProcess, afterExit = false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const value = probe();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch {
      // not there yet (the database file, a table)
    }
    if (!afterExit && demo.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; the demo printed:\n${demo.output()}`);
}

function query<T>(file: string, sql: string): T[] {
  const db = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

/** Resolves true when a TCP connection to the port is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** Pids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe('npm run demo', () => {
  it('shows rows within 10 s, counts processed events, recovers the dropped webhook, and stops cleanly on SIGINT', { timeout: 90_000 }, async () => {
    const cwd = workdir();
    const spawnedAt = Date.now();
    // --duration is only a backstop: the test stops it with SIGINT long before.
    const demo = spawnDemo(cwd, ['--duration', '75', '--port', '0']);
    const dbFile = path.join(cwd, 'data', 'demo', 'connector.db');

    const urls = await waitFor(
      'the start-up lines',
      () => {
        const text = demo.output();
        const url = (name: string) => new RegExp(`^\\s+${name}\\s+(http://127\\.0\\.0\\.1:(\\d+))`, 'm').exec(text);
        const found = ['connector', 'Teamwork', 'Missive', 'Airtable'].map(url);
        return found.every((m) => m !== null) ? found.map((m) => ({ url: (m as RegExpExecArray)[1] as string, port: Number((m as RegExpExecArray)[2]) })) : null;
      },
      20_000,
      demo,
    );
    const connectorUrl = (urls[0] as { url: string }).url;
    // The banner's later lines may arrive in a later chunk of output than its URLs (seen once in CI).
    await waitFor('the banner\'s query hint', () => demo.output().includes(`sqlite3 ${path.join('data', 'demo', 'connector.db')}`), 5_000, demo);

    // Rows within 10 s of start: the first backfill's tasks and emails, and a task made by a webhook.
    await waitFor('tasks and emails rows', () => {
      const [counts] = query<{ tasks: number; emails: number }>(dbFile, 'SELECT (SELECT count(*) FROM tasks) AS tasks, (SELECT count(*) FROM emails) AS emails');
      return counts !== undefined && counts.tasks > 0 && counts.emails > 0;
    }, 10_000 - (Date.now() - spawnedAt), demo);
    const launched = await waitFor('the task the tour creates, delivered by webhook', () => query<{ id: string; status: string }>(dbFile, "SELECT id, status FROM tasks WHERE title LIKE 'Draft the launch checklist%'")[0], 20_000, demo);
    expect(launched.id).toMatch(/^\d+$/);

    const health = await fetch(`${connectorUrl}/health`);
    expect(health.status).toBe(200);

    // The dropped webhook: reported lost, then recovered by reconciliation, and its change is stored.
    const dropped = await waitFor('the dropped webhook line', () => /webhook TASK\.UPDATED for task (\d+) .* was DROPPED/.exec(demo.output())?.[1], 30_000, demo);
    const recovered = await waitFor('the recovery line', () => /RECOVERED: the dropped webhook's change \(task (\d+)\) was found by reconciliation/.exec(demo.output())?.[1], 45_000, demo);
    expect(recovered).toBe(dropped);
    const [stored] = query<{ title: string }>(dbFile, `SELECT title FROM tasks WHERE id = '${dropped}'`);
    expect(stored?.title).toContain('renamed while its webhook was lost');

    // The trashed conversation: its emails are marked deleted.
    await waitFor('the trash line', () => /conversation trashed -> 2 emails marked deleted/.test(demo.output()), 30_000, demo);
    const [trashed] = query<{ n: number }>(dbFile, "SELECT count(*) AS n FROM emails WHERE deleted = 1 AND subject LIKE 'Your parcel%'");
    expect(trashed?.n).toBe(2);

    // The running summary (plain lines when not on a terminal) counts processed events.
    const summary = await waitFor('a summary line', () => [...demo.output().matchAll(/received Teamwork (\d+), Missive (\d+) \| processed (\d+) \|/g)].at(-1), 15_000, demo);
    expect(Number(summary[1])).toBeGreaterThan(0);
    expect(Number(summary[2])).toBeGreaterThan(0);
    expect(Number(summary[3])).toBeGreaterThan(0);

    // Everything runs in the one process; its only child is tsx's esbuild service, which must go too.
    const pid = demo.child.pid as number;
    const children = childrenOf(pid);
    for (const child of children) expect(readFileSync(`/proc/${child}/cmdline`, 'utf8')).toMatch(/esbuild/);

    const signalledAt = Date.now();
    demo.child.kill('SIGINT');
    const exit = await demo.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - signalledAt, 'from SIGINT to exit').toBeLessThan(10_000);

    const output = demo.output();
    expect(output).toContain('Stopping (SIGINT)');
    expect(output).toContain('nothing is left running');
    expect(Number(/events processed\s+(\d+)/.exec(output.slice(output.indexOf('nothing is left running')))?.[1])).toBeGreaterThan(0);
    // The process exited by itself, not by the guard that names what held it open.
    expect(output).not.toContain('held the process open');
    expect(output).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/); // no stack trace
    for (const { port } of urls) expect(await refused(port), `port ${port} closed`).toBe(true);
    expect(() => process.kill(pid, 0)).toThrow();
    await waitFor('the esbuild service to end', () => children.every((child) => !existsSync(`/proc/${child}`)), 5_000, demo, true);
    // The claim on the folder is released; the data stays.
    expect(existsSync(path.join(cwd, 'data', 'demo', 'demo.pid'))).toBe(false);
    expect(existsSync(dbFile)).toBe(true);
    expect(readFileSync(path.join(cwd, 'logs', 'demo', 'app.log'), 'utf8')).toContain('"msg":"stopped"');
  });

  it('refuses a data folder it did not make, and leaves it untouched', async () => {
    const cwd = workdir();
    const dataDir = path.join(cwd, 'data', 'demo');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'precious.txt'), 'not the demo’s');
    const demo = spawnDemo(cwd, ['--port', '0']);
    const exit = await demo.exited;
    expect(exit.code).toBe(2);
    expect(demo.output()).toContain('holds files the demo did not make');
    expect(readFileSync(path.join(dataDir, 'precious.txt'), 'utf8')).toBe('not the demo’s');
  });
});
