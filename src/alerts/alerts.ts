/**
 * Alerts, put together from the settings: the monitor (src/alerts/alert-monitor.ts), the sender to
 * ALERT_WEBHOOK_URL when it is set (src/alerts/alert-sender.ts), the periodic look at the webhook
 * registrations when this process can make it (src/alerts/webhook-registrations.ts), and their
 * metrics. The composition root makes one with `createAlerts`, `start()`s it, passes it to the HTTP
 * app (metrics) and the console (`active()`, `registrations()`), and `stop()`s it on shutdown.
 *
 * `watchVendorAuth` turns a vendor's refusals of our credentials (401/403, seen by the HTTP client:
 * src/http/rate-limiter.ts `onAuthChange`) into `vendor:auth` lifecycle events and one log line per
 * change.
 */
import { Counter, type Registry } from 'prom-client';
import type { Config } from '../config.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { VendorWebhookReport } from '../admin/register-webhooks.ts';
import { MINUTE } from '../retry-policy.ts';
import type { HealthChecks } from '../server/health.ts';
import type { Source } from '../sources/source.ts';
import type { ActiveAlert, AlertCondition, AlertMessage } from './alert.ts';
import { AlertMonitor } from './alert-monitor.ts';
import { AlertSender } from './alert-sender.ts';
import { WebhookRegistrationCheck, type WebhookRegistrations } from './webhook-registrations.ts';

export interface AlertsDeps {
  config: Pick<Config, 'ALERT_WEBHOOK_URL' | 'ALERT_WEBHOOK_FORMAT' | 'MISSED_WEBHOOKS_ALERT_COUNT' | 'POLLING_ONLY' | 'WEBHOOK_REGISTRATION_CHECK_MINUTES'>;
  lifecycle: Lifecycle;
  health: HealthChecks;
  log: Logger;
  /**
   * Lists our hooks at the vendors, for the registration check: `(signal) => manageWebhooks('list',
   * { publicUrl, teamwork, missive, signal })`. Leave it out where no check should run (no public URL,
   * POLLING_ONLY, or a process other than the one worker that reconciles).
   */
  listWebhooks?: (signal: AbortSignal) => Promise<VendorWebhookReport[]>;
  /** The conditions this process alerts on (AlertMonitorOptions.conditions); default all. */
  conditions?: readonly AlertCondition[];
  /** Sender and monitor timings for tests; defaults otherwise. */
  tuning?: { tickMs?: number; clearAfterMs?: number; missedWindowMs?: number; retryDelay?: (attempt: number, retryAfterMs?: number) => number; maxPerMinute?: number; fetch?: typeof fetch };
}

export interface Alerts {
  /** The active alerts, oldest first (the dashboard's banner). */
  active(): ActiveAlert[];
  /** The webhook registrations' last look (the dashboard's overview); null before the first or without a check. */
  registrations(): WebhookRegistrations | null;
  /** Looks at the webhook registrations now (and judges the alert); null without a check. */
  checkRegistrations(): Promise<WebhookRegistrations | null>;
  /** connector_alert_active, connector_alerts_sent_total, connector_alert_delivery_failures_total. */
  registerMetrics(registry: Registry): void;
  start(): void;
  /** Stops the timers and the sender (what is still queued is dropped). */
  stop(): Promise<void>;
  /** Resolves when the messages queued so far are delivered or given up (tests). */
  idle(): Promise<void>;
  readonly monitor: AlertMonitor;
}

