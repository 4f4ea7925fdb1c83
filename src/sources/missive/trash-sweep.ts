/**
 * The trash sweep's memory: which conversations the token user's Trash held at the end of the last
 * backfill, and whether each then counted as deleted (map.ts `isTrashed`: trashed by every user).
 *
 * Why it exists. Missive's conversation list has no "changed since" parameter and is ordered by
 * `last_activity_at` only (reference 2.2); trashing or restoring a conversation does not move that time
 * (U7; the simulator's default). A conversation trashed weeks after its last activity therefore sits
 * far behind any `since`, in the Trash listing as everywhere else, and the windowed walk never meets
 * it. Nor does the API say when something was trashed. What it does allow is listing the Trash whole:
 * 50 rows a request, no message read. Compared with what it held last time, that listing names every
 * conversation trashed since (new ids, or ids whose deleted-by-everyone state changed) and every one
 * restored since (ids no longer there), and only those are read in full. So a run costs
 * ceil(trash size / 50) list requests more, plus a snapshot per conversation whose trash state changed.
 *
 * The first run (no file) records a baseline and reads nothing more: trash older than the connector
 * is the initial window's or `backfill --full`'s business, as before.
 *
 * Stored as `${DATA_DIR}/checkpoints/missive-mailboxes.json`, replaced whole (temp, fsync, rename):
 *   {"v":1,"at":"<ISO>","mailboxes":{"trashed":{"<conversation id>":true|false,...}}}
 * It is written only after every event the sweep made is enqueued (the backfill's last page), so a
 * crash before that finds the same differences again (snapshots are idempotent). Two runs at once (a
 * `backfill` command while `start` reconciles) merge: ids the other run added since this one read the
 * file are kept, so a restore can only be looked for once more, never missed. A lost or deleted file
 * means a new baseline: run `backfill --full` once if trash may have changed meanwhile.
 */
import { readJsonFile, replaceFile } from '../../durable-file.ts';

/** Per mailbox (its filter, as in the cursor: `trashed`), conversation id -> deleted by everyone. */
export type SweepState = Record<string, Record<string, boolean>>;

export interface SweepStore {
  /** What the last run saw; null when there was none (or its record is unreadable). */
  load(): Promise<SweepState | null>;
  save(state: SweepState): Promise<void>;
}

/** The file store (see the header). */
export class FileSweepStore implements SweepStore {
  constructor(readonly file: string) {}

  async load(): Promise<SweepState | null> {
    let parsed: unknown;
    try {
      parsed = await readJsonFile(this.file);
    } catch {
      return null; // unreadable: a new baseline
    }
    if (parsed === null || typeof parsed !== 'object') return null;
    const { v, mailboxes } = parsed as { v?: unknown; mailboxes?: unknown };
    if (v !== 1 || mailboxes === null || typeof mailboxes !== 'object') return null;
    const state: SweepState = {};
    for (const [mailbox, ids] of Object.entries(mailboxes as Record<string, unknown>)) {
      if (ids === null || typeof ids !== 'object') continue;
      const entries: Record<string, boolean> = {};
      for (const [id, deleted] of Object.entries(ids as Record<string, unknown>)) if (typeof deleted === 'boolean') entries[id] = deleted;
      state[mailbox] = entries;
    }
    return state;
  }

  async save(state: SweepState): Promise<void> {
    await replaceFile(this.file, `${JSON.stringify({ v: 1, at: new Date().toISOString(), mailboxes: state })}\n`);
  }
}

/** A store that lives as long as the object (tests, and callers that keep one source for good). */
export class MemorySweepStore implements SweepStore {
  private state: SweepState | null = null;
  async load(): Promise<SweepState | null> {
    return this.state === null ? null : structuredClone(this.state);
  }
  async save(state: SweepState): Promise<void> {
    this.state = structuredClone(state);
  }
}

/**
 * One run's sweep: what the last run saw (`before`), what this one sees (`seen`), and the merge when
 * saving. Holds state for one backfill run only.
 */
export class TrashSweep {
  private readonly seen: SweepState = {};

  private constructor(
    private readonly store: SweepStore,
    private readonly before: SweepState | null,
  ) {}

  static async start(store: SweepStore): Promise<TrashSweep> {
    return new TrashSweep(store, await store.load());
  }

  /** Records a row of `mailbox` as listed now. */
  saw(mailbox: string, id: string, deleted: boolean): void {
    (this.seen[mailbox] ??= {})[id] = deleted;
  }

  /** Whether the row's trash state differs from the last run's (never on a baseline run). */
  changed(mailbox: string, id: string, deleted: boolean): boolean {
    const before = this.before?.[mailbox];
    if (before === undefined) return false;
    return before[id] !== deleted;
  }

  /** Ids the mailbox held last time and does not hold now (restored, or gone for good). */
  gone(mailbox: string): string[] {
    const before = this.before?.[mailbox];
    if (before === undefined) return [];
    const now = this.seen[mailbox] ?? {};
    return Object.keys(before).filter((id) => !(id in now));
  }

  /** Stores what this run saw, for `mailboxes` (walked whole), keeping ids another run added meanwhile. */
  async save(mailboxes: readonly string[]): Promise<void> {
    const current = (await this.store.load()) ?? {};
    const next: SweepState = { ...current };
    for (const mailbox of mailboxes) {
      const ours = this.seen[mailbox] ?? {};
      const loaded = this.before?.[mailbox] ?? {};
      const merged: Record<string, boolean> = {};
      for (const [id, deleted] of Object.entries(current[mailbox] ?? {})) if (!(id in loaded) && !(id in ours)) merged[id] = deleted;
      next[mailbox] = { ...merged, ...ours };
    }
    await this.store.save(next);
  }
}
