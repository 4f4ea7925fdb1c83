import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { createLogger, createLoggerFromConfig } from '../../src/log.ts';

function sink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('log', () => {
  it('writes JSON lines with time, level, message and component fields to logs/app.log', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-log-'));
    dirs.push(dir);
    const log = createLogger({ level: 'info', logDir: dir, console: false });
    log.child({ source: 'teamwork', eventId: 'e-1' }).info({ attempt: 2 }, 'event processed');
    const line = JSON.parse(readFileSync(path.join(dir, 'app.log'), 'utf8').trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', msg: 'event processed', source: 'teamwork', eventId: 'e-1', attempt: 2 });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it('never lets a configured secret reach a line, wherever it appears', () => {
    const config = parseConfig({ TEAMWORK_API_KEY: 'tw-key-0123456789', MISSIVE_WEBHOOK_SECRET: 'mi"ss\\ive-secret', DATABASE_URL: 'postgres://u:pw-9876543@db/x', ADMIN_TOKEN: 'admin-token-abcdefgh' });
    const out = sink();
    const log = createLoggerFromConfig(config, { console: false, logDir: undefined, destination: out.stream });
    log.info({ url: `https://x.test/?key=${config.TEAMWORK_API_KEY}`, nested: { value: config.MISSIVE_WEBHOOK_SECRET } }, `connecting with ${config.DATABASE_URL}`);
    log.error({ err: new Error(`auth failed for tw-key-0123456789 and ${encodeURIComponent('mi"ss\\ive-secret')}`) }, 'boom admin-token-abcdefgh');
    log.warn({ headers: { authorization: 'Basic dHcta2V5', 'x-hook-signature': 'sha256=abc', 'x-projects-signature': 'deadbeef' } }, 'delivery refused');
    const all = out.lines.join('\n');
    expect(out.lines).toHaveLength(3);
    for (const secret of ['tw-key-0123456789', 'ss\\\\ive-secret', 'ss\\ive-secret', 'pw-9876543', 'admin-token-abcdefgh', 'dHcta2V5', 'sha256=abc', 'deadbeef']) {
      expect(all).not.toContain(secret);
    }
    expect(all).toContain('[redacted]');
    for (const line of out.lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
  });

  it('rotates app.log by size and keeps a bounded number of files', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-log-'));
    dirs.push(dir);
    const log = createLogger({ level: 'info', logDir: dir, console: false, maxFileBytes: 2000, maxFiles: 2 });
    for (let i = 0; i < 100; i++) log.info({ i, padding: 'x'.repeat(100) }, 'line');
    const files = readdirSync(dir).sort();
    expect(files).toEqual(['app.log', 'app.log.1', 'app.log.2']);
    const current = readFileSync(path.join(dir, 'app.log'), 'utf8').trim().split('\n');
    expect(JSON.parse(current.at(-1) as string)).toMatchObject({ i: 99 });
  });
});

describe('LOG_FORMAT (the console for containers and log collectors)', () => {
  /** Runs a child that logs two lines with the connector's logger from LOG_FORMAT; returns its output. */
  function childLog(format: string): { stdout: string; stderr: string } {
    const script = [
      "const { parseConfig } = await import('./src/config.ts');",
      "const { createLoggerFromConfig } = await import('./src/log.ts');",
      "const { createRequire } = await import('node:module');",
      `const log = createLoggerFromConfig(parseConfig({ LOG_FORMAT: '${format}', LOG_DIR: process.env.DIR, TEAMWORK_API_KEY: 'tw-key-SECRET-123' }));`,
      "log.info({ source: 'teamwork' }, 'first line');",
      "log.warn('the key tw-key-SECRET-123 must not show');",
      "const loaded = Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('/pino-pretty/'));",
      "log.info({ prettyLoaded: loaded }, 'modules');",
    ].join('\n');
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-logformat-'));
    try {
      const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: path.resolve(import.meta.dirname, '../..'), env: { ...process.env, DIR: dir }, encoding: 'utf8' });
      return { stdout: result.stdout, stderr: result.stderr };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('json: the JSON lines on stdout, secrets scrubbed, nothing on stderr, and pino-pretty not loaded', () => {
    const { stdout, stderr } = childLog('json');
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.msg)).toEqual(['first line', 'the key [redacted] must not show', 'modules']);
    expect(lines[0]).toMatchObject({ level: 'info', source: 'teamwork', time: expect.any(String) });
    expect(lines[2]?.prettyLoaded).toBe(false);
    expect(stderr).toBe('');
  });

  it('pretty (the default): readable lines on stderr, nothing on stdout', () => {
    const { stdout, stderr } = childLog('pretty');
    expect(stdout).toBe('');
    expect(stderr).toMatch(/INFO: first line/);
    expect(stderr).toContain('the key [redacted] must not show');
  });

  it('refuses another value, naming the setting', () => {
    expect(() => parseConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT/);
  });
});