export function createAlerts(deps: AlertsDeps): Alerts {
  const { config, lifecycle, health, log, tuning = {} } = deps;
  const delivered = { started: 0, cleared: 0 };
  let failedAttempts = 0;
  const sender = config.ALERT_WEBHOOK_URL === undefined ? null : new AlertSender({
    url: config.ALERT_WEBHOOK_URL,
    format: config.ALERT_WEBHOOK_FORMAT,
    log,
    onSent: (message: AlertMessage) => delivered[message.state]++,
    onFailedAttempt: () => failedAttempts++,
    ...(tuning.retryDelay === undefined ? {} : { retryDelay: tuning.retryDelay }),
    ...(tuning.maxPerMinute === undefined ? {} : { maxPerMinute: tuning.maxPerMinute }),
    ...(tuning.fetch === undefined ? {} : { fetch: tuning.fetch }),
  });
  const registrations = deps.listWebhooks === undefined || config.WEBHOOK_REGISTRATION_CHECK_MINUTES === 0 ? null : new WebhookRegistrationCheck({
    list: deps.listWebhooks,
    everyMs: config.WEBHOOK_REGISTRATION_CHECK_MINUTES * MINUTE,
    log,
    onResult: () => void monitor.tick(),
  });
  const monitor = new AlertMonitor({
    lifecycle,
    health,
    log,
    sender,
    missedWebhooksAlertCount: config.MISSED_WEBHOOKS_ALERT_COUNT,
    pollingOnly: config.POLLING_ONLY,
    ...(registrations === null ? {} : { registrations }),
    ...(deps.conditions === undefined ? {} : { conditions: deps.conditions }),
    ...(tuning.tickMs === undefined ? {} : { tickMs: tuning.tickMs }),
    ...(tuning.clearAfterMs === undefined ? {} : { clearAfterMs: tuning.clearAfterMs }),
    ...(tuning.missedWindowMs === undefined ? {} : { missedWindowMs: tuning.missedWindowMs }),
  });
  if (sender === null) log.info({ component: 'alerts' }, 'ALERT_WEBHOOK_URL is not set: alerts are shown in the dashboard and /metrics (connector_alert_active) only');
  return {
    monitor,
    active: () => monitor.active(),
    registrations: () => registrations?.registrations() ?? null,
    checkRegistrations: async () => {
      const result = (await registrations?.check()) ?? null;
      await monitor.tick();
      return result;
    },
    registerMetrics(registry) {
      monitor.registerMetrics(registry);
      new Counter({
        name: 'connector_alerts_sent_total',
        help: 'Alert messages delivered to ALERT_WEBHOOK_URL, by state (started, cleared).',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          this.reset();
          this.inc({ state: 'started' }, delivered.started);
          this.inc({ state: 'cleared' }, delivered.cleared);
        },
      });
      new Counter({
        name: 'connector_alert_delivery_failures_total',
        help: 'Failed attempts to deliver an alert message to ALERT_WEBHOOK_URL (each is retried with backoff, then given up).',
        registers: [registry],
        collect() {
          this.reset();
          this.inc(failedAttempts);
        },
      });
    },
    start() {
      monitor.start();
      registrations?.start();
    },
    async stop() {
      monitor.stop();
      await registrations?.stop();
      await sender?.close();
    },
    idle: async () => {
      await monitor.tick();
      await sender?.idle();
    },
  };
}

/**
 * For each source whose vendor tracks it: a 401/403 from its API becomes `vendor:auth` { failing: true }
 * and one WARN line; the next accepted request, `vendor:auth` { failing: false } and one INFO line.
 * Returns the function that stops watching.
 */
export function watchVendorAuth(sources: readonly Source[], lifecycle: Lifecycle, log: Logger): () => void {
  const stops = sources.flatMap((source) => {
    const vendor = source.vendor;
    if (vendor?.onAuthChange === undefined) return [];
    const vlog = log.child({ component: 'vendor', source: source.name });
    return [
      vendor.onAuthChange((auth) => {
        if (auth.failing) {
          lifecycle.emit('vendor:auth', { source: source.name, failing: true, status: auth.status, detail: auth.detail });
          vlog.warn({ status: auth.status }, `${source.name} refuses our credentials (${auth.detail}): check its API token; requests that need it fail until then`);
        } else {
          lifecycle.emit('vendor:auth', { source: source.name, failing: false });
          vlog.info(`${source.name} accepts our credentials again`);
        }
      }),
    ];
  });
  return () => stops.forEach((stop) => stop());
}
