/**
 * The production build (issue 16, "production run without tsx"): `npm run build`'s compiler settings
 * produce a dist/ that runs with plain `node` — no tsx, no TypeScript at run time — and the installed
 * `connector` command (bin/connector.js) runs it when present and not older than src/.
 *
 * The build goes to a temporary root laid out like an installed package (package.json, bin/,
 * dist/, node_modules linked to this checkout's), never to this checkout's own dist/.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCompiled } from '../helpers/compiled-connector.ts';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VERSION = (await import('../../package.json', { with: { type: 'json' } })).default.version;

let install: string;

beforeAll(async () => {
  install = mkdtempSync(path.join(tmpdir(), 'conn-build-'));
  copyFileSync(path.join(ROOT, 'package.json'), path.join(install, 'package.json'));
  mkdirSync(path.join(install, 'bin'));
  copyFileSync(path.join(ROOT, 'bin', 'connector.js'), path.join(install, 'bin', 'connector.js'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(install, 'node_modules'));
  await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', path.join(install, 'dist')], { cwd: ROOT });
}, 120_000);

afterAll(() => rmSync(install, { recursive: true, force: true }));

/** Runs node with `args` in a fresh directory, without tsx or any NODE_OPTIONS. */
function node(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  const cwd = mkdtempSync(path.join(tmpdir(), 'conn-build-run-'));
  return run(process.execPath, args, { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: 30_000 });
}

describe('the production build', () => {
  it('dist/cli.js runs with plain node: --version, and `start` answers /health and stops on SIGTERM', async () => {
    expect((await node([path.join(install, 'dist', 'cli.js'), '--version'])).stdout.trim()).toBe(VERSION);

    const connector = await startCompiled(path.join(install, 'dist', 'cli.js'), install);
    try {
      const health = await fetch(`${connector.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', database: { ok: true, backend: 'sqlite' } });
    } finally {
      expect(await connector.stop(), connector.stderr()).toBe(0);
    }
  }, 60_000);

  it('the connector command runs dist/ when it is there (an install without src/ works)', async () => {
    expect((await node([path.join(install, 'bin', 'connector.js'), '--version'])).stdout.trim()).toBe(VERSION);
  });

  it('the connector command runs src/ through tsx, and says so, when dist/ is older than src/', async () => {
    const stale = mkdtempSync(path.join(tmpdir(), 'conn-build-stale-'));
    try {
      copyFileSync(path.join(install, 'package.json'), path.join(stale, 'package.json'));
      mkdirSync(path.join(stale, 'bin'));
      copyFileSync(path.join(install, 'bin', 'connector.js'), path.join(stale, 'bin', 'connector.js'));
      symlinkSync(path.join(ROOT, 'node_modules'), path.join(stale, 'node_modules'));
      symlinkSync(path.join(install, 'dist'), path.join(stale, 'dist'));
      symlinkSync(path.join(ROOT, 'src'), path.join(stale, 'src'));
      utimesSync(path.join(install, 'dist', 'cli.js'), new Date(0), new Date(0));
      const result = await node([path.join(stale, 'bin', 'connector.js'), '--version']);
      expect(result.stdout.trim()).toBe(VERSION);
      expect(result.stderr).toContain('dist/ is older than src/; running src/ through tsx');
    } finally {
      rmSync(stale, { recursive: true, force: true });
    }
  });
});
