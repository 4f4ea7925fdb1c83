/** Shared bits of the Missive source tests: fixtures, configs, a log sink, deliveries. */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig, type Config } from '../../../src/config.ts';
import { createLogger, type Logger } from '../../../src/log.ts';
import type { Delivery } from '../../../src/sources/source.ts';

/** A fixture's parsed JSON (a fresh copy each call). */
export function fixture<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as T;
}

/** A fixture's exact bytes. */
export function fixtureBytes(name: string): Buffer {
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
}

let configs = 0;
const dataDirs: string[] = [];
process.on('exit', () => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * Settings for a test; DATA_DIR is a path of its own (made only if something is written there, such
 * as the backfill's trash-sweep record), so that tests never share state. Removed when the process ends.
 */
export function config(env: Record<string, string> = {}): Config {
  const dataDir = path.join(tmpdir(), `connector-missive-tests-${process.pid}-${++configs}`);
  dataDirs.push(dataDir);
  return parseConfig({ DATA_DIR: dataDir, ...env });
}

/** A logger whose JSON lines tests can read. */
export function logSink(level = 'debug'): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const log = createLogger({ level, console: false, destination });
  return {
    log,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export function delivery(body: Buffer | string, headers: Record<string, string> = { 'content-type': 'application/json' }, receivedAt = new Date('2024-11-28T12:00:30.000Z')): Delivery {
  return { rawBody: Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'), headers, receivedAt };
}
