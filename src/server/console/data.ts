/**
 * What the operator console shows, as plain JSON-ready objects: the shapes its JSON API answers with
 * (docs/console.md) and the providers the routes read them from. The routes (src/server/console/) know
 * nothing of how a fact is gathered; the providers (src/admin/activity.ts, the health checks, the
 * alerts, the admin functions) know nothing of HTTP.
 */
import type { QueuedEventSummary } from '../../admin/check-queue.ts';
import type { ErrorRecord } from '../../errors.ts';
import type { RowRef, SourceName } from '../../model.ts';
import type { QueueStats } from '../../queue/queue.ts';

/** Counts per minute over the last hour, oldest first: 60 numbers, the last one the current minute. */
export type MinuteSeries = number[];

/** One source, as the overview shows it. */
export interface SourceOverview {
  name: SourceName;
  /** Whether its API credentials are set (enrichment and backfill on). */
  apiConfigured: boolean;
  /** The newest delivery this process accepted (ISO-8601), or null. */
  lastDeliveryAt: string | null;
  perMinute: { deliveries: MinuteSeries; events: MinuteSeries; failed: MinuteSeries };
  /** The newest reconciliation or backfill run this process saw end, or null. */
  reconciliation: ReconciliationSummary | null;
  /** Where the next reconciliation starts (the newest change seen), or null when none yet. */
  checkpoint: { lastEventTime: string | null } | null;
  /** Changes a reconciliation found that no webhook had delivered, in the last hour and since start. */
  missedWebhooks: { lastHour: number; total: number };
  /**
   * The vendor's state (ok, paused, unavailable) and this process's use of its budget (requests in
   * each window, requests in flight), from its rate limiter; null without an API.
   */
  vendor: { state: 'ok' | 'paused' | 'unavailable'; until?: string; reason?: string; inFlight: number; windows: Array<{ limit: number; intervalMs: number; used: number }> } | null;
}

export interface ReconciliationSummary {
  startedAt: string;
  finishedAt: string;
  /** Events it put on the queue. */
  events: number;
  /** Of those, changes no webhook had delivered (null when not judged: a first backfill, or the queue behind). */
  missed: number | null;
  durationMs: number;
  error: ErrorRecord | null;
}

export interface QueueSample extends QueueStats {
  at: string;
}

export interface ProcessOverview {
  version: string;
  /** serve, work, or start (both). */
  role: 'serve' | 'work' | 'start';
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  memory: { rssBytes: number; heapUsedBytes: number };
}

/** What happened to an event in this process, newest attempt last. */
export interface EventAttempt {
  attempt: number;
  at: string;
  outcome: 'ok' | 'retrying' | 'waiting-for-vendor' | 'dead-lettered';
  durationMs: number | null;
  error: ErrorRecord | null;
}

export interface EventSummary extends QueuedEventSummary {
  /** The latest outcome; `pending` for an event still in the queue and not yet tried in this process. */
  outcome: 'ok' | 'retrying' | 'waiting-for-vendor' | 'dead-lettered' | 'pending';
  attempts: number;
  /** The latest attempt's duration, ms. */
  durationMs: number | null;
  error: ErrorRecord | null;
}

export interface EventDetail extends EventSummary {
  /** The payload as received, secrets redacted; null when this process no longer holds it. */
  payload: unknown;
  history: EventAttempt[];
  /** The rows the event wrote, as the database holds them now (null: not found). */
  rows: Array<RowRef & { row: unknown }>;
}

/** A process of this connector posting its activity (src/admin/activity-board.ts). */
export interface ProcessSummary {
  id: string;
  role: 'serve' | 'work' | 'start';
  startedAt: string;
  /** Its last report. */
  at: string;
  /** The last time a worker lane of it claimed events; null for none. */
  lastClaimAt: string | null;
  /** The process serving this console. */
  self: boolean;
}

/** Recent events of this process (and of the others posting to the board), and what the queue still holds. */
export interface ActivityProvider {
  processes(): Promise<ProcessSummary[]>;
  sources(): Promise<SourceOverview[]>;
  queueHistory(): QueueSample[];
  /** Newest first; `query` matches an event id, an entity key or id (task id, conversation id), or a row id (message id). */
  events(options: { query?: string; source?: SourceName; limit: number }): Promise<EventSummary[]>;
  event(id: string): Promise<EventDetail | null>;
}
