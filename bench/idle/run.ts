/**
 * `npm run bench:idle`: the memory of an idle `connector start` on the embedded default (SQLite, file
 * queue, no credentials), run the three ways an operator may run it: compiled (`node dist/cli.js`,
 * after `npm run build`, which this runs into a temporary directory), through tsx (`node --import tsx
 * src/cli.ts`), and through `npm start` (the npm process that stays resident, counted too). Each is
 * measured after IDLE_SECONDS of idling (resident set size, /proc/<pid>/status VmRSS, summed over the
 * process tree). Goal (issue 16): the compiled one at most 90 MB.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 10);
const GOAL_MB = 90;

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log('Usage: npm run bench:idle\n\nMeasures the idle memory of `connector start` (compiled, tsx, npm start). BENCH_IDLE_SECONDS (default 10).');
  process.exit(0);
}

/** Resident set size of a process, KiB (0 once it is gone). */
function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The pids of a process and all its descendants. */
function tree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i] as number) ?? []));
  return all;
}

async function measure(name: string, command: string, args: string[]): Promise<{ name: string; mb: number; processes: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-bench-idle-'));
  const child: ChildProcess = spawn(command, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', HOST: '127.0.0.1', DATA_DIR: path.join(dir, 'data'), LOG_DIR: path.join(dir, 'logs'), BACKFILL_ON_START: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/listening on/.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${name} did not start:\n${output.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  const pids = tree(child.pid as number);
  const kib = pids.reduce((sum, pid) => sum + rssKiB(pid), 0);
  for (const pid of pids.reverse()) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await new Promise((resolve) => child.once('exit', resolve));
  rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 }); // npm may exit before the node it started has closed its files
  return { name, mb: Math.round(kib / 1024), processes: pids.length };
}

const build = mkdtempSync(path.join(tmpdir(), 'conn-bench-build-'));
try {
  copyFileSync(path.join(ROOT, 'package.json'), path.join(build, 'package.json'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(build, 'node_modules'));
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', path.join(build, 'dist')], { cwd: ROOT, stdio: 'inherit' });
  console.log(`idle memory of \`connector start\` (embedded default), after ${IDLE_SECONDS} s idle; Node ${process.version}\n`);
  const results = [
    await measure('node dist/cli.js start (compiled)', process.execPath, [path.join(build, 'dist', 'cli.js'), 'start']),
    await measure('node --import tsx src/cli.ts start', process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), 'start']),
    await measure('npm start (npm + node + tsx)', 'npm', ['start', '--silent']),
  ];
  console.log('| how it runs | processes | RSS MB |\n| --- | ---: | ---: |');
  for (const r of results) console.log(`| ${r.name} | ${r.processes} | ${r.mb} |`);
  const compiled = results[0] as { mb: number };
  console.log(`\ncompiled: ${compiled.mb} MB, goal <= ${GOAL_MB} MB: ${compiled.mb <= GOAL_MB ? 'met' : 'MISSED'}`);
} finally {
  rmSync(build, { recursive: true, force: true });
}
