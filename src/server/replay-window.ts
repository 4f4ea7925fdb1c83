/**
 * The replay window: recognises a delivery that is byte for byte one already accepted, so that a
 * vendor's late retry of an older delivery cannot bring back older data (issue 14, 3b). Missive
 * without API credentials versions a row by the time its delivery arrived (see
 * sources/missive/map.ts): label A, then B, then A re-sent byte for byte would otherwise leave A.
 *
 * Used at the door for every source, after the signature check and the parse: the key of a delivery
 * is sha256(source, NUL, event name, NUL, raw body) cut to its first 16 bytes (128 bits: no accidental collision in
 * any window we keep). A delivery whose key was accepted within the window is answered 200 with a note
 * ("duplicate of a delivery accepted at ...") and is not enqueued; `connector_deliveries_duplicate_total`
 * counts it by source. A delivery is remembered only **after** its events are durably enqueued: a
 * delivery whose enqueue failed (503) was not accepted, and its retry must be enqueued.
 *
 * What it cannot tell apart: a retry, and a new event whose body happens to be the same bytes (Missive
 * sends no delivery id; a conversation labelled A, unlabelled, labelled A again within the window may
 * send the same body twice if nothing else in it moved). The second is then dropped as a duplicate,
 * and the row keeps the state in between until the next delivery about that conversation. So a source
 * narrows the window for such deliveries (`ParsedDelivery.replayWindowMs`): Missive's conversation-level
 * deliveries get none at all when its API is configured (the handler re-reads the conversation, so a
 * repeat is harmless and a real change must not be dropped) and 15 minutes without it (Missive's
 * retries span about 8); a Teamwork body without a trustworthy `dateUpdated` (a v1 form of ids, an
 * id-only deletion) gets none. A Teamwork body with one is the same change when it is the same bytes,
 * and a message rule's body is about one message: those get the whole window.
 *
 * States of one key: unknown -> remembered (at its acceptance time) -> forgotten, when it leaves the
 * window (older than `windowMs`), or when more than `maxEntries` keys are remembered (the oldest go
 * first). A duplicate does not refresh its key's time: the window counts from the first acceptance.
 *
 * On disk: `${DATA_DIR}/queue/recent-deliveries.log`, append-only, one line per accepted delivery:
 * `<32 hex digits> <unix seconds>`. Read on start (lines outside the window, torn or unreadable lines
 * are skipped), so the window survives a restart. Lines are appended in the background, several
 * deliveries per write, and never fsynced: losing the tail in a crash forgets a few recent
 * deliveries, which only weakens the dedupe (their retries are enqueued again, as without the window);
 * it never loses data, so it is not worth an fsync per delivery. A write that fails (disk full) is
 * logged and the window goes on in memory. When the file holds more dead lines (forgotten keys) than
 * live ones, it is compacted: the live keys written to `recent-deliveries.log.tmp`, renamed over it.
 *
 * Memory: one Map entry per remembered key, a 16-byte string and a small integer, about 62 bytes on
 * Node 20 (measured): 500,000 keys (the default cap) take about 30 MiB of heap, and the file about
 * 22 MiB (45 bytes a line) plus as much again before a compaction.
 *
 * One process's window: with several `serve` processes (the Redis queue), a retry that reaches another
 * process than the original is not recognised (it is enqueued, as without the window).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Counter } from 'prom-client';
import type { Logger } from '../log.ts';
import { MINUTE } from '../retry-policy.ts';

/** The file's name in the queue directory. */
export const REPLAY_WINDOW_FILE = 'recent-deliveries.log';

/** Bytes of sha256 kept per key. */
const KEY_BYTES = 16;

/** Stored times are seconds since 2020-01-01T00:00:00Z: small integers (V8 Smis) until 2088. */
const EPOCH_SECONDS = 1_577_836_800;

/** No compaction below this many lines in the file. */
const COMPACT_MIN_LINES = 1024;

/** After a failed compaction, the next is tried no sooner than this. */
const COMPACT_RETRY_MS = MINUTE;

const LINE = /^([0-9a-f]{32}) (\d{1,12})$/;

