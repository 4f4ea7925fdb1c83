/**
 * Whether our webhooks are still registered, and enabled, at the vendors: a periodic look through the
 * same library code as `register-webhooks --list` (src/admin/register-webhooks.ts). Its last result is
 * what the dashboard shows as "webhook registrations" (`registrations()`) and what the
 * `webhook_registration` alert reads.
 *
 * Per source, `state`:
 * - `ok`: Teamwork has an active hook for each task event; Missive has at least one hook for our URL.
 * - `missing`: Teamwork lacks the hooks of some events (named), or all of them.
 * - `disabled`: a Teamwork hook for our URL is there but not active (Teamwork turns a hook off after
 *   repeated failed deliveries).
 * - `unknown`: cannot be told: the API credentials are not set, or (Missive) no hook made through the
 *   API, since rules made in Missive's settings are not visible through it.
 * - `failed`: the vendor could not be asked (`detail` says why; a 401/403 is also the `vendor_auth` alert).
 * Only `missing` and `disabled` raise the alert.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { SourceName } from '../model.ts';
import { manageWebhooks, type VendorWebhookReport } from '../admin/register-webhooks.ts';
import { MissiveHooksApi } from '../sources/missive/webhooks-admin.ts';
import { TeamworkClient } from '../sources/teamwork/client.ts';
import { TASK_WEBHOOK_EVENTS } from '../sources/teamwork/webhook.ts';

export interface RegistrationStatus {
  source: SourceName;
  state: 'ok' | 'missing' | 'disabled' | 'unknown' | 'failed';
  /** Our endpoint at this vendor. */
  endpoint: string;
  /** Hooks of ours found. */
  hooks: number;
  detail: string;
}

export interface WebhookRegistrations {
  /** When the last look ended (ISO-8601). */
  checkedAt: string;
  sources: RegistrationStatus[];
}

export interface WebhookRegistrationCheckOptions {
  /** Lists our hooks at the vendors: `() => manageWebhooks('list', deps)` (src/admin/register-webhooks.ts). */
  list: (signal: AbortSignal) => Promise<VendorWebhookReport[]>;
  /** WEBHOOK_REGISTRATION_CHECK_MINUTES, in ms; 0: never (only `check()` when called). */
  everyMs: number;
  log: Logger;
  /** Told of each result (the alert monitor). */
  onResult?: (result: WebhookRegistrations) => void;
}

/** Looks every `everyMs` (the first look at `start()`); `stop()` ends the timer and a look under way. */
export class WebhookRegistrationCheck {
  private last: WebhookRegistrations | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly stopping = new AbortController();
  private running: Promise<WebhookRegistrations | null> | null = null;

  constructor(private readonly options: WebhookRegistrationCheckOptions) {}

  /** The last result; null before the first look ends. */
  registrations(): WebhookRegistrations | null {
    return this.last;
  }

  start(): void {
    if (this.options.everyMs <= 0 || this.timer !== null) return;
    void this.check();
    this.timer = setInterval(() => void this.check(), this.options.everyMs);
    this.timer.unref();
  }

