/**
 * The alert monitor: decides when each condition (src/alerts/alert.ts) starts and clears, keeps the
 * active alerts (`active()`, the dashboard's banner), sends one message per start and one per clear
 * (src/alerts/alert-sender.ts), and serves `connector_alert_active{condition,source}`.
 *
 * Where each condition comes from:
 * - from the health checks (src/server/health.ts), evaluated every `tickMs`: `queue_unavailable`
 *   (check `queue`), `queue_age`, `worker_stalled` (check `worker`), `database_unavailable` (check
 *   `database`, so after HEALTH_DATABASE_DOWN_SECONDS); each starts once two evaluations in a row
 *   saw its check fail;
 * - `dead_letters`: starts when dead letters are added (`event:dead-lettered` here, or the store's
 *   count grown between two ticks: another process), and holds until the store is empty again (replayed
 *   or discarded). Dead letters already there at start-up start nothing;
 * - `vendor_auth` per source: `vendor:auth` (a 401/403 from the vendor's API) until a request is
 *   accepted again;
 * - `missed_webhooks` per source: `reconcile:judged` adding up to MISSED_WEBHOOKS_ALERT_COUNT missed
 *   changes within the last hour; never with POLLING_ONLY (no webhook is expected);
 * - `webhook_registration` per source: the last look of src/alerts/webhook-registrations.ts says
 *   `missing` or `disabled`.
 *
 * States of one alert (condition, source):
 *
 *   inactive --condition true--> active (message `started`)
 *   active --condition true--> active (summary updated; nothing sent)
 *   active --condition false for `clearAfterMs` without a break--> inactive (message `cleared`)
 *
 * So a storm (a condition true again and again, or flapping) makes one `started` and, once it has
 * been over for `clearAfterMs`, one `cleared`. The sender also limits messages per minute.
 *
 * Lifecycle listeners only change memory and hand a message to the sender, which returns at once:
 * nothing on the data path waits for an alert.
 */
import { Gauge, type Registry } from 'prom-client';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { SOURCE_NAMES, type SourceName } from '../model.ts';
import { HOUR, SECOND } from '../retry-policy.ts';
import type { HealthChecks, HealthReport } from '../server/health.ts';
import { ALERT_CONDITIONS, ALERT_TITLES, SOURCE_CONDITIONS, type ActiveAlert, type AlertCondition, type AlertMessage } from './alert.ts';
import type { WebhookRegistrations } from './webhook-registrations.ts';

/** How often the health checks are evaluated for alerts, ms. */
export const ALERT_TICK_MS = 10 * SECOND;
/** How long a condition must have been false before its alert clears, ms. */
export const ALERT_CLEAR_AFTER_MS = 60 * SECOND;
/** The window missed webhooks are counted in, ms. */
const MISSED_WINDOW_MS = HOUR;

export interface AlertMonitorOptions {
  lifecycle: Lifecycle;
  health: HealthChecks;
  log: Logger;
  /** Where messages go (ALERT_WEBHOOK_URL); none: alerts are only in `active()` and the metrics. */
  sender?: { send(message: AlertMessage): void } | null;
  /** MISSED_WEBHOOKS_ALERT_COUNT. */
  missedWebhooksAlertCount: number;
  /** POLLING_ONLY: no webhook is expected, so none is missed. */
  pollingOnly: boolean;
  /** The webhook registrations' last look (src/alerts/webhook-registrations.ts), when this process checks them. */
  registrations?: { registrations(): WebhookRegistrations | null };
  /**
   * The conditions this process alerts on; default all. A `serve` process next to workers that alert
   * takes only `queue_unavailable` (its own deliveries), so that shared facts (the queue's age, its
   * dead letters) are not told twice.
   */
  conditions?: readonly AlertCondition[];
  /** Default ALERT_TICK_MS. */
  tickMs?: number;
  /** Default ALERT_CLEAR_AFTER_MS. */
  clearAfterMs?: number;
  /** The window missed webhooks are counted in, ms. Default one hour. */
  missedWindowMs?: number;
  now?: () => number;
}

interface AlertState {
  condition: AlertCondition;
  source: SourceName | null;
  since: number;
  /** The last time the condition was seen true. */
  lastTrueAt: number;
  summary: string;
}

