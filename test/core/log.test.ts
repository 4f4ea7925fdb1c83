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
