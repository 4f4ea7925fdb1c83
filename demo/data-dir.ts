/**
 * The demo's own folders. Each run starts fresh (the folder is emptied) unless asked to keep it. So
 * that "emptied" can never hit real data, the demo marks the folders it makes with a file and only
 * ever empties a folder that carries the mark (or is empty): pointed at a folder with other contents,
 * it refuses and says why. A folder in use by a demo that is still running (its pid, written in the
 * folder, is alive) is refused too.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** The file that marks a folder as the demo's. */
export const DEMO_MARKER = '.connector-demo';
/** The pid of the demo using the folder. */
const PID_FILE = 'demo.pid';

/** A folder the demo must not use; the message says why and what to do. */
export class DemoDirError extends Error {}

/**
 * Makes `dir` ready for a demo run and claims it for this process: created if missing, emptied unless
 * `keep`. Returns whether anything from an earlier run was kept. Throws DemoDirError for a folder the
 * demo did not make or that a running demo uses.
 */
export function prepareDemoDir(dir: string, options: { keep: boolean }): { kept: boolean } {
  const absolute = path.resolve(dir);
  mkdirSync(absolute, { recursive: true });
  const entries = readdirSync(absolute);
  if (entries.length > 0 && !entries.includes(DEMO_MARKER)) {
    throw new DemoDirError(`${dir} holds files the demo did not make. The demo uses only a new or empty folder, or one it made; choose another with --data-dir / --log-dir.`);
  }
  const holder = runningHolder(absolute);
  if (holder !== null) {
    throw new DemoDirError(`another demo (pid ${holder}) is running on ${dir}. Stop it first, or give this one other folders with --data-dir and --log-dir.`);
  }
  const previous = entries.filter((e) => e !== DEMO_MARKER && e !== PID_FILE);
  if (!options.keep) for (const entry of previous) rmSync(path.join(absolute, entry), { recursive: true, force: true });
  writeFileSync(path.join(absolute, DEMO_MARKER), 'Made by `npm run demo`; emptied at the start of each demo run (unless --keep).\n');
  writeFileSync(path.join(absolute, PID_FILE), `${process.pid}\n`);
  return { kept: options.keep && previous.length > 0 };
}

/** The pid of another live process that claimed `dir`, or null. */
function runningHolder(dir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(dir, PID_FILE), 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: alive, but another user's process.
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}

/** Gives up the claim on `dir` (a clean stop); a claim by another process is left alone. */
export function releaseDemoDir(dir: string): void {
  const file = path.join(path.resolve(dir), PID_FILE);
  try {
    if (Number(readFileSync(file, 'utf8').trim()) === process.pid) rmSync(file, { force: true });
  } catch {
    // already gone
  }
}
