/**
 * `npm run bench`: every benchmark, one after another, each in its own process so that one's memory
 * and open sockets do not colour the next. Each prints its own table and ratios against a baseline
 * measured in the same run (this machine is shared and noisy; ratios travel, absolute numbers do not).
 * Pass names to run only some: `npm run bench -- queue db`.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCHMARKS = ['simulators', 'queue', 'db', 'ingest', 'idle'] as const;

const USAGE = `Usage: npm run bench [-- <name>...]

Runs the benchmarks one after another, each in its own process; with names, only those.
Benchmarks: ${BENCHMARKS.join(', ')} (each also alone: npm run bench:<name>).
Options:
  -h, --help  print this and exit`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const flags = args.filter((a) => a.startsWith('-'));
if (flags.length > 0) {
  console.error(`unknown option ${flags.join(', ')}\n\n${USAGE}`);
  process.exit(2);
}
const chosen = args;
const unknown = chosen.filter((name) => !(BENCHMARKS as readonly string[]).includes(name));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; choose from ${BENCHMARKS.join(', ')}`);
  process.exit(2);
}

let failed = 0;
for (const name of chosen.length > 0 ? chosen : BENCHMARKS) {
  console.log(`\n=== bench/${name} ===`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', name, 'run.ts')], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) {
    failed += 1;
    console.error(`bench/${name} exited with ${result.status ?? result.signal}`);
  }
}
process.exit(failed === 0 ? 0 : 1);
