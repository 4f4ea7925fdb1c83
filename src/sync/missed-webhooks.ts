/**
 * Missed-webhook detection: a reconciliation tells, for every change it finds, whether a webhook had
 * brought it already. A vendor that silently stopped sending webhooks (a registration disabled after
 * failures, a rule deleted, a network path closed) shows here first: nothing else notices, because the
 * backfill repairs the data.
 *
 * The rule, per row a backfill event brings (`Source.backfillChanges`), before the page is enqueued:
 * - only changes inside the run's window and older than the grace time are judged: a webhook for a
 *   change made seconds ago may still be on its way or waiting in the queue;
 * - nothing is judged while the queue's oldest waiting event is older than the grace time (the worker
 *   is behind, so webhooks may be waiting unprocessed) or on a run that did not start from a checkpoint
 *   (a first backfill, `--since`, `--full`: everything there is new to the database);
 * - a judged change is missed when the database has no row for it, or has an older version than the
 *   change (for a source whose versions can tell; see `BackfillChange.version`).
 * Each judged page is reported on the lifecycle (`reconcile:judged`: metrics, the console, alerts) and,
 * when something was missed, in one log line naming up to ten rows.
 */
import type { Database } from '../db/database.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { QueueEvent } from '../model.ts';
import type { Queue } from '../queue/queue.ts';
import type { BackfillChange, Source } from '../sources/source.ts';

/** How many missed rows one log line names. */
const NAMED_IN_LOG = 10;

export interface MissedWebhooksOptions {
  db: Pick<Database, 'getTask' | 'getEmail'>;
  queue: Pick<Queue, 'stats'>;
  lifecycle: Lifecycle;
  log: Logger;
  /** A change younger than this (ms) is not judged (MISSED_WEBHOOKS_GRACE_SECONDS). */
  graceMs: number;
  now?: () => number;
}

export interface Judgement {
  judged: number;
  missed: number;
}

export class MissedWebhooks {
  private readonly now: () => number;

  constructor(private readonly options: MissedWebhooksOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Judges one page of a run from a checkpoint (window from `since`), before its events are enqueued.
   * Null when not judged (the source cannot say what its events bring, or the worker is behind).
   */
  async judge(source: Source, events: readonly QueueEvent[], since: Date): Promise<Judgement | null> {
    if (source.backfillChanges === undefined || events.length === 0) return null;
    const { graceMs, log } = this.options;
    const { oldestPendingAgeMs } = await this.options.queue.stats();
    if (oldestPendingAgeMs !== null && oldestPendingAgeMs > graceMs) {
      log.debug({ source: source.name, oldestPendingAgeMs }, 'missed webhooks not judged on this page: the queue is behind, so webhooks may still wait in it');
      return null;
    }
    const latest = this.now() - graceMs;
    let judged = 0;
    const missed: BackfillChange[] = [];
    try {
      for (const event of events) {
        for (const change of source.backfillChanges(event)) {
          const at = change.changedAt.getTime();
          if (at < since.getTime() || at > latest) continue;
          judged++;
          if (await this.isMissed(change)) missed.push(change);
        }
      }
    } catch (err) {
      // Telling is a report, never a reason to stop the backfill that repairs the data.
      log.warn({ err, source: source.name }, `missed webhooks not judged on this page: ${err instanceof Error ? err.message : String(err)}`);
      return null;
    }
    if (judged === 0) return { judged: 0, missed: 0 };
    this.options.lifecycle.emit('reconcile:judged', { source: source.name, judged, missed: missed.length });
    if (missed.length > 0) {
      const named = missed.slice(0, NAMED_IN_LOG).map((c) => `${c.table === 'tasks' ? 'task' : 'message'} ${c.id}`);
      const more = missed.length > NAMED_IN_LOG ? ` and ${missed.length - NAMED_IN_LOG} more` : '';
      log.warn(
        { source: source.name, judged, missed: missed.length, rows: missed.slice(0, NAMED_IN_LOG).map((c) => ({ table: c.table, id: c.id, changedAt: c.changedAt.toISOString() })) },
        `${source.name}: reconciliation found ${missed.length} of ${judged} changes that no webhook had delivered (${named.join(', ')}${more}); they are stored now. Check the webhook registrations at the vendor if this repeats`,
      );
    }
    return { judged, missed: missed.length };
  }

  private async isMissed(change: BackfillChange): Promise<boolean> {
    const stored = change.table === 'tasks' ? await this.options.db.getTask(change.id) : await this.options.db.getEmail(change.id);
    if (stored === null) return true;
    if (change.version === null) return false;
    // A tombstone (deleted from a webhook without the full object) carries its version as deletedAt.
    const version = stored.updatedAt ?? stored.deletedAt;
    return version === null || version.getTime() < change.version.getTime();
  }
}
