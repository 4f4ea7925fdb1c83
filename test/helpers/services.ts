/**
 * The real services integration tests use, and the skip rule:
 * - On a developer machine without PostgreSQL or Redis, tests that need them are skipped, with ONE
 *   warning line per service per test process saying so.
 * - Under CI (`CI=true`) a missing service fails the run: CI must never pass by skipping.
 *
 * Addresses: TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) and TEST_REDIS_URL
 * (default redis://127.0.0.1:6379). Tests never read DATABASE_URL or REDIS_URL: those may name an
 * operator's real database, and tests create and drop schemas.
 *
 * `startPrivatePostgres` runs a throwaway PostgreSQL server of the test's own, for tests that stop and
 * start the server: the shared one is used by other tests at the same time and must stay up.
 * `startPrivateRedis` does the same for Redis (AOF on, `appendfsync always`), for tests that restart it.
 * Both listen on 127.0.0.1 unless told another address of this machine (a bridge to network namespaces,
 * test/helpers/hosts.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export const TEST_POSTGRES_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Milliseconds to wait for a service to answer before calling it unavailable. */
const PROBE_TIMEOUT_MS = 3000;

export interface ServiceCheck {
  available: boolean;
  /** The address that was tried. */
  url: string;
}

const warned = new Set<string>();

async function requireService(name: string, url: string, probe: () => Promise<void>): Promise<ServiceCheck> {
  try {
    await probe();
    return { available: true, url };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const shown = url.replace(/\/\/[^@/]*@/, '//***@');
    if (process.env.CI === 'true') throw new Error(`${name} is required under CI=true but unreachable at ${shown}: ${reason}`, { cause: err });
    if (!warned.has(name)) {
      warned.add(name);
      console.warn(`[tests] ${name} unreachable at ${shown} (${reason}); skipping ${name} tests. Set CI=true to fail instead.`);
    }
    return { available: false, url };
  }
}

/** Whether the test PostgreSQL answers `SELECT 1`. Throws under CI=true when it does not. */
export function requirePostgres(url: string = TEST_POSTGRES_URL): Promise<ServiceCheck> {
  return requireService('PostgreSQL', url, async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
    } finally {
      await client.end().catch(() => {});
    }
  });
}

/** Whether the test Redis answers PING (after AUTH when the URL has a password). Throws under CI=true when it does not. */
/** Runs `fn` on a fresh client of `connectionString` (an administrator's session), then ends it. */
export async function withPostgresClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export function requireRedis(url: string = TEST_REDIS_URL): Promise<ServiceCheck> {
  return requireService('Redis', url, () => pingRedis(new URL(url)));
}

/** One RESP command, as an array of bulk strings. */
function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

function pingRedis(url: URL): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: url.hostname || '127.0.0.1', port: Number(url.port || 6379) });
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => fail(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
    socket.on('error', fail);
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (reply.startsWith('-')) return fail(new Error(`Redis said ${reply.trim()}`));
      if (reply.includes('+PONG\r\n')) {
        socket.end();
        resolve();
      }
    });
    socket.on('connect', () => {
      const password = decodeURIComponent(url.password);
      const username = decodeURIComponent(url.username);
      if (password !== '') socket.write(username !== '' ? resp('AUTH', username, password) : resp('AUTH', password));
      socket.write(resp('PING'));
    });
  });
}

/** A PostgreSQL server private to one test: its own data directory, port and socket directory. */
export interface PrivatePostgres {
  /** postgres://postgres@<address>:<port>/postgres */
  readonly url: string;
  /** The address it listens on. */
  readonly address: string;
  readonly port: number;
  /** Starts the server (after `stop`), waiting until it accepts connections. */
  start(): Promise<void>;
  /** Stops the server: 'fast' disconnects clients and shuts down cleanly; 'immediate' is a crash (recovery from WAL on the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Stops the server if it runs and removes its directory. Safe to call more than once. */
  destroy(): Promise<void>;
}

/** Directory of the newest installed PostgreSQL's binaries (PG_BIN_DIR overrides), or null. */
export function findPostgresBinaries(): string | null {
  const override = process.env.PG_BIN_DIR;
  if (override !== undefined && existsSync(path.join(override, 'initdb'))) return override;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : path.join(root, versions[0], 'bin');
}

async function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, address, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface PrivateServerOptions {
  /** The address to listen on (an address of this machine). Default 127.0.0.1. */
  address?: string;
  /** PostgreSQL: where clients may connect from besides loopback (a CIDR, trusted). Default none. */
  allow?: string;
  /** PostgreSQL: max_connections. Default the server's (100). */
  maxConnections?: number;
}