  /** One look now (or the one under way); null when stopped first. Never rejects. */
  check(): Promise<WebhookRegistrations | null> {
    this.running ??= this.look().finally(() => (this.running = null));
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  private async look(): Promise<WebhookRegistrations | null> {
    const log = this.options.log.child({ component: 'webhook-registrations' });
    let reports: VendorWebhookReport[];
    try {
      reports = await this.options.list(this.stopping.signal);
    } catch (err) {
      if (this.stopping.signal.aborted) return null;
      // A usage error (no PUBLIC_URL): every source is unknown, said once per look at debug level.
      const detail = err instanceof Error ? err.message : String(err);
      log.debug({ err }, 'could not list the webhooks at the vendors');
      this.last = { checkedAt: new Date().toISOString(), sources: (['teamwork', 'missive'] as const).map((source) => ({ source, state: 'unknown', endpoint: '', hooks: 0, detail })) };
      this.options.onResult?.(this.last);
      return this.last;
    }
    if (this.stopping.signal.aborted) return null;
    const result: WebhookRegistrations = { checkedAt: new Date().toISOString(), sources: reports.map(judgeRegistration) };
    for (const status of result.sources) {
      const previous = this.last?.sources.find((s) => s.source === status.source);
      if (previous?.state !== status.state && (status.state === 'missing' || status.state === 'disabled' || status.state === 'failed')) {
        log.warn({ source: status.source, state: status.state }, `${status.source} webhook registration ${status.state}: ${status.detail}`);
      }
    }
    this.last = result;
    this.options.onResult?.(result);
    return result;
  }
}

/** One vendor's list report, judged (see the states above). */
export function judgeRegistration(report: VendorWebhookReport): RegistrationStatus {
  const base = { source: report.source, endpoint: report.endpoint, hooks: report.existing.length };
  switch (report.status) {
    case 'skipped':
      return { ...base, state: 'unknown', detail: report.notes[0] ?? 'not checked' };
    case 'failed':
    case 'manual':
      return { ...base, state: 'failed', detail: [report.error, report.fix].filter((s) => s !== undefined).join('; ') || 'the vendor could not be asked' };
    case 'ok':
      break;
    default: {
      const never: never = report.status;
      throw new Error(`unknown report status ${String(never)}`);
    }
  }
  if (report.source === 'missive') {
    if (report.existing.length === 0) return { ...base, state: 'unknown', detail: "no hook for our URL made through Missive's API; a rule made in Missive's settings is not visible through it" };
    return { ...base, state: 'ok', detail: `${report.existing.length} hook(s) for ${report.endpoint}` };
  }
  const inactive = report.existing.filter((h) => h.status !== undefined && h.status.toLowerCase() !== 'active');
  const present = new Set(report.existing.map((h) => h.event.toUpperCase()));
  const missing = TASK_WEBHOOK_EVENTS.filter((event) => !present.has(event));
  if (missing.length > 0) {
    return { ...base, state: 'missing', detail: `no hook for ${report.endpoint} for ${missing.join(', ')} (run npm run register-webhooks)` };
  }
  if (inactive.length > 0) {
    return { ...base, state: 'disabled', detail: `Teamwork turned off the hooks for ${inactive.map((h) => `${h.event} (${h.status})`).join(', ')}; turn them on again in Settings > Webhooks, or remove and register them again` };
  }
  return { ...base, state: 'ok', detail: `an active hook for each of the ${TASK_WEBHOOK_EVENTS.length} task events` };
}

/**
 * What `register-webhooks --list` does, as a function for the periodic look: our hooks at each vendor
 * whose API is configured, for `publicUrl` (PUBLIC_URL, or the tunnel's URL). Null when there is
 * nothing to look for: no public URL, or POLLING_ONLY (no webhook expected). Its own API clients, with
 * their own small budgets (one or two requests per look).
 */
export function webhookLister(
  config: Pick<Config, 'POLLING_ONLY' | 'TEAMWORK_API_KEY' | 'teamworkBaseUrl' | 'TEAMWORK_REQUESTS_PER_MINUTE' | 'MISSIVE_API_TOKEN' | 'MISSIVE_BASE_URL'>,
  publicUrl: string | null,
  log: Logger,
): ((signal: AbortSignal) => Promise<VendorWebhookReport[]>) | null {
  if (publicUrl === null || config.POLLING_ONLY) return null;
  const teamwork = config.TEAMWORK_API_KEY !== undefined && config.teamworkBaseUrl !== null
    ? new TeamworkClient({ baseUrl: config.teamworkBaseUrl, apiKey: config.TEAMWORK_API_KEY, requestsPerMinute: config.TEAMWORK_REQUESTS_PER_MINUTE, log })
    : null;
  const missive = config.MISSIVE_API_TOKEN !== undefined ? new MissiveHooksApi({ token: config.MISSIVE_API_TOKEN, baseUrl: config.MISSIVE_BASE_URL, log }) : null;
  return (signal) => manageWebhooks('list', { publicUrl, teamwork: { client: teamwork }, missive: { api: missive }, signal });
}
