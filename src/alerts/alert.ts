/**
 * The words of alerting:
 * - condition: something the operator must know about, true or false at any moment, per source where
 *   it belongs to one (`ALERT_CONDITIONS`).
 * - alert: a condition while it holds, from when it started (`ActiveAlert`).
 * - message: what is sent when an alert starts or clears (`AlertMessage`); nothing is sent while it
 *   merely goes on.
 */
import type { SourceName } from '../model.ts';

export const ALERT_CONDITIONS = ['dead_letters', 'queue_age', 'queue_unavailable', 'worker_stalled', 'database_unavailable', 'vendor_auth', 'webhook_registration', 'missed_webhooks'] as const;
export type AlertCondition = (typeof ALERT_CONDITIONS)[number];

/** Conditions that belong to one source (the others concern the whole connector). */
export const SOURCE_CONDITIONS: ReadonlySet<AlertCondition> = new Set(['vendor_auth', 'webhook_registration', 'missed_webhooks']);

/** A condition's title, for people. */
export const ALERT_TITLES: Record<AlertCondition, string> = {
  dead_letters: 'Dead letters added',
  queue_age: 'Queue age over threshold',
  queue_unavailable: 'Queue cannot be written',
  worker_stalled: 'Worker stalled',
  database_unavailable: 'Database unavailable',
  vendor_auth: 'Vendor authentication failing',
  webhook_registration: 'Webhook registration missing or disabled',
  missed_webhooks: 'Missed webhooks',
};

export interface ActiveAlert {
  condition: AlertCondition;
  /** The source it concerns; null for the whole connector. */
  source: SourceName | null;
  title: string;
  /** What is wrong, in words, as last seen. */
  summary: string;
  /** When it started (ISO-8601). */
  since: string;
}

export interface AlertMessage extends ActiveAlert {
  state: 'started' | 'cleared';
  /** When it cleared (ISO-8601), for `cleared`. */
  clearedAt?: string;
}
