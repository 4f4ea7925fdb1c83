/**
 * The small promises of the package: `connector --version` prints package.json's version, the LICENSE
 * file exists and is the license package.json names, and `npm run bench -- --help` prints the usage
 * instead of starting the benchmarks.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string };
const cwd = mkdtempSync(path.join(tmpdir(), 'conn-cli-version-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

describe('package promises', { timeout: 30_000 }, () => {
  it('connector --version prints the version of package.json, exit 0', async () => {
    const [long, short] = await Promise.all([runCli(['--version'], { cwd }), runCli(['-V'], { cwd })]);
    expect(long).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    expect(short).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  it('LICENSE exists and is the MIT license package.json names', () => {
    expect(pkg.license).toBe('MIT');
    const file = path.join(ROOT, 'LICENSE');
    expect(existsSync(file)).toBe(true);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^MIT License\n/);
    expect(text).toContain('Copyright (c) 2026 Teamwork & Missive Connector contributors');
    expect(text).toContain('Permission is hereby granted, free of charge, to any person obtaining a copy');
    expect(text).toContain('THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND');
  });

  it('bench --help prints the usage and runs nothing, exit 0', () => {
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const started = Date.now();
    const result = spawnSync(process.execPath, ['--import', tsx, path.join(ROOT, 'bench', 'run.ts'), '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Usage: npm run bench/m);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
