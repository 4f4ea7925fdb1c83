/**
 * Sends alert messages to ALERT_WEBHOOK_URL, in the background: `send()` only puts the message in a
 * queue in memory and returns; nothing that emits an alert ever waits for the receiver.
 *
 * One message at a time, in order (a `cleared` never overtakes its `started`):
 *
 *   queued -> wait for the rate limit (at most `maxPerMinute` messages in any minute)
 *          -> POST (timeout `timeoutMs`)
 *             -> 2xx: sent (counted)
 *             -> network error, timeout, 429, 5xx: failed attempt (one WARN line, counted); again after
 *                `retryDelay(attempt)` (exponential, jittered, honouring Retry-After), up to
 *                `maxAttempts`, then given up (one ERROR line)
 *             -> any other status (400, 403, 404: a wrong or revoked URL): given up at once (one ERROR line)
 *
 * The queue holds at most `maxQueued` messages; beyond that the oldest waiting one is dropped (one WARN
 * line). `close()` stops the waits and drops what is left. The URL is a secret (a Slack webhook URL is
 * a credential): lines name only its host.
 */
import { hostname } from 'node:os';
import type { Logger } from '../log.ts';
import { calculateDelay, MINUTE, parseRetryAfter, SECOND, sleep } from '../retry-policy.ts';
import type { AlertMessage } from './alert.ts';

export type AlertFormat = 'slack' | 'json';

export interface AlertSenderOptions {
  /** ALERT_WEBHOOK_URL. */
  url: string;
  /** ALERT_WEBHOOK_FORMAT. */
  format: AlertFormat;
  log: Logger;
  /** Attempts per message, the first included. Default 8 (about 2 minutes of retries). */
  maxAttempts?: number;
  /** Wait after failed attempt `attempt` (from 1), ms; `retryAfterMs` when the receiver said. Default `calculateDelay`. */
  retryDelay?: (attempt: number, retryAfterMs?: number) => number;
  /** Per-attempt timeout, ms. Default 10 s. */
  timeoutMs?: number;
  /** Messages sent in any 60 s at most. Default 20. */
  maxPerMinute?: number;
  /** Messages waiting at most. Default 200. */
  maxQueued?: number;
  /** Named in every message. Default the machine's host name. */
  host?: string;
  fetch?: typeof fetch;
  /** Told of each message sent, and of each failed attempt (metrics). */
  onSent?: (message: AlertMessage) => void;
  onFailedAttempt?: (message: AlertMessage) => void;
}

export class AlertSender {
  private readonly queue: AlertMessage[] = [];
  private readonly sentAt: number[] = [];
  private readonly stopping = new AbortController();
  private draining: Promise<void> | null = null;
  private readonly log: Logger;
  private readonly host: string;
  private readonly target: string;

  constructor(private readonly options: AlertSenderOptions) {
    this.log = options.log.child({ component: 'alerts' });
    this.host = options.host ?? hostname();
    this.target = new URL(options.url).host;
  }

  /** Queues a message and returns at once. */
  send(message: AlertMessage): void {
    if (this.stopping.signal.aborted) return;
    if (this.queue.length >= (this.options.maxQueued ?? 200)) {
      const dropped = this.queue.shift();
      this.log.warn({ condition: dropped?.condition, source: dropped?.source, state: dropped?.state }, `alert queue full: dropped the oldest waiting message (${dropped?.title}, ${dropped?.state})`);
    }
    this.queue.push(message);
    this.draining ??= this.drain().finally(() => (this.draining = null));
  }

  /** Resolves when every queued message is sent or given up (tests, a graceful stop). */
  async idle(): Promise<void> {
    while (this.draining !== null) await this.draining;
  }

  /** Stops: ends the waits and drops what is queued. */
  async close(): Promise<void> {
    this.stopping.abort();
    this.queue.length = 0;
    await this.draining;
  }

  private async drain(): Promise<void> {
    const signal = this.stopping.signal;
    for (let message = this.queue.shift(); message !== undefined && !signal.aborted; message = this.queue.shift()) {
      await this.waitForRate(signal);
      if (signal.aborted) return;
      await this.deliver(message, signal);
    }
  }

