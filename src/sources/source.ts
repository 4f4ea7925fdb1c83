/**
 * The Source contract: everything the core needs from a vendor integration. The core (server, queue,
 * dispatcher, database, sync) imports only this file; each vendor's knowledge lives in its own folder.
 *
 * What callers may rely on:
 * - `verify` looks only at the raw bytes and headers, before anything is parsed. With a secret
 *   configured, a missing or wrong signature throws `CONN_ERR_WEBHOOK_SIGNATURE`; without one every
 *   delivery throws it too (401, naming the missing setting), unless the operator set
 *   WEBHOOKS_ALLOW_UNSIGNED=true: then it passes and `acceptsUnsigned` is true. Such a source's handler
 *   takes nothing from a delivery body as data while its API is configured: it re-reads the vendor.
 * - `parseWebhook` throws `CONN_ERR_WEBHOOK_MEDIA_TYPE` (415) or `CONN_ERR_WEBHOOK_MALFORMED` (400) for
 *   bodies it cannot use; otherwise it returns the events to enqueue, possibly none (a vendor's
 *   validation ping, an event we do not store), with a note saying why.
 * - `handle` is idempotent and pure apart from reads from the vendor API: it returns changes and never
 *   writes to the database. It throws ConnectorErrors whose `retryable` tells the dispatcher what to do.
 * - `backfill` yields pages in the vendor's order; a page's `checkpoint` is safe to store once that
 *   page's events are durably enqueued. A page that failed is never yielded.
 */
import type { RateLimiter } from '../http/rate-limiter.ts';
import type { Logger } from '../log.ts';
import type { Changes, QueueEvent, SourceName } from '../model.ts';
import { MINUTE, SECOND } from '../retry-policy.ts';

/**
 * How long a handler's vendor request may wait for the vendor (its pause, its budget, between two
 * attempts) before the call gives up with a retryable error saying until when (CONN_ERR_VENDOR_PAUSED):
 * the dispatcher then reschedules the event in the queue instead of holding a lane for minutes.
 */
export const HANDLER_MAX_WAIT_MS = 10 * SECOND;
/**
 * The same for a backfill's requests, which hold no lane: long enough to wait out Missive's
 * 15-minute window, so that a first backfill of a large account goes on through its budget.
 */
export const BACKFILL_MAX_WAIT_MS = 20 * MINUTE;

/**
 * What the core sees of a vendor's budget and health (src/http/rate-limiter.ts): whether it can be
 * asked now (`status`), its changes, the requests counted, and whether it accepts our credentials
 * (`authStatus`, `onAuthChange`: a 401/403 answer; optional for gates that do not track it).
 */
export type VendorGate = Pick<RateLimiter, 'status' | 'onStateChange' | 'stats'> & Partial<Pick<RateLimiter, 'authStatus' | 'onAuthChange'>>;

export type Headers = Readonly<Record<string, string | string[] | undefined>>;

/** One delivery, as received. */
export interface Delivery {
  rawBody: Buffer;
  /** Header names in lower case, as Node gives them. */
  headers: Headers;
  receivedAt: Date;
}

export interface ParsedDelivery {
  events: QueueEvent[];
  /** Why a delivery produced no events, or anything else worth a log line. */
  note?: string;
  /** The vendor's event name, when known (for logs and metrics). */
  eventType?: string;
  /**
   * How long a later delivery byte for byte this one is taken for a repeat of it (a vendor's retry, a
   * replay) and not enqueued again, ms; the door uses the shorter of this and
   * DELIVERY_REPLAY_WINDOW_HOURS. Unset: that setting. 0: never, for a body that a genuinely new change
   * can repeat byte for byte and whose handler re-reads the vendor anyway (src/server/replay-window.ts).
   */
  replayWindowMs?: number;
}

export interface HandlerContext {
  log: Logger;
  /** The current time; injectable for tests. */
  now: () => Date;
  /** Aborted when the process is shutting down and may not wait for slow requests. */
  signal?: AbortSignal;
  /**
   * True on the event's last attempt (the next failure dead-letters it). A handler whose event would
   * fail only for an optional part (an attachment's content) then returns the rest rather than throw:
   * a part that cannot be had must not cost the whole record. Default false.
   */
  lastAttempt?: boolean;
}

export interface BackfillPage {
  events: QueueEvent[];
  /** Where the checkpoint may move once these events are durable: the newest vendor update seen so far. */
  newestUpdate: Date | null;
  /** The vendor cursor after this page, if any. */
  cursor: string | null;
}

export interface BackfillChange {
  table: 'tasks' | 'emails';
  id: string;
  changedAt: Date;
  version: Date | null;
}

export interface BackfillOptions {
  /** Items changed at or after this instant (the checkpoint minus the overlap). */
  since: Date;
  log: Logger;
  signal?: AbortSignal;
}

export interface Source {
  readonly name: SourceName;
  /** Whether the vendor API is configured (credentials set): enrichment and backfill need it. */
  readonly apiConfigured: boolean;
  /**
   * Whether deliveries are accepted without a signature (no secret set and WEBHOOKS_ALLOW_UNSIGNED=true);
   * start-up warns about each such source. Unset: false.
   */
  readonly acceptsUnsigned?: boolean;
  verify(delivery: Delivery): void;
  parseWebhook(delivery: Delivery): ParsedDelivery;
  handle(event: QueueEvent, context: HandlerContext): Promise<Changes>;
  /** Present only when the vendor API is configured. */
  backfill?(options: BackfillOptions): AsyncIterable<BackfillPage>;
  /**
   * What a backfill event brings, row by row, for telling whether a webhook had brought it already
   * (src/sync/missed-webhooks.ts): each row's id, when the vendor says it changed, and the version a
   * row stored from that change has at least (null when versions cannot tell: then a stored row counts
   * as having it, and only a missing row as missed). Without it, the source's changes are not judged.
   */
  backfillChanges?(event: QueueEvent): BackfillChange[];
  /**
   * The vendor API's budget and health, when the API is configured: the dispatcher claims none of this
   * source's events while the vendor is paused or down, and the composition root logs and counts each
   * change of its state.
   */
  readonly vendor?: VendorGate;
}

/** The HTTP header's value as one string (the first, when repeated). */
export function header(headers: Headers, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}