export class AlertMonitor {
  private readonly alerts = new Map<string, AlertState>();
  private readonly now: () => number;
  private readonly clearAfterMs: number;
  private readonly log: Logger;
  private readonly off: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  /** The dead-letter store's count at the last tick (null before the first). */
  private deadLettered: number | null = null;
  private deadLetterAdded: { source: SourceName; error: string } | null = null;
  private readonly authFailing = new Map<SourceName, string>();
  /** Health-check conditions seen failing by the last evaluation. */
  private readonly failingOnce = new Set<AlertCondition>();
  private readonly missed = new Map<SourceName, Array<{ at: number; missed: number }>>();

  constructor(private readonly options: AlertMonitorOptions) {
    this.now = options.now ?? Date.now;
    this.clearAfterMs = options.clearAfterMs ?? ALERT_CLEAR_AFTER_MS;
    this.log = options.log.child({ component: 'alerts' });
    const { lifecycle } = options;
    this.off.push(
      lifecycle.on('event:dead-lettered', (e) => {
        this.deadLetterAdded = { source: e.source, error: `${e.error.code}: ${e.error.message}` };
        this.raise('dead_letters', null, deadLetterSummary(this.deadLetterAdded, null));
      }),
      lifecycle.on('vendor:auth', (e) => {
        if (e.failing) {
          const summary = `${e.source} refuses our credentials (${e.detail ?? `answered ${e.status ?? '401/403'}`})`;
          this.authFailing.set(e.source, summary);
          this.raise('vendor_auth', e.source, summary);
        } else {
          this.authFailing.delete(e.source);
          this.lower('vendor_auth', e.source);
        }
      }),
      lifecycle.on('reconcile:judged', (e) => {
        if (e.missed <= 0) return;
        const list = this.missed.get(e.source) ?? [];
        list.push({ at: this.now(), missed: e.missed });
        this.missed.set(e.source, list);
        this.judgeMissed(e.source);
      }),
    );
  }

