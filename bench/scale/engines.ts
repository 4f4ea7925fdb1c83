/**
 * What the scale benchmark runs its queue engines and databases on, and how it reads their CPU:
 * - a private redis-server on a free port in a temp dir, with the durable configuration the connector
 *   requires (`appendonly yes`, `appendfsync always`; RDB snapshots off, so that no background save
 *   lands in one round and not another), stopped and removed at the end;
 * - PostgreSQL databases on the machine's server, created and dropped by the benchmark;
 * - CPU seconds from /proc: a process (utime + stime), the backends of one PostgreSQL database (their
 *   pids from pg_stat_activity), and the whole machine (/proc/stat, for how busy both cores were).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';

/** USER_HZ: /proc counts CPU time in these ticks. */
const TICKS_PER_SECOND = 100;

/** A port free right now on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** CPU seconds (user + system) the process `pid` has used so far; null when it is gone. */
export function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** CPU seconds of several processes, each from its own start (a process that is gone counts 0). */
export function cpuOf(pids: readonly (number | undefined)[]): number {
  return pids.reduce<number>((sum, pid) => sum + (processCpuSeconds(pid) ?? 0), 0);
}

/** The whole machine's CPU time so far (/proc/stat, all cores), seconds: busy (incl. steal) and total. */
export function machineCpu(): { busy: number; total: number; steal: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [, ...values] = line.trim().split(/\s+/);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = values.map(Number) as number[];
  const idleAll = (idle ?? 0) + (iowait ?? 0);
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy: busy / TICKS_PER_SECOND, total: (busy + idleAll) / TICKS_PER_SECOND, steal: (steal ?? 0) / TICKS_PER_SECOND };
}

/** The cores busy on average between two machineCpu readings (2.0 = both cores of two). */
export function coresBusy(from: ReturnType<typeof machineCpu>, to: ReturnType<typeof machineCpu>, wallSeconds: number): { busy: number; steal: number } {
  return { busy: (to.busy - from.busy) / wallSeconds, steal: (to.steal - from.steal) / wallSeconds };
}

// ───────────────────────────── Redis ─────────────────────────────

export interface PrivateRedis {
  url: string;
  pid: number | undefined;
  /** `appendonly` and `appendfsync` as the server reports them. */
  durability: string;
  version: string;
  stop(): Promise<void>;
}

/** Starts redis-server (REDIS_SERVER or `redis-server` on PATH) on a free port in a temp dir. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-scale-redis-'));
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.env.REDIS_SERVER ?? 'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--logfile', path.join(dir, 'redis.log')],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit').catch(() => {});
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    redis.on('error', () => {});
    try {
      await redis.connect();
      const [, appendonly] = (await redis.config('GET', 'appendonly')) as string[];
      const [, appendfsync] = (await redis.config('GET', 'appendfsync')) as string[];
      const version = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
      redis.disconnect();
      return { url, pid: child.pid, durability: `appendonly ${appendonly}, appendfsync ${appendfsync}`, version, stop };
    } catch (err) {
      redis.disconnect();
      if (child.exitCode !== null || Date.now() > deadline) {
        await stop();
        throw new Error(`the private redis-server did not start on port ${port}: ${(err as Error).message}`, { cause: err });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

// ───────────────────────────── PostgreSQL ─────────────────────────────

/** The URL of database `name` on the server `adminUrl` names. */
export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function withAdmin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Creates database `name` (dropping a leftover of the same name) and returns its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  await withAdmin(adminUrl, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  });
  return databaseUrl(adminUrl, name);
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

/**
 * The CPU of the backends serving database `name`, read from /proc by pid: `snapshot()` remembers
 * each backend's CPU so far, `since()` sums what each used after its snapshot (a backend that
 * connected in between counts whole). A backend that disconnected in between is lost (pools keep
 * their connections for 30 s and more, so few are).
 */
export class DatabaseCpu {
  private base = new Map<number, number>();
  constructor(
    private readonly client: pg.Client,
    private readonly name: string,
  ) {}

  private async pids(): Promise<number[]> {
    const { rows } = await this.client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [this.name]);
    return rows.map((r) => r.pid);
  }

  async snapshot(): Promise<void> {
    this.base = new Map((await this.pids()).map((pid) => [pid, processCpuSeconds(pid) ?? 0]));
  }

  async since(): Promise<number> {
    let total = 0;
    for (const pid of await this.pids()) total += (processCpuSeconds(pid) ?? 0) - (this.base.get(pid) ?? 0);
    return total;
  }
}
