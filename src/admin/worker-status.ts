/**
 * Whether a worker is consuming a file queue, read from the outside: the queue's `consumer.lock`
 * (src/queue/file-lock.ts) is a symbolic link whose target names its holder (`<pid>:<host id>:<token>`)
 * and whose mtime the holder refreshes every few seconds; its birth time, where the file system keeps
 * one, says since when. Admin
 * commands run as second processes on the same DATA_DIR use it to say whether the events they look at
 * or enqueue will be processed, and to explain that such a process sees the worker's in-flight events
 * as pending (claims live in the worker's memory).
 */
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';
import { isThisHost, parseOwner, processAlive } from '../queue/file-lock.ts';
import { SECOND } from '../retry-policy.ts';

/** A lock on another host counts as held while refreshed within this long (the lock's stale time + margin). */
const REMOTE_FRESH_MS = 15 * SECOND;

export type WorkerStatus =
  /** `host`: the holder's host id (file-lock.ts hostId). */
  | { state: 'running'; pid: number; host: string; since: string | null }
  | { state: 'stopped' }
  /** Not knowable from here (e.g. a Redis queue). */
  | { state: 'unknown'; reason: string };

/** Reads `${queueDir}/consumer.lock`. */
export async function fileQueueWorker(queueDir: string, now: () => number = Date.now): Promise<WorkerStatus> {
  const lock = path.join(queueDir, 'consumer.lock');
  let target: string;
  let mtimeMs: number;
  let birthtimeMs: number;
  try {
    [target, { mtimeMs, birthtimeMs }] = await Promise.all([readlink(lock), lstat(lock)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'stopped' };
    return { state: 'unknown', reason: `cannot read ${lock}: ${(err as Error).message}` };
  }
  const owner = parseOwner(target);
  if (owner === null) return { state: 'unknown', reason: `${lock} does not name its holder` };
  const alive = isThisHost(owner.host) ? processAlive(owner.pid) : now() - mtimeMs < REMOTE_FRESH_MS;
  if (!alive) return { state: 'stopped' };
  return { state: 'running', pid: owner.pid, host: owner.host, since: birthtimeMs > 0 ? new Date(birthtimeMs).toISOString() : null };
}
