#!/usr/bin/env node
// The installed `connector` command. It runs the compiled JavaScript in dist/ (`npm run build`) when it
// is there and no source file is newer: no TypeScript at run time, and about 35 MB less memory than
// tsx. Otherwise it runs the TypeScript entry point through tsx (a runtime dependency), so a checkout
// needs no build step; a dist/ older than src/ is said on stderr, never run.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const compiled = `${root}dist/cli.js`;
const sources = `${root}src`;

/** The newest modification time of a file under `dir` (0 when there is no such directory). */
function newestUnder(dir) {
  if (!existsSync(dir)) return 0;
  let newest = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(`${entry.parentPath}/${entry.name}`).mtimeMs);
  }
  return newest;
}

const built = existsSync(compiled) ? statSync(compiled).mtimeMs : null;
if (built !== null && built >= newestUnder(sources)) {
  await import(pathToFileURL(compiled).href);
} else {
  if (built !== null) process.stderr.write('connector: dist/ is older than src/; running src/ through tsx (run `npm run build` to use dist/)\n');
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli.ts');
}
