/**
 * Runs the real connector as a child process (`node --import tsx src/cli.ts <command>`), the way an operator does,
 * for end-to-end and crash tests. The child gets a fresh environment (no .env from the repo is read:
 * its working directory is a temp dir) and listens on a port of its own choosing (PORT=0); `start`
 * resolves once it has printed where it listens. `wrap` runs it elsewhere: on a host of
 * test/helpers/hosts.ts (a network namespace), the process keeping its pid so that signals reach it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'src', 'cli.ts');
/** tsx's loader by absolute URL: the child's working directory is a temp dir with no node_modules. */
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export interface ConnectorProcess {
  child: ChildProcess;
  /** http://<HOST>:<port>, once listening (serve/start only). */
  url: string;
  /** Everything the process printed so far (stdout + stderr). */
  output(): string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnOptions {
  command?: 'start' | 'serve' | 'work' | string;
  args?: string[];
  env?: Record<string, string>;
  cwd: string;
  /** Wait for "listening on" before resolving. Default true for start/serve. */
  waitForListen?: boolean;
  timeoutMs?: number;
  /** The command line to run instead of `command args` (Host.wrap); it must exec the command in place. */
  wrap?: (command: string, args: readonly string[]) => { command: string; args: string[] };
}

export async function spawnConnector(options: SpawnOptions): Promise<ConnectorProcess> {
  const command = options.command ?? 'start';
  // One process: node with tsx's loader, so that a signal reaches the connector itself (the tsx binary
  // would run it in a child that outlives a SIGKILL of its parent).
  const line = { command: process.execPath, args: ['--import', TSX_LOADER, CLI, command, ...(options.args ?? [])] };
  const wrapped = options.wrap?.(line.command, line.args) ?? line;
  const child = spawn(wrapped.command, wrapped.args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);

  let url = '';
  const waitForListen = options.waitForListen ?? (command === 'start' || command === 'serve');
  if (waitForListen) {
    const deadline = Date.now() + (options.timeoutMs ?? 20_000);
    let done = false;
    void exited.then(() => (done = true));
    while (!done && Date.now() < deadline) {
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(output);
      if (match) {
        url = match[1] as string;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (url === '') {
      child.kill('SIGKILL');
      throw new Error(`connector did not start listening:\n${output}`);
    }
  }
  return { child, url, output: () => output, exited, kill: (signal = 'SIGTERM') => child.kill(signal) };
}