export interface ReplayWindowOptions {
  /** The append-only file, `${DATA_DIR}/queue/recent-deliveries.log`; its directory is made if missing. */
  file: string;
  /** How long an accepted delivery is remembered, in ms (DELIVERY_REPLAY_WINDOW_HOURS). */
  windowMs: number;
  /** Most keys remembered (DELIVERY_REPLAY_MAX_ENTRIES); the oldest are forgotten first. */
  maxEntries: number;
  log: Logger;
  /** Clock in ms; default Date.now. */
  now?: () => number;
}

/** What the door learns about one delivery. */
export type ReplayCheck =
  | { duplicate: true; acceptedAt: Date; note: string }
  | { duplicate: false; /** Call once the delivery's events are durably enqueued. */ accepted(): void };

export class ReplayWindow {
  /** Key (16 bytes as a latin1 string) -> acceptance time (seconds since EPOCH_SECONDS), oldest first. */
  private readonly keys = new Map<string, number>();
  private readonly now: () => number;
  private readonly log: Logger;
  /** Counts duplicates; registered in each app's metrics registry (`registerMetrics`). */
  readonly duplicates = new Counter({ name: 'connector_deliveries_duplicate_total', help: 'Deliveries answered 200 without enqueueing: byte for byte one accepted within DELIVERY_REPLAY_WINDOW_HOURS.', labelNames: ['source'], registers: [] });

  private handle: FileHandle | null = null;
  /** Lines in the file (live and dead), as far as this process knows. */
  private fileLines = 0;
  /** Lines waiting for the next background write. */
  private pending: string[] = [];
  private writing: Promise<void> | null = null;
  private compactNotBefore = 0;
  private writeFailing = false;
  private closed = false;

  private constructor(private readonly options: ReplayWindowOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.log.child({ component: 'replay-window' });
  }

  /** Opens the window, reading what the file remembers within the window. */
  static async open(options: ReplayWindowOptions): Promise<ReplayWindow> {
    const window = new ReplayWindow(options);
    await window.load();
    return window;
  }

  /** Keys remembered now (within the window, up to the cap). */
  get size(): number {
    this.expire();
    return this.keys.size;
  }

  /**
   * Looks a delivery up. A duplicate says when the original was accepted; otherwise `accepted()` is to
   * be called once its events are durable (never before: see the header). The key covers the source,
   * the vendor's event name (Teamwork names it in a header, outside the body) and the body. `windowMs`
   * narrows the window for this delivery (the source's say, `ParsedDelivery.replayWindowMs`); with 0
   * it is neither looked up nor remembered.
   */
  check(source: string, rawBody: Buffer, options: { eventType?: string | undefined; windowMs?: number | undefined } = {}): ReplayCheck {
    const windowMs = Math.min(options.windowMs ?? this.options.windowMs, this.options.windowMs);
    if (windowMs <= 0) return { duplicate: false, accepted: () => {} };
    const key = createHash('sha256')
      .update(source)
      .update('\0')
      .update(options.eventType ?? '')
      .update('\0')
      .update(rawBody)
      .digest()
      .toString('latin1', 0, KEY_BYTES);
    this.expire();
    const at = this.keys.get(key);
    const cutoff = Math.floor((this.now() - windowMs) / 1000) - EPOCH_SECONDS;
    if (at !== undefined && at > cutoff) {
      const acceptedAt = new Date((at + EPOCH_SECONDS) * 1000);
      this.duplicates.inc({ source });
      return { duplicate: true, acceptedAt, note: `duplicate of a delivery accepted at ${acceptedAt.toISOString()}; not enqueued again` };
    }
    return { duplicate: false, accepted: () => this.remember(key) };
  }

  /** Adds the duplicate counter to an app's registry (one window may serve several apps in tests). */
  registerMetrics(registry: { registerMetric(metric: Counter): void }): void {
    registry.registerMetric(this.duplicates);
  }

  /** Writes what is pending and closes the file. Later acceptances are remembered in memory only. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing !== null) await this.writing;
    await this.handle?.close().catch(() => {});
    this.handle = null;
  }

  private remember(key: string): void {
    const seconds = Math.floor(this.now() / 1000) - EPOCH_SECONDS;
    this.keys.delete(key);
    this.keys.set(key, seconds);
    while (this.keys.size > this.options.maxEntries) this.forgetOldest();
    if (this.closed) return;
    this.pending.push(`${Buffer.from(key, 'latin1').toString('hex')} ${seconds + EPOCH_SECONDS}\n`);
    this.writing ??= this.drain().finally(() => {
      this.writing = null;
    });
  }

  private forgetOldest(): void {
    const oldest = this.keys.keys().next();
    if (!oldest.done) this.keys.delete(oldest.value);
  }

  /** Forgets keys older than the window, oldest first (the Map is in acceptance order). */
  private expire(): void {
    const cutoff = Math.floor((this.now() - this.options.windowMs) / 1000) - EPOCH_SECONDS;
    for (const [key, at] of this.keys) {
      if (at > cutoff) break;
      this.keys.delete(key);
    }
  }