  private async waitForRate(signal: AbortSignal): Promise<void> {
    const limit = this.options.maxPerMinute ?? 20;
    for (;;) {
      const now = Date.now();
      while (this.sentAt.length > 0 && (this.sentAt[0] as number) <= now - MINUTE) this.sentAt.shift();
      if (this.sentAt.length < limit) return;
      await sleep((this.sentAt[0] as number) + MINUTE - now, signal);
      if (signal.aborted) return;
    }
  }

  private async deliver(message: AlertMessage, signal: AbortSignal): Promise<void> {
    const maxAttempts = this.options.maxAttempts ?? 8;
    const fields = { condition: message.condition, source: message.source, state: message.state, host: this.target };
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.post(message, signal);
      if (signal.aborted) return;
      if (outcome.ok) {
        this.sentAt.push(Date.now());
        this.options.onSent?.(message);
        if (attempt > 1) this.log.info({ ...fields, attempt }, `alert message delivered to ${this.target} at attempt ${attempt}`);
        return;
      }
      this.options.onFailedAttempt?.(message);
      if (!outcome.retryable) {
        this.log.error({ ...fields, attempt, status: outcome.status }, `alert message refused by ${this.target} (${outcome.what}); not retried: check ALERT_WEBHOOK_URL`);
        return;
      }
      if (attempt >= maxAttempts) {
        this.log.error({ ...fields, attempt }, `alert message not delivered to ${this.target} after ${attempt} attempts (${outcome.what}); given up`);
        return;
      }
      const delayMs = (this.options.retryDelay ?? calculateDelay)(attempt, outcome.retryAfterMs);
      this.log.warn({ ...fields, attempt, delayMs }, `alert message not delivered to ${this.target} (${outcome.what}); trying again in ${Math.round(delayMs / 100) / 10} s`);
      await sleep(delayMs, signal);
      if (signal.aborted) return;
    }
  }

  private async post(message: AlertMessage, signal: AbortSignal): Promise<{ ok: true } | { ok: false; retryable: boolean; what: string; status?: number; retryAfterMs?: number }> {
    const timeoutMs = this.options.timeoutMs ?? 10 * SECOND;
    try {
      const response = await (this.options.fetch ?? fetch)(this.options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(this.options.format === 'slack' ? slackBody(message, this.host) : jsonBody(message, this.host)),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
      await response.arrayBuffer().catch(() => {});
      if (response.ok) return { ok: true };
      const status = response.status;
      const retryable = status === 429 || status === 408 || status >= 500;
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      return { ok: false, retryable, status, what: `answered ${status}`, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    } catch (err) {
      const name = err instanceof Error ? err.name : '';
      if (name === 'TimeoutError') return { ok: false, retryable: true, what: `no answer within ${timeoutMs / SECOND} s` };
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
      const code = (cause as NodeJS.ErrnoException | undefined)?.code;
      return { ok: false, retryable: true, what: code ?? (cause instanceof Error ? cause.message : String(cause)) };
    }
  }
}

/** Slack's incoming-webhook shape (also Mattermost, Rocket.Chat): one line of text. */
export function slackBody(message: AlertMessage, host: string): { text: string } {
  const where = message.source === null ? '' : ` (${message.source})`;
  if (message.state === 'started') return { text: `:red_circle: [${host}] ${message.title}${where}: ${message.summary}` };
  const lasted = message.clearedAt === undefined ? '' : ` after ${duration(Date.parse(message.clearedAt) - Date.parse(message.since))}`;
  return { text: `:large_green_circle: [${host}] Cleared${lasted}: ${message.title}${where}` };
}

/** The generic shape: the alert's fields as they are. */
export function jsonBody(message: AlertMessage, host: string): Record<string, unknown> {
  return {
    alert: message.state,
    condition: message.condition,
    source: message.source,
    title: message.title,
    summary: message.summary,
    since: message.since,
    ...(message.clearedAt === undefined ? {} : { clearedAt: message.clearedAt }),
    host,
  };
}

function duration(ms: number): string {
  if (!(ms >= 0)) return 'a while';
  if (ms < MINUTE) return `${Math.round(ms / SECOND)} s`;
  if (ms < 60 * MINUTE) return `${Math.round(ms / MINUTE)} min`;
  return `${Math.round((ms / (60 * MINUTE)) * 10) / 10} h`;
}
