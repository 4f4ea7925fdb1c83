/**
 * Checkpoints: how far each source's backfill has got. Stored through the Database contract (so they
 * live with the data and move with it) and mirrored to `${DATA_DIR}/checkpoints/{source}.json` in the
 * seed's format, for operators to read. The database is the truth; the mirror is rewritten on every
 * change and never read back. Checkpoints never move backwards (the backends refuse it).
 */
import path from 'node:path';
import { replaceFile } from '../durable-file.ts';
import type { Database } from '../db/database.ts';
import type { Checkpoint, SourceName } from '../model.ts';

export class CheckpointStore {
  constructor(
    private readonly db: Database,
    private readonly mirrorDir: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  get(source: SourceName): Promise<Checkpoint | null> {
    return this.db.getCheckpoint(source);
  }

  /** Moves the checkpoint forward (never back) and rewrites the mirror file. */
  async advance(source: SourceName, lastEventTime: Date, lastCursor: string | null): Promise<Checkpoint> {
    await this.db.setCheckpoint({ source, lastEventTime, lastCursor, updatedAt: this.now() });
    const stored = (await this.db.getCheckpoint(source)) ?? { source, lastEventTime, lastCursor, updatedAt: this.now() };
    await replaceFile(
      path.join(this.mirrorDir, `${source}.json`),
      `${JSON.stringify({ source, last_event_time: stored.lastEventTime?.toISOString() ?? null, last_cursor: stored.lastCursor, updated_at: stored.updatedAt?.toISOString() ?? null }, null, 2)}\n`,
    );
    return stored;
  }
}
