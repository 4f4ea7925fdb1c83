/**
 * The stored versions the stale-write guard needs ("Updated At", "Deleted", "Deleted At" and, for
 * emails, the attachment files fingerprint), remembered per table and key in this process, so that a
 * record we wrote or read once is not read again before its next write. Why this is correct, and when
 * it is not, is explained in airtable-database.ts; this module is only the bounded map.
 *
 * States of one entry: absent -> present (filled by a read, or replaced by what Airtable answered to our
 * upsert) -> absent again (evicted as least recently used, dropped after a failed write, or cleared).
 * "Absent" only ever means "unknown, read it": never "not in Airtable".
 *
 * Bound: at most `capacity` entries across both tables; setting one more drops the least recently used
 * (a Map in insertion order, refreshed on every hit). Memory, measured on Node 20 (V8, 64-bit) with
 * ids parsed from JSON: about 190 bytes per task entry (8-digit id) and about 290 per email entry (a
 * UUID id, with attachments: the files fingerprint is a 43-character digest, however many files). The
 * default of 100,000 entries therefore holds about 19-29 MB at most, reached only once the connector
 * has touched 100,000 distinct records since it started.
 */
import type { StoredVersion } from './schema.ts';

/** Default bound on remembered versions, both tables together. */
export const DEFAULT_VERSION_CACHE_SIZE = 100_000;

export class VersionCache {
  private readonly entries = new Map<string, StoredVersion>();

  /** @param capacity most entries kept (both tables together); 0 remembers nothing. */
  constructor(readonly capacity: number = DEFAULT_VERSION_CACHE_SIZE) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`version cache capacity must be a whole number >= 0, got ${capacity}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The remembered version, or undefined when unknown; a hit becomes the most recently used. */
  get(table: string, id: string): StoredVersion | undefined {
    const key = keyOf(table, id);
    const version = this.entries.get(key);
    if (version !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, version);
    }
    return version;
  }

  set(table: string, id: string, version: StoredVersion): void {
    if (this.capacity === 0) return;
    const key = keyOf(table, id);
    this.entries.delete(key);
    this.entries.set(key, version);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
  }

  delete(table: string, id: string): void {
    this.entries.delete(keyOf(table, id));
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Table names never contain a NUL, so `table NUL id` cannot collide across tables. */
function keyOf(table: string, id: string): string {
  return `${table}\u0000${id}`;
}