  /** Evaluates every `tickMs` until `stop()`. */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.tick(), this.options.tickMs ?? ALERT_TICK_MS);
    this.timer.unref();
    void this.tick();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const off of this.off.splice(0)) off();
  }

  /** The alerts active now, oldest first. */
  active(): ActiveAlert[] {
    return [...this.alerts.values()]
      .sort((a, b) => a.since - b.since)
      .map((a) => ({ condition: a.condition, source: a.source, title: ALERT_TITLES[a.condition], summary: a.summary, since: new Date(a.since).toISOString() }));
  }

  /** One evaluation of every condition (the one under way, if any). Never rejects. */
  tick(): Promise<void> {
    this.ticking ??= this.evaluate()
      .catch((err: unknown) => this.log.error({ err }, 'could not evaluate the alert conditions'))
      .finally(() => (this.ticking = null));
    return this.ticking;
  }

  registerMetrics(registry: Registry): void {
    const alerts = this.alerts;
    new Gauge({
      name: 'connector_alert_active',
      help: 'Whether an alert is active (1) or not (0), by condition and source ("" for the whole connector).',
      labelNames: ['condition', 'source'],
      registers: [registry],
      collect() {
        this.reset();
        for (const condition of ALERT_CONDITIONS) {
          for (const source of SOURCE_CONDITIONS.has(condition) ? SOURCE_NAMES : [null]) {
            this.set({ condition, source: source ?? '' }, alerts.has(key(condition, source)) ? 1 : 0);
          }
        }
      },
    });
  }

  private async evaluate(): Promise<void> {
    const report = await this.options.health.evaluate();
    this.judgeHealth(report);
    this.judgeDeadLetters(report);
    for (const source of SOURCE_NAMES) {
      // Still refused: the alert is kept fresh, so that the first accepted request after a long
      // refusal does not clear it at once (it clears `clearAfterMs` after the last refusal seen).
      const refused = this.authFailing.get(source);
      if (refused !== undefined) this.raise('vendor_auth', source, refused);
      else this.lower('vendor_auth', source);
      this.judgeMissed(source);
    }
    this.judgeRegistrations();
  }

  private judgeHealth(report: HealthReport): void {
    const fromCheck = (condition: AlertCondition, check: keyof HealthReport['checks']) => {
      const result = report.checks[check];
      if (result !== undefined && !result.ok) {
        // Seen failing by two evaluations in a row: a moment shorter than a tick (old dead letters
        // replayed, with their receipt times, and done at once) starts nothing.
        if (this.failingOnce.has(condition) || this.alerts.has(key(condition, null))) this.raise(condition, null, result.reason ?? 'failing');
        this.failingOnce.add(condition);
      } else {
        this.failingOnce.delete(condition);
        this.lower(condition, null);
      }
    };
    fromCheck('queue_unavailable', 'queue');
    fromCheck('queue_age', 'queue_age');
    fromCheck('worker_stalled', 'worker');
    fromCheck('database_unavailable', 'database');
  }

  private judgeDeadLetters(report: HealthReport): void {
    const count = report.stats?.deadLettered;
    if (count === undefined) return; // the queue cannot be read: nothing to judge by
    const grown = this.deadLettered !== null && count > this.deadLettered;
    this.deadLettered = count;
    if (count === 0) {
      this.deadLetterAdded = null;
      this.lower('dead_letters', null);
    } else if (grown || this.alerts.has(key('dead_letters', null))) {
      this.raise('dead_letters', null, deadLetterSummary(this.deadLetterAdded, count));
    }
  }

  private judgeMissed(source: SourceName): void {
    const since = this.now() - (this.options.missedWindowMs ?? MISSED_WINDOW_MS);
    const list = (this.missed.get(source) ?? []).filter((m) => m.at > since);
    this.missed.set(source, list);
    const total = list.reduce((sum, m) => sum + m.missed, 0);
    if (!this.options.pollingOnly && total >= this.options.missedWebhooksAlertCount) {
      this.raise('missed_webhooks', source, `reconciliation found ${total} ${source} change(s) in the last hour that no webhook had delivered (MISSED_WEBHOOKS_ALERT_COUNT=${this.options.missedWebhooksAlertCount}); check the webhook registration and the vendor's delivery log`);
    } else {
      this.lower('missed_webhooks', source);
    }
  }

  private judgeRegistrations(): void {
    const result = this.options.registrations?.registrations();
    if (result === null || result === undefined) return;
    for (const status of result.sources) {
      if (status.state === 'missing' || status.state === 'disabled') this.raise('webhook_registration', status.source, status.detail);
      else this.lower('webhook_registration', status.source);
    }
  }

  private raise(condition: AlertCondition, source: SourceName | null, summary: string): void {
    if (this.options.conditions !== undefined && !this.options.conditions.includes(condition)) return;
    const now = this.now();
    const existing = this.alerts.get(key(condition, source));
    if (existing !== undefined) {
      existing.lastTrueAt = now;
      existing.summary = summary;
      return;
    }
    const state: AlertState = { condition, source, since: now, lastTrueAt: now, summary };
    this.alerts.set(key(condition, source), state);
    this.log.warn({ condition, source }, `alert started: ${ALERT_TITLES[condition]}${source === null ? '' : ` (${source})`}: ${summary}`);
    this.emit(state, 'started');
  }

  private lower(condition: AlertCondition, source: SourceName | null): void {
    const state = this.alerts.get(key(condition, source));
    if (state === undefined) return;
    const now = this.now();
    if (now - state.lastTrueAt < this.clearAfterMs) return;
    this.alerts.delete(key(condition, source));
    this.log.info({ condition, source, seconds: Math.round((now - state.since) / SECOND) }, `alert cleared: ${ALERT_TITLES[condition]}${source === null ? '' : ` (${source})`}`);
    this.emit(state, 'cleared', now);
  }

  private emit(state: AlertState, kind: 'started' | 'cleared', clearedAt?: number): void {
    const message: AlertMessage = {
      state: kind,
      condition: state.condition,
      source: state.source,
      title: ALERT_TITLES[state.condition],
      summary: state.summary,
      since: new Date(state.since).toISOString(),
      ...(clearedAt === undefined ? {} : { clearedAt: new Date(clearedAt).toISOString() }),
    };
    this.options.sender?.send(message);
  }
}

function key(condition: AlertCondition, source: SourceName | null): string {
  return `${condition}:${source ?? ''}`;
}

function deadLetterSummary(added: { source: SourceName; error: string } | null, count: number | null): string {
  const held = count === null ? 'dead letters were added' : `${count} dead letter(s) held`;
  const last = added === null ? '' : `; the last: ${added.source}, ${added.error}`;
  return `${held}${last}; replay or discard them (npm run replay-dlq, or the dashboard)`;
}
