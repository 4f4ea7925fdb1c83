/**
 * Runs a compiled connector (`node <dist>/cli.js start`, no tsx) as a child process in `cwd`, on a
 * free port with the embedded default in a temp directory, and waits until it listens (its address
 * read from the console, pretty or JSON). For the tests of the production build and the image's steps.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface CompiledConnector {
  /** http://127.0.0.1:<port> */
  url: string;
  stdout(): string;
  stderr(): string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export async function startCompiled(cli: string, cwd: string, env: Record<string, string> = {}): Promise<CompiledConnector> {
  const data = mkdtempSync(path.join(tmpdir(), 'conn-compiled-'));
  const child = spawn(process.execPath, [cli, 'start'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', DATA_DIR: path.join(data, 'data'), LOG_DIR: path.join(data, 'logs'), BACKFILL_ON_START: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    child.kill('SIGTERM');
    const code = await exited;
    rmSync(data, { recursive: true, force: true });
    return code;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1] ?? /"url":"(http:\/\/[^"]+)"/.exec(stdout)?.[1];
    if (url !== undefined) return { url, stdout: () => stdout, stderr: () => stderr, stop };
    if (Date.now() > deadline || child.exitCode !== null) {
      await stop();
      throw new Error(`the compiled connector did not start:\n${stdout}\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
