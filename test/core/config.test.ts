import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigSchema, parseConfig, readEnv, unknownSettings, unknownSettingText } from '../../src/config.ts';
import { spawnConnector } from '../helpers/connector-process.ts';

describe('config', () => {
  it('runs with no settings at all on the embedded defaults', () => {
    const config = parseConfig({});
    expect(config).toMatchObject({ PORT: 8080, HOST: '127.0.0.1', DB_BACKEND: 'sqlite', QUEUE_BACKEND: 'file', MAX_QUEUE_ATTEMPTS: 3, BACKFILL_OVERLAP_SECONDS: 120, BACKFILL_INITIAL_HOURS: 24, LOG_LEVEL: 'info', WORKER_CONCURRENCY: 1 });
    expect(config.sqlitePath).toMatch(/data\/connector\.db$/);
    expect(config.queueDir).toMatch(/data\/queue$/);
    expect(config.teamworkBaseUrl).toBeNull();
  });

  it('names the variable and the rule for a bad value', () => {
    expect(() => parseConfig({ MAX_QUEUE_ATTEMPTS: 'abc' })).toThrow('Invalid setting MAX_QUEUE_ATTEMPTS: must be a number (got "abc")');
    expect(() => parseConfig({ MAX_QUEUE_ATTEMPTS: '0' })).toThrow('Invalid setting MAX_QUEUE_ATTEMPTS: must be at least 1');
    expect(() => parseConfig({ PORT: '70000' })).toThrow(/Invalid setting PORT: must be at most 65535/);
    expect(() => parseConfig({ DB_BACKEND: 'mysql' })).toThrow(/Invalid setting DB_BACKEND: must be sqlite, postgres or airtable/);
    expect(() => parseConfig({ MISSIVE_BASE_URL: 'ftp://x' })).toThrow(/Invalid setting MISSIVE_BASE_URL: must be an http\(s\) URL/);
    expect(() => parseConfig({ QUEUE_LOCK_SECONDS: '2' })).toThrow('Invalid setting QUEUE_LOCK_SECONDS: must be at least 5 (got "2")');
  });

  it('never echoes a secret value in the message', () => {
    expect(() => parseConfig({ ADMIN_TOKEN: 'short-secret' })).toThrow(/^Invalid setting ADMIN_TOKEN: must be at least 16 characters$/);
  });

  it('refuses a control or non-ASCII character in a token sent in an HTTP header, naming the variable and never the value (issue 14)', () => {
    const HEADER_TOKENS = ['TEAMWORK_API_KEY', 'MISSIVE_API_TOKEN', 'AIRTABLE_TOKEN', 'NGROK_AUTHTOKEN', 'ADMIN_TOKEN'];
    const bad = ['abc\u0007def-0123456789abcdef', 'abc\ndef-0123456789abcdef', 'abc\u0000def-0123456789abcdef', 'abc\u007fdef-0123456789abcdef', '\u201cabcdef-0123456789abcdef\u201d', 'abc\tdef-0123456789abcdef'];
    for (const name of HEADER_TOKENS) {
      for (const value of bad) {
        let message = '';
        try {
          parseConfig({ [name]: value });
        } catch (err) {
          message = (err as Error).message;
          expect(err).toMatchObject({ code: 'CONN_ERR_CONFIG_INVALID', details: { variable: name } });
        }
        expect(message, `${name} = ${JSON.stringify(value)}`).toMatch(new RegExp(`^Invalid setting ${name}: must hold only printable ASCII characters`));
        expect(message).not.toContain('def-0123');
        expect(message).not.toMatch(/[\n\r]/);
      }
      // Real tokens pass (Airtable's have a dot, Teamwork's and Missive's are plain).
      expect(() => parseConfig({ [name]: 'patAbC123.0123456789abcdef0123456789' })).not.toThrow();
    }
  });

  it('exits 2 at start-up with one line naming the variable for a token with a control character', () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'conn-config-'));
    try {
      const here = path.dirname(fileURLToPath(import.meta.url));
      const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
      const run = spawnSync(process.execPath, ['--import', tsx, path.resolve(here, '../../src/cli.ts'), 'start'], {
        cwd,
        env: { PATH: process.env.PATH ?? '', MISSIVE_API_TOKEN: 'missive-\u0007-token-value', DATA_DIR: path.join(cwd, 'data'), LOG_DIR: path.join(cwd, 'logs'), PORT: '0' },
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(run.status).toBe(2);
      const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('MISSIVE_API_TOKEN');
      expect(run.stderr + run.stdout).not.toContain('token-value');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('takes a lease time in whole seconds and a reconciliation interval in minutes with decimals (issue 16)', () => {
    expect(parseConfig({})).toMatchObject({ RECONCILE_LEASE_SECONDS: 30, BACKFILL_INTERVAL_MINUTES: 15 });
    expect(parseConfig({ RECONCILE_LEASE_SECONDS: '3', BACKFILL_INTERVAL_MINUTES: '0.05' })).toMatchObject({ RECONCILE_LEASE_SECONDS: 3, BACKFILL_INTERVAL_MINUTES: 0.05 });
    expect(() => parseConfig({ RECONCILE_LEASE_SECONDS: '1' })).toThrow('Invalid setting RECONCILE_LEASE_SECONDS: must be at least 2 (got "1")');
    expect(() => parseConfig({ RECONCILE_LEASE_SECONDS: '2.5' })).toThrow('Invalid setting RECONCILE_LEASE_SECONDS: must be a whole number (got "2.5")');
    expect(() => parseConfig({ BACKFILL_INTERVAL_MINUTES: 'often' })).toThrow('Invalid setting BACKFILL_INTERVAL_MINUTES: must be a number (got "often")');
    expect(() => parseConfig({ BACKFILL_INTERVAL_MINUTES: '-1' })).toThrow('Invalid setting BACKFILL_INTERVAL_MINUTES: must be at least 0 (got "-1")');
  });

  it('requires what a chosen backend needs', () => {
    expect(() => parseConfig({ DB_BACKEND: 'postgres' })).toThrow('Invalid setting DATABASE_URL: required when DB_BACKEND=postgres');
    expect(() => parseConfig({ DB_BACKEND: 'airtable', AIRTABLE_TOKEN: 'patXYZ' })).toThrow('Invalid setting AIRTABLE_BASE_ID: required when DB_BACKEND=airtable');
  });

  it('treats empty values as unset and accepts the seed log levels', () => {
    expect(parseConfig({ PORT: '', LOG_LEVEL: 'WARNING' })).toMatchObject({ PORT: 8080, LOG_LEVEL: 'warn' });
    expect(parseConfig({ LOG_LEVEL: 'DEBUG' }).LOG_LEVEL).toBe('debug');
  });

  it('derives the Teamwork API root from the site, EU included', () => {
    expect(parseConfig({ TEAMWORK_SITE: 'acme' }).teamworkBaseUrl).toBe('https://acme.teamwork.com');
    expect(parseConfig({ TEAMWORK_SITE: 'acme.eu' }).teamworkBaseUrl).toBe('https://acme.eu.teamwork.com');
    expect(parseConfig({ TEAMWORK_SITE: 'acme', TEAMWORK_BASE_URL: 'http://127.0.0.1:4010/' }).teamworkBaseUrl).toBe('http://127.0.0.1:4010');
  });

  it('.env.example documents every setting, and only those', () => {
    const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const documented = [...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(Object.keys(ConfigSchema.shape).sort());
    // Every variable has a comment line right above it (or above its group).
    const defaults = parseConfig({});
    for (const line of example.split('\n').filter((l) => /^[A-Z0-9_]+=./.test(l))) {
      const [name, value] = line.split('=') as [keyof typeof defaults, string];
      expect(String(defaults[name]).replace(/^.*\/(data|logs)$/, './$1'), `${name} default in .env.example`).toBe(value);
    }
  });

  describe('unknown settings (issue 15 item 4)', () => {
    it('flags a near miss of a known name (case-insensitive) and a name with one of our prefixes, naming the closest setting', () => {
      const found = unknownSettings({ DB_BACKND: 'postgres', MISSIVE_WEBHOOK_SECERT: 'hush-hush', db_backend: 'sqlite', TEAMWORK_APIKEY: 'k', LOGLEVEL: 'debug', WEBHOOK_MAX_BODY_BYTE: '1', TEAMWORK_SOMETHING_ELSE_ENTIRELY: 'x', DB_BACKEND: 'sqlite' });
      expect(Object.fromEntries(found.map((f) => [f.name, f.suggestion]))).toEqual({
        DB_BACKND: 'DB_BACKEND',
        MISSIVE_WEBHOOK_SECERT: 'MISSIVE_WEBHOOK_SECRET',
        db_backend: 'DB_BACKEND',
        TEAMWORK_APIKEY: 'TEAMWORK_API_KEY',
        LOGLEVEL: 'LOG_LEVEL',
        WEBHOOK_MAX_BODY_BYTE: 'WEBHOOK_MAX_BODY_BYTES',
        TEAMWORK_SOMETHING_ELSE_ENTIRELY: null,
      });
      expect(unknownSettingText({ name: 'DB_BACKND', suggestion: 'DB_BACKEND' })).toBe('unknown setting DB_BACKND: did you mean DB_BACKEND?');
      expect(unknownSettingText({ name: 'TEAMWORK_SOMETHING_ELSE_ENTIRELY', suggestion: null })).toMatch(/^unknown setting TEAMWORK_SOMETHING_ELSE_ENTIRELY: not a setting of this connector/);
    });

    it('leaves the system\'s own variables alone', () => {
      const system = ['PATH', 'HOME', 'USER', 'SHELL', 'TERM', 'LANG', 'PWD', 'OLDPWD', 'HOSTNAME', 'HOSTTYPE', 'LOGNAME', 'TMPDIR', 'TZ', 'CI', 'NODE_ENV', 'NODE_OPTIONS', 'npm_config_cache', 'npm_lifecycle_event', 'HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'NO_PROXY', 'TEST_DATABASE_URL', 'PG_BIN_DIR', 'VITEST', 'VITEST_POOL_ID', 'GITHUB_ACTIONS', 'XDG_RUNTIME_DIR', 'LC_ALL', 'SSH_AUTH_SOCK', 'COLORTERM', 'SHLVL', 'MAIL', 'EDITOR', 'DISPLAY', 'PORT', 'HOST'];
      expect(unknownSettings(Object.fromEntries(system.map((n) => [n, 'x'])))).toEqual([]);
    });

    it('a setting required but missing names the misspelled variable that was meant to set it', () => {
      expect(() => parseConfig({ DB_BACKEND: 'postgres', DATABASE_ULR: 'postgres://secret@db/x' })).toThrow(/^Invalid setting DATABASE_URL: required when DB_BACKEND=postgres \(unknown setting DATABASE_ULR: did you mean DATABASE_URL\?\)$/);
    });

    it('parseConfig carries them, from .env as from the environment', () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'conn-config-env-'));
      try {
        writeFileSync(path.join(dir, '.env'), 'DB_BACKND=postgres\nPORT=8081\n');
        const config = parseConfig(readEnv(dir, { MISSIVE_WEBHOOK_SECERT: 'hush-hush' }));
        expect(config.DB_BACKEND).toBe('sqlite');
        expect(config.unknownSettings.map(unknownSettingText).sort()).toEqual(['unknown setting DB_BACKND: did you mean DB_BACKEND?', 'unknown setting MISSIVE_WEBHOOK_SECERT: did you mean MISSIVE_WEBHOOK_SECRET?']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('start warns at start-up for each, from .env and from the environment, never printing the values', { timeout: 40_000 }, async () => {
      const cwd = mkdtempSync(path.join(tmpdir(), 'conn-config-start-'));
      try {
        writeFileSync(path.join(cwd, '.env'), 'DB_BACKND=postgres\n');
        const connector = await spawnConnector({ cwd, env: { MISSIVE_WEBHOOK_SECERT: 'value-never-printed', BACKFILL_ON_START: 'false', DATA_DIR: path.join(cwd, 'data'), LOG_DIR: path.join(cwd, 'logs') } });
        try {
          const output = connector.output();
          expect(output).toContain('unknown setting DB_BACKND: did you mean DB_BACKEND?');
          expect(output).toContain('unknown setting MISSIVE_WEBHOOK_SECERT: did you mean MISSIVE_WEBHOOK_SECRET?');
          expect(output).not.toContain('value-never-printed');
          expect(readFileSync(path.join(cwd, 'logs', 'app.log'), 'utf8')).toContain('unknown setting DB_BACKND');
        } finally {
          connector.kill('SIGTERM');
          await connector.exited;
        }
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    });
  });
});
