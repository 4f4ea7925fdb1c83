/**
 * Teamwork backfill: every task changed since an instant, as `task.snapshot` events that carry the v3
 * task and the side-loaded records it refers to, so the handler maps them without another API call.
 *
 * Two passes, in this order:
 * 1. Deleted tasks (`deletedAfter = since`). Teamwork's ordinary listings leave deleted tasks out, and
 *    deleting a tasklist or project may not send TASK.DELETED per task (reference §1.2, §6.7); this
 *    pass is what finds them. Whether v3 honours `deletedAfter` for listing is not confirmed
 *    (reference "Uncertain"): when Teamwork refuses the filter on the first page (400/422), the pass is
 *    skipped with a warning and deletions rely on webhooks alone. These pages report `newestUpdate:
 *    null`: a deleted task's update time says nothing about how far the updates have been read.
 * 2. Updated tasks (`updatedAfter = since`, completed, completed lists and archived projects included,
 *    oldest first). Each page reports the newest `updatedAt` seen so far, but never later than the
 *    moment pass 1 started: deletions after that moment were not looked for, and the next run's
 *    `since` (checkpoint minus overlap) must reach back to them.
 *
 * A task already sent in this run with the same `updatedAt` is not sent again (the key walk in the
 * client repeats the tasks of each page's boundary second). A page that failed is never yielded: the
 * error propagates and the checkpoint stays where the last yielded page put it.
 */
import { randomUUID } from 'node:crypto';
import type { QueueEvent } from '../../model.ts';
import type { BackfillChange, BackfillOptions, BackfillPage } from '../source.ts';
import { ApiError } from '../../http/index.ts';
import type { TaskPage, TeamworkClient } from './client.ts';
import { newestUpdate } from './client.ts';
import { includedFor } from './map.ts';
import { canonicalId, type SnapshotEventPayload } from './payloads.ts';

/** The event type of a backfilled task. */
export const SNAPSHOT_EVENT = 'task.snapshot';

/** The task a snapshot brings, at its version: Teamwork's own `updatedAt` (what the stale-write guard compares). */
export function snapshotChanges(event: QueueEvent): BackfillChange[] {
  if (event.type !== SNAPSHOT_EVENT) return [];
  const { task } = event.payload as SnapshotEventPayload;
  const updatedAt = task.updatedAt == null ? Number.NaN : Date.parse(task.updatedAt);
  if (Number.isNaN(updatedAt)) return [];
  return [{ table: 'tasks', id: canonicalId(task.id), changedAt: new Date(updatedAt), version: new Date(updatedAt) }];
}

export interface TeamworkBackfillOptions extends BackfillOptions {
  client: TeamworkClient;
  /** The current time, for the deleted-pass bound. Default `() => new Date()`. */
  now?: () => Date;
  /** Makes event ids; default crypto.randomUUID. */
  newId?: () => string;
}

export async function* backfillTeamwork(options: TeamworkBackfillOptions): AsyncGenerator<BackfillPage> {
  const { client, since, log, signal } = options;
  const now = options.now ?? (() => new Date());
  const newId = options.newId ?? randomUUID;
  const sent = new Set<string>();

  const toEvents = (page: TaskPage): QueueEvent[] => {
    const events: QueueEvent[] = [];
    const receivedAt = now();
    for (const task of page.tasks) {
      const id = canonicalId(task.id);
      const key = `${id}@${task.updatedAt ?? ''}@${task.status ?? ''}`;
      if (sent.has(key)) continue;
      sent.add(key);
      const payload: SnapshotEventPayload = { task, included: includedFor(task, page.included) };
      events.push({ id: newId(), source: 'teamwork', type: SNAPSHOT_EVENT, entityKey: `task:${id}`, origin: 'backfill', receivedAt, payload });
    }
    return events;
  };

  // Pass 1: deletions.
  const deletedPassStartedAt = now();
  let deletedPassRan = true;
  let deletedPages = 0;
  try {
    for await (const page of client.listTasksDeletedSince(since, { signal })) {
      deletedPages += 1;
      yield { events: toEvents(page), newestUpdate: null, cursor: null };
    }
  } catch (err) {
    if (deletedPages === 0 && err instanceof ApiError && err.code === 'CONN_ERR_HTTP_CLIENT') {
      deletedPassRan = false;
      log.warn({ err, status: err.status }, 'Teamwork refused deletedAfter on the task list; deleted tasks are found through webhooks only');
    } else {
      throw err;
    }
  }

  // Pass 2: updates.
  const bound = deletedPassRan ? deletedPassStartedAt.getTime() : Infinity;
  let newest: Date | null = null;
  for await (const page of client.listTasksUpdatedSince(since, { signal })) {
    const pageNewest = newestUpdate(page.tasks);
    if (pageNewest !== null && (newest === null || pageNewest.getTime() > newest.getTime())) newest = pageNewest;
    const reported = newest === null ? null : new Date(Math.min(newest.getTime(), bound));
    yield { events: toEvents(page), newestUpdate: reported, cursor: null };
  }
}
