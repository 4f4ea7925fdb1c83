/**
 * The few durable-write moves the connector makes (the file queue, checkpoint files), each in the order
 * that keeps a crash harmless (reference/stack.md §4 rules 2, 4, 5):
 * - append: write every byte, then fsync (loop: a write may take less than asked);
 * - replace: write a temporary file, fsync it, rename it over the target, fsync the directory
 *   (never rewrite a file in place);
 * - a rename or a create is not durable until its directory is fsynced.
 * These are async so that an fsync never blocks the event loop (and the webhook answers behind it).
 */
import { writeSync } from 'node:fs';
import path from 'node:path';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';

/** Writes all of `data` (a write may take less than asked), at `position` or at the end. */
export async function writeAll(handle: FileHandle, data: Buffer, position: number | null = null): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position === null ? null : position + done);
    done += bytesWritten;
  }
}

/**
 * writeAll, synchronously (fd opened for appending): an append lands in the page cache in microseconds,
 * cheaper than a thread-pool round trip; the fsync that makes it durable is the caller's, and slow.
 */
export function writeAllSync(fd: number, data: Buffer): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done);
}

/** Makes a directory's entries (a create, a rename) durable. A no-op where directories cannot be opened. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Appends `data` to `file` (created if missing) and fsyncs it. */
export async function appendDurably(file: string, data: Buffer): Promise<void> {
  const handle = await open(file, 'a');
  try {
    await writeAll(handle, data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `file` with `data`: temp file, fsync, rename, directory fsync. `beforeRename` runs once the
 * temp file is durable (crash points hook in there).
 */
export async function replaceFile(file: string, data: Buffer | string, beforeRename: () => void = () => {}): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w');
  try {
    await writeAll(handle, typeof data === 'string' ? Buffer.from(data) : data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  beforeRename();
  await rename(tmp, file);
  await fsyncDir(dir);
}

/** The parsed JSON in `file`, or null when it does not exist. */
export async function readJsonFile(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