  /** Background writer: appends pending lines, several deliveries per write; compacts when due. */
  private async drain(): Promise<void> {
    while (this.pending.length > 0 && this.handle !== null) {
      if (this.compactionDue()) {
        await this.compact();
        continue;
      }
      const lines = this.pending;
      this.pending = [];
      try {
        await this.handle.write(lines.join(''));
        this.fileLines += lines.length;
        if (this.writeFailing) this.log.info('the replay window file is written again');
        this.writeFailing = false;
      } catch (err) {
        // Only the dedupe after a restart is weaker; the deliveries themselves are enqueued.
        if (!this.writeFailing) this.log.warn({ err, file: this.options.file }, 'could not append to the replay window file; recent deliveries are remembered in memory only until it works again');
        this.writeFailing = true;
      }
    }
  }

  private compactionDue(): boolean {
    this.expire();
    return this.fileLines >= COMPACT_MIN_LINES && this.fileLines - this.keys.size > this.keys.size && this.now() >= this.compactNotBefore;
  }

  /** Rewrites the file with the live keys only (temp file, rename), then appends to the new one. */
  private async compact(): Promise<void> {
    this.expire();
    // The live keys include those whose lines are still pending: written here, not again after.
    const lines = [...this.keys].map(([key, at]) => `${Buffer.from(key, 'latin1').toString('hex')} ${at + EPOCH_SECONDS}\n`);
    const written = this.pending;
    this.pending = [];
    const tmp = `${this.options.file}.tmp`;
    try {
      const out = await open(tmp, 'w');
      try {
        for (let i = 0; i < lines.length; i += 10_000) await out.write(lines.slice(i, i + 10_000).join(''));
      } finally {
        await out.close();
      }
      await rename(tmp, this.options.file);
      const previous = this.handle;
      this.handle = await open(this.options.file, 'a');
      await previous?.close().catch(() => {});
      this.fileLines = lines.length;
      this.log.debug({ lines: lines.length }, 'replay window file compacted');
    } catch (err) {
      this.compactNotBefore = this.now() + COMPACT_RETRY_MS;
      // Their lines are still to be appended (a line twice in the file, should the rename have
      // happened, costs nothing but its bytes).
      this.pending = [...written, ...this.pending];
      this.log.warn({ err, file: this.options.file }, 'could not compact the replay window file; trying again later');
    }
  }

  private async load(): Promise<void> {
    const { file } = this.options;
    await mkdir(path.dirname(file), { recursive: true });
    this.handle = await open(file, 'a+');
    const cutoff = Math.floor((this.now() - this.options.windowMs) / 1000);
    let torn = false;
    const { size } = await this.handle.stat();
    if (size > 0) {
      const last = Buffer.alloc(1);
      await this.handle.read(last, 0, 1, size - 1);
      torn = last[0] !== 0x0a;
      const lines = createInterface({ input: createReadStream(file, { encoding: 'latin1' }), crlfDelay: Infinity });
      for await (const line of lines) {
        this.fileLines++;
        const match = LINE.exec(line);
        if (match === null) continue;
        const seconds = Number(match[2]);
        if (seconds <= cutoff) continue;
        const key = Buffer.from(match[1] as string, 'hex').toString('latin1');
        this.keys.delete(key);
        this.keys.set(key, seconds - EPOCH_SECONDS);
        if (this.keys.size > this.options.maxEntries) this.forgetOldest();
      }
    }
    // A torn last line (a crash mid-append) would swallow the next line appended to it: start clean.
    if (torn || (this.fileLines >= COMPACT_MIN_LINES && this.fileLines - this.keys.size > this.keys.size)) await this.compact();
    this.log.debug({ file, remembered: this.keys.size, lines: this.fileLines }, 'replay window loaded');
  }
}
