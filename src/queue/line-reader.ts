/**
 * Reading and writing the queue's files in bounded pieces: whole lines from part of a file, in chunks,
 * so that scanning a log of any size never holds more than one chunk (or one line, if a line is longer
 * than a chunk) in memory; and complete writes (a write may take less than asked).
 */
import type { FileHandle } from 'node:fs/promises';
import { writeAll } from '../durable-file.ts';

/** Bytes read at a time. */
export const READ_CHUNK = 1 << 20;

/**
 * Called with each complete line: `buf[start, end)` without its newline, `offset` where the line starts
 * in the file, `length` its size with the newline. The buffer is reused after the call returns.
 */
export type LineVisitor = (buf: Buffer, start: number, end: number, offset: number, length: number) => void;

/**
 * Visits every complete line in `[from, to)` of the file. Bytes after the last newline (a line still
 * being written, or torn by a crash) are not visited. Returns the offset just past the last newline
 * (`from` when there was none).
 */
export async function readLines(handle: FileHandle, from: number, to: number, visit: LineVisitor, chunkSize = READ_CHUNK): Promise<number> {
  let buf = Buffer.allocUnsafe(chunkSize);
  let carried = 0; // bytes of an unfinished line kept at the front of buf
  let position = from; // file offset of buf[carried]
  let lineOffset = from; // file offset of buf[0]
  while (position < to) {
    if (carried === buf.length) {
      const bigger = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(bigger, 0, 0, carried);
      buf = bigger;
    }
    const want = Math.min(buf.length - carried, to - position);
    const { bytesRead } = await handle.read(buf, carried, want, position);
    if (bytesRead === 0) break;
    position += bytesRead;
    const filled = carried + bytesRead;
    let start = 0;
    let nl = buf.indexOf(0x0a, carried);
    while (nl !== -1 && nl < filled) {
      visit(buf, start, nl, lineOffset + start, nl + 1 - start);
      start = nl + 1;
      nl = buf.indexOf(0x0a, start);
    }
    lineOffset += start;
    carried = filled - start;
    if (carried > 0 && start > 0) buf.copy(buf, 0, start, filled);
    if (buf.length > chunkSize && carried < chunkSize) {
      // a long line has passed: go back to the normal buffer size
      const normal = Buffer.allocUnsafe(chunkSize);
      buf.copy(normal, 0, 0, carried);
      buf = normal;
    }
  }
  return lineOffset;
}

/** Reads exactly `length` bytes at `position` (fewer only at the end of the file). */
export async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await handle.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/** Collects small writes into 1 MiB ones. */
export class BufferedWriter {
  position = 0;
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly handle: FileHandle) {}

  async write(bytes: Buffer): Promise<void> {
    this.parts.push(bytes);
    this.size += bytes.length;
    this.position += bytes.length;
    if (this.size >= READ_CHUNK) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.size === 0) return;
    const data = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    await writeAll(this.handle, data);
  }
}

/** The offset just past the last newline before `size` (0 when there is none). */
export async function lastLineEnd(handle: FileHandle, size: number): Promise<number> {
  let end = size;
  while (end > 0) {
    const from = Math.max(0, end - 64 * 1024);
    const chunk = await readAt(handle, from, end - from);
    const nl = chunk.lastIndexOf(0x0a);
    if (nl >= 0) return from + nl + 1;
    end = from;
  }
  return 0;
}
