/**
 * The Teamwork source: webhooks in (verify, parse), events out as canonical tasks (handle), and the
 * backfill that catches what webhooks missed. The core uses it only through the `Source` contract.
 *
 * Without TEAMWORK_API_KEY and a base URL (TEAMWORK_BASE_URL or TEAMWORK_SITE) the source still takes
 * webhooks and stores what v2 bodies carry; fetching thin events and the backfill are off.
 *
 * Without TEAMWORK_WEBHOOK_TOKEN every delivery is refused (401) unless WEBHOOKS_ALLOW_UNSIGNED=true;
 * then, with the API configured, no delivery body is trusted: every webhook event's task is read from
 * the API (handler.ts, `trustBody`).
 *
 * Deliveries acknowledged without events (non-task events, TASK.REMINDER, bodies with neither event
 * name nor task) are logged and counted per event type: `ignoredDeliveries()` (the first 64 names one
 * by one, the rest together as `(other)`: the name is the sender's choice, the table stays small).
 */
import type { Config } from '../../config.ts';
import type { Clock } from '../../http/index.ts';
import { systemClock } from '../../http/index.ts';
import type { Logger } from '../../log.ts';
import type { OutageOptions } from '../../http/rate-limiter.ts';
import type { BudgetStore } from '../../budget/budget-store.ts';
import { MINUTE } from '../../retry-policy.ts';
import { BACKFILL_MAX_WAIT_MS, HANDLER_MAX_WAIT_MS, type BackfillOptions, type BackfillPage, type Delivery, type HandlerContext, type ParsedDelivery, type Source } from '../source.ts';
import type { Changes, QueueEvent } from '../../model.ts';
import { backfillTeamwork, snapshotChanges } from './backfill.ts';
import { createTeamworkLimiter, TeamworkClient } from './client.ts';
import { handleTeamworkEvent } from './handler.ts';
import { parseTeamworkDelivery, verifyTeamworkSignature } from './webhook.ts';

export interface TeamworkSourceDeps {
  log: Logger;
  /** Default the global fetch. */
  fetch?: typeof fetch;
  /** Default the system clock. */
  clock?: Clock;
  /** Teamwork API requests per minute for this process. Default 120. */
  requestsPerMinute?: number;
  /** When Teamwork is taken for down (src/http/rate-limiter.ts). Default the limiter's defaults. */
  outage?: OutageOptions;
  /** The budget every worker process shares (QUEUE_BACKEND=redis or postgres). Default: this process's own. */
  budgets?: BudgetStore | null;
  /** Tests: Teamwork's minute scaled down, and a margin added to it (see TeamworkLimiterOptions). */
  windowScale?: number;
  windowMarginMs?: number;
}

export interface TeamworkSource extends Source {
  /** The API client, or null when the API is not configured. */
  readonly client: TeamworkClient | null;
  /** Deliveries acknowledged without events, per event type (`(none)` when unnamed, `(other)` past 64 names). */
  ignoredDeliveries(): Readonly<Record<string, number>>;
}

/** Distinct event names counted one by one in `ignoredDeliveries()`; the rest are counted as `(other)`. */
export const MAX_IGNORED_KINDS = 64;
const OTHER_KIND = '(other)';

export function createTeamworkSource(config: Config, deps: TeamworkSourceDeps): TeamworkSource {
  const log = deps.log;
  const clock = deps.clock ?? systemClock;
  const baseUrl = config.teamworkBaseUrl;
  const apiKey = config.TEAMWORK_API_KEY;
  // Two clients on one budget: the handler's gives a long wait back to the dispatcher
  // (HANDLER_MAX_WAIT_MS), the backfill's waits it out.
  const windowScale = deps.windowScale ?? 1;
  const limiter = createTeamworkLimiter({
    requestsPerMinute: deps.requestsPerMinute ?? config.TEAMWORK_REQUESTS_PER_MINUTE,
    clock,
    windowScale,
    ...(deps.outage !== undefined ? { outage: deps.outage } : {}),
    ...(deps.windowMarginMs !== undefined ? { windowMarginMs: deps.windowMarginMs } : {}),
    ...(deps.budgets != null ? { budgets: deps.budgets } : {}),
  });
  const newClient = (maxWaitMs: number): TeamworkClient | null =>
    apiKey !== undefined && baseUrl !== null ? new TeamworkClient({ baseUrl, apiKey, fetch: deps.fetch, clock, log, limiter, maxWaitMs, windowMs: MINUTE * windowScale }) : null;
  const client = newClient(HANDLER_MAX_WAIT_MS);
  const backfillClient = newClient(BACKFILL_MAX_WAIT_MS);
  const token = config.TEAMWORK_WEBHOOK_TOKEN;
  const allowUnsigned = config.WEBHOOKS_ALLOW_UNSIGNED;
  // Taking deliveries nobody signed (the operator's explicit opt-out): their bodies are never trusted
  // while the API can say what the task really is.
  const acceptsUnsigned = token === undefined && allowUnsigned;
  const ignored = new Map<string, number>();

  const source: TeamworkSource = {
    name: 'teamwork',
    apiConfigured: client !== null,
    acceptsUnsigned,
    client,
    verify(delivery: Delivery): void {
      verifyTeamworkSignature(delivery, token, { allowUnsigned });
    },
    parseWebhook(delivery: Delivery): ParsedDelivery {
      const parsed = parseTeamworkDelivery(delivery);
      if (parsed.events.length === 0) {
        // The name is the sender's choice: past MAX_IGNORED_KINDS names, the rest are counted together.
        const name = parsed.eventType ?? '(none)';
        const key = ignored.has(name) || ignored.size < MAX_IGNORED_KINDS ? name : OTHER_KIND;
        ignored.set(key, (ignored.get(key) ?? 0) + 1);
        // Debug: the server logs (sampled) every delivery acknowledged without events, with its note.
        log.debug({ eventType: parsed.eventType, note: parsed.note }, 'Teamwork delivery acknowledged without events');
      }
      return parsed;
    },
    handle(event: QueueEvent, context: HandlerContext): Promise<Changes> {
      return handleTeamworkEvent(event, { client, baseUrl, trustBody: !acceptsUnsigned }, context);
    },
    ignoredDeliveries(): Readonly<Record<string, number>> {
      return Object.fromEntries(ignored);
    },
    ...(client !== null ? { vendor: limiter } : {}),
  };
  if (backfillClient !== null) {
    source.backfill = (options: BackfillOptions): AsyncIterable<BackfillPage> =>
      backfillTeamwork({ ...options, client: backfillClient, now: () => new Date(clock.now()) });
    source.backfillChanges = snapshotChanges;
  }
  return source;
}

export { TeamworkClient } from './client.ts';
export type { TeamworkClientOptions, TaskPage, TaskWithIncluded } from './client.ts';
export { registerWebhooks, listOurWebhooks, removeOurWebhooks, teamworkWebhookUrl } from './webhooks-admin.ts';
export type { RegisterWebhooksOptions, RegisterWebhooksResult, RegisteredWebhook, WebhookAdminOptions } from './webhooks-admin.ts';
export { TASK_WEBHOOK_EVENTS } from './webhook.ts';
export { SNAPSHOT_EVENT } from './backfill.ts';