/**
 * Creates and starts a private PostgreSQL server (initdb with trust auth; about a second). PostgreSQL
 * refuses to run as root, so as root the server's files belong to, and its commands run as, the
 * `postgres` OS user. Returns null when no PostgreSQL binaries are installed. The caller must
 * `destroy()` it, also when the test fails.
 */
export async function startPrivatePostgres(options: PrivateServerOptions = {}): Promise<PrivatePostgres | null> {
  const bin = findPostgresBinaries();
  if (bin === null) return null;
  const address = options.address ?? '127.0.0.1';
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-pg-private-'));
  const dataDir = path.join(dir, 'data');
  const asRoot = userInfo().uid === 0;
  const exec = (command: string, args: string[]) => run(asRoot ? 'runuser' : path.join(bin, command), asRoot ? ['-u', 'postgres', '--', path.join(bin, command), ...args] : args, { timeout: 30_000 });
  let running = false;
  let destroyed = false;
  const port = await freePort(address);
  const maxConnections = options.maxConnections === undefined ? '' : ` -c max_connections=${options.maxConnections}`;
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=${address} -c fsync=on${maxConnections}`;

  const instance: PrivatePostgres = {
    url: `postgres://postgres@${address}:${port}/postgres`,
    address,
    port,
    async start() {
      await exec('pg_ctl', ['-D', dataDir, '-o', serverOptions, '-l', path.join(dir, 'server.log'), '-w', '-t', '20', 'start']);
      running = true;
    },
    async stop(mode = 'fast') {
      await exec('pg_ctl', ['-D', dataDir, '-m', mode, '-w', '-t', '20', 'stop']);
      running = false;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      if (running) await instance.stop('immediate').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    if (asRoot) {
      const { stdout: uid } = await run('id', ['-u', 'postgres']);
      const { stdout: gid } = await run('id', ['-g', 'postgres']);
      chownSync(dir, Number(uid.trim()), Number(gid.trim()));
    }
    await exec('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C', '--no-instructions']);
    if (options.allow !== undefined) appendFileSync(path.join(dataDir, 'pg_hba.conf'), `host all all ${options.allow} trust\n`);
    await instance.start();
    return instance;
  } catch (err) {
    await instance.destroy();
    throw err;
  }
}

/** A Redis server private to one test: its own directory (the AOF), port and address. */
export interface PrivateRedis {
  /** redis://<address>:<port> */
  readonly url: string;
  readonly port: number;
  /** Starts the server (after `stop`) on the same directory, waiting until it answers PING. */
  start(): Promise<void>;
  /**
   * Stops the server: 'shutdown' is SIGTERM (Redis syncs its AOF and exits), 'kill' is a crash
   * (SIGKILL; with `appendfsync always` nothing it answered is lost).
   */
  stop(mode?: 'shutdown' | 'kill'): Promise<void>;
  /** Stops the server if it runs and removes its directory. Safe to call more than once. */
  destroy(): Promise<void>;
}

/**
 * Starts a private Redis server (`redis-server` from PATH, or REDIS_SERVER) with AOF on and `appendfsync
 * always` in a temp directory, on a free port of `address`. Returns null when there is no redis-server.
 * The caller must `destroy()` it, also when the test fails.
 */
export async function startPrivateRedis(options: Pick<PrivateServerOptions, 'address'> = {}): Promise<PrivateRedis | null> {
  const binary = process.env.REDIS_SERVER ?? 'redis-server';
  try {
    await run(binary, ['--version'], { timeout: 10_000 });
  } catch {
    return null;
  }
  const address = options.address ?? '127.0.0.1';
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-redis-private-'));
  const port = await freePort(address);
  const url = `redis://${address}:${port}`;
  let child: ChildProcess | null = null;
  let exited: Promise<unknown> = Promise.resolve();
  let destroyed = false;
  let output = '';

  const instance: PrivateRedis = {
    url,
    port,
    async start() {
      const args = ['--bind', address, '--port', String(port), '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no', '--daemonize', 'no', '--logfile', ''];
      const started = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child = started;
      started.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
      started.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
      exited = once(started, 'exit');
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (started.exitCode !== null || started.signalCode !== null) throw new Error(`redis-server exited at start:\n${output}`);
        try {
          await pingRedis(new URL(url));
          return;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`redis-server did not answer within 20 s: ${(err as Error).message}\n${output}`, { cause: err });
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    },
    async stop(mode = 'shutdown') {
      const running = child;
      if (running === null) return;
      child = null;
      if (running.exitCode === null && running.signalCode === null) running.kill(mode === 'kill' ? 'SIGKILL' : 'SIGTERM');
      await exited;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await instance.stop('kill').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await instance.start();
    return instance;
  } catch (err) {
    await instance.destroy();
    throw err;
  }
}
