/**
 * Checkpoints for the Airtable backend, kept as files where the seed puts them:
 * `${checkpointDir}/${source}.json`, e.g. data/checkpoints/teamwork.json:
 *
 *   {"source":"teamwork","last_event_time":"2025-10-14T12:34:56.789Z","last_cursor":null,
 *    "updated_at":"2025-10-14T12:35:01.002Z"}
 *
 * Why files and not an Airtable table: a checkpoint is the connector's own bookkeeping, read at every
 * backfill; a file costs no request against the base's 5-per-second budget and needs no extra table
 * that operators could edit.
 *
 * Writes are atomic (src/durable-file.ts): a crash leaves the old or the new file, never half of one. A checkpoint never moves
 * backwards: a write whose `lastEventTime` is older than the stored one (or null while the stored one
 * is not) is ignored. Writes within one process are serialized; two processes writing the same
 * source's checkpoint could race (read, compare, write), which the deployment avoids: one process
 * runs backfills.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { replaceFile } from '../../durable-file.ts';
import { ConnectorError } from '../../errors.ts';
import type { Checkpoint, SourceName } from '../../model.ts';

interface CheckpointFile {
  source: SourceName;
  last_event_time: string | null;
  last_cursor: string | null;
  updated_at: string | null;
}

export class FileCheckpoints {
  /** The previous write, so writes run one at a time. */
  private tail: Promise<void> = Promise.resolve();

  /** @param dir the checkpoint directory (`${DATA_DIR}/checkpoints`); created on first write. */
  constructor(readonly dir: string) {}

  fileFor(source: SourceName): string {
    return path.join(this.dir, `${source}.json`);
  }

  async get(source: SourceName): Promise<Checkpoint | null> {
    const stored = this.read(source);
    if (stored === null) return null;
    return {
      source,
      lastEventTime: toDate(stored.last_event_time),
      lastCursor: stored.last_cursor ?? null,
      updatedAt: toDate(stored.updated_at),
    };
  }

  /** Stores `checkpoint` unless the stored one is newer. `now` fills a missing `updatedAt`. */
  set(checkpoint: Checkpoint, now: Date): Promise<void> {
    const run = this.tail.then(() => this.write(checkpoint, now));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async write(checkpoint: Checkpoint, now: Date): Promise<void> {
    const stored = this.read(checkpoint.source);
    const storedTime = toDate(stored?.last_event_time ?? null);
    if (storedTime !== null && (checkpoint.lastEventTime === null || checkpoint.lastEventTime.getTime() < storedTime.getTime())) return;
    const file: CheckpointFile = {
      source: checkpoint.source,
      last_event_time: checkpoint.lastEventTime?.toISOString() ?? null,
      last_cursor: checkpoint.lastCursor,
      updated_at: (checkpoint.updatedAt ?? now).toISOString(),
    };
    const target = this.fileFor(checkpoint.source);
    try {
      await replaceFile(target, `${JSON.stringify(file)}\n`);
    } catch (err) {
      throw new ConnectorError('CONN_ERR_DB_UNAVAILABLE', `cannot write checkpoint ${target}: ${(err as Error).message}`, { cause: err });
    }
  }

  private read(source: SourceName): CheckpointFile | null {
    const file = this.fileFor(source);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new ConnectorError('CONN_ERR_DB_UNAVAILABLE', `cannot read checkpoint ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const parsed = JSON.parse(text) as Partial<CheckpointFile>;
      return {
        source,
        last_event_time: typeof parsed.last_event_time === 'string' ? parsed.last_event_time : null,
        last_cursor: typeof parsed.last_cursor === 'string' ? parsed.last_cursor : null,
        updated_at: typeof parsed.updated_at === 'string' ? parsed.updated_at : null,
      };
    } catch (err) {
      throw new ConnectorError('CONN_ERR_DB_REJECTED', `checkpoint ${file} is not valid JSON; fix or delete it (a deleted checkpoint means a first-run backfill)`, { cause: err });
    }
  }
}

function toDate(value: string | null): Date | null {
  if (value === null) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms);
}
