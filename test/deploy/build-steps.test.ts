/**
 * The image's build steps, checked where no Docker daemon runs (issue 16): the files the Dockerfile
 * copies, copied the same way into a clean directory; its build script (deploy/build.sh: npm ci, the
 * compiled build, production dependencies only) run there; then the result started as the image starts
 * it (`node dist/cli.js start`, LOG_FORMAT=json) and /health asked. The image itself is not built here.
 *
 * npm ci runs with --prefer-offline (the packages come from npm's cache when this checkout's own
 * install filled it) and compiles better-sqlite3 where no prebuilt binary can be had: a minute or two.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { startCompiled } from '../helpers/compiled-connector.ts';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The sources of the build stage's COPY lines (`COPY a b ./`, `COPY src src`), in order. */
function copiedByDockerfile(): string[] {
  const dockerfile = readFileSync(path.join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  const build = dockerfile.split(/^FROM /m)[1] ?? '';
  return build
    .split('\n')
    .filter((line) => /^COPY (?!--)/.test(line))
    .flatMap((line) => line.trim().split(/\s+/).slice(1, -1));
}

describe('the Dockerfile build steps, in a clean directory', () => {
  it('deploy/build.sh builds dist/ with production dependencies only, and `node dist/cli.js start` answers /health with JSON lines on stdout', async () => {
    const app = mkdtempSync(path.join(tmpdir(), 'conn-image-'));
    dirs.push(app);
    const copied = copiedByDockerfile();
    expect(copied).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'deploy/build.sh', 'src', 'bin']));
    for (const item of copied) cpSync(path.join(ROOT, item), path.join(app, item), { recursive: true });

    await run('sh', ['deploy/build.sh'], { cwd: app, env: { ...process.env, NPM_CI_FLAGS: '--prefer-offline' }, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    expect(existsSync(path.join(app, 'dist', 'cli.js'))).toBe(true);
    // The image holds dist/ and no src/: the console's pages must be copied there by the build.
    for (const file of ['index.html', 'console.js', 'console.css', 'icon.svg']) expect(existsSync(path.join(app, 'dist', 'server', 'console', 'assets', file)), file).toBe(true);
    expect(existsSync(path.join(app, 'node_modules', 'fastify')), 'a production dependency').toBe(true);
    expect(existsSync(path.join(app, 'node_modules', 'typescript')), 'a development dependency').toBe(false);
    expect(existsSync(path.join(app, 'node_modules', 'vitest')), 'a development dependency').toBe(false);

    // As the image starts it: from its directory, NODE_ENV=production, the console as JSON on stdout.
    const connector = await startCompiled('dist/cli.js', app, { NODE_ENV: 'production', LOG_FORMAT: 'json' });
    try {
      expect((await fetch(`${connector.url}/health/live`)).status).toBe(200);
      const health = await fetch(`${connector.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', database: { ok: true, backend: 'sqlite' } });
    } finally {
      expect(await connector.stop(), connector.stderr()).toBe(0);
    }
    const lines = connector.stdout().trim().split('\n');
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('stopped');
    expect(connector.stderr()).toBe('');
  }, 900_000);
});
