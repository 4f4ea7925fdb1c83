/**
 * The Teamwork API client: the only code that knows Teamwork's URLs, auth and pagination. One method
 * per endpoint, on the shared HTTP core (timeouts, retries on network/429/5xx, Retry-After).
 *
 * Auth: HTTP Basic with the API key as the user name and "x" as the password (reference §4).
 *
 * Rate limiting, in three layers:
 * 1. Proactive: a `RateLimiter` with a budget of `requestsPerMinute` (default 120) shared by every
 *    request this client makes (Teamwork Projects does not publish its limit; Desk's is 120/min), and,
 *    with the shared queue, by every worker process (the budget `teamwork` in the queue's engine,
 *    src/budget/budget-store.ts).
 * 2. Adaptive: every answer's `x-ratelimit-remaining` is read. At or below the low-water mark the
 *    limiter is paused so the rest of the budget is spread over what is left of the window: until
 *    `x-ratelimit-reset` divided by the requests remaining, or a minute when Teamwork gives no reset.
 * 3. Reactive: a 429 pauses everyone until Retry-After / X-RateLimit-Reset (or 60 s), in the core
 *    (every process, with a shared budget: layers 2 and 3 write their pauses to the engine).
 *
 * Listing tasks changed since an instant walks `updatedAfter` forward instead of paging by offset
 * alone: each page is asked for with `updatedAfter` = the newest `updatedAt` seen minus one second and
 * page 1, ordered by `updatedat` ascending. A task edited during the walk moves to the end of the order;
 * with plain offsets that shifts every later task one place back and the task at the page boundary is
 * never seen. Walking the key forward cannot skip one, keeps every query far below Teamwork's
 * 50,000-record cap per query (reference §2.4), and repeats only the tasks of the boundary second
 * (harmless: events are idempotent, and the backfill drops repeats). When a whole page shares one
 * second the walk falls back to the next page number for that key. It ends when `hasMore` is false.
 */
import { Buffer } from 'node:buffer';
import type { BudgetStore } from '../../budget/budget-store.ts';
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { MINUTE, SECOND } from '../../retry-policy.ts';
import { ApiError, HttpClient, RateLimiter, parseRateLimitReset, systemClock, type Clock, type HttpResponse, type OutageOptions, type RequestOptions } from '../../http/index.ts';
import {
  V1TaskResponse,
  V3TaskListResponse,
  V3TaskResponse,
  WebhookCreateResponse,
  WebhookListResponse,
  type V1TodoItem,
  type V3Included,
  type V3Task,
  type Webhook,
} from './payloads.ts';
import { parseInstant } from './map.ts';

/** The side-loads every task request asks for: enough to name the project, list, people and tags. */
export const TASK_INCLUDES = 'users,tags,tasklists,projects';
/** Teamwork's largest v3 page (reference §2.4). */
export const MAX_PAGE_SIZE = 500;
/** v3 refuses `updatedAfter` before this instant (reference §2.2). */
export const UPDATED_AFTER_FLOOR = new Date('2007-10-01T00:00:00Z');

export interface TeamworkClientOptions {
  /** `https://acme.teamwork.com` (or `.eu.teamwork.com`, or a proxy). */
  baseUrl: string;
  /** A Teamwork API key; sent as the Basic-auth user name. */
  apiKey: string;
  /** Requests per minute this client may start. Default 120. Ignored when `limiter` is given. */
  requestsPerMinute?: number;
  /** A limiter to share with other clients of the same site. Default: one built from `requestsPerMinute`. */
  limiter?: RateLimiter;
  /**
   * `x-ratelimit-remaining` at or below which requests are spread out over the rest of the window.
   * Default: 5% of `x-ratelimit-limit`, at least 2.
   */
  lowRemaining?: number;
  /** Tasks per page when listing, 1-500. Default 500. */
  pageSize?: number;
  /** Per-attempt timeout, ms. Default 30 s (the core's). */
  timeoutMs?: number;
  /** Attempts per request for network errors, 429 and 5xx, including the first. Default 5 (the core's). */
  maxAttempts?: number;
  /** Pause after a 429 that says nothing about when to come back, ms. Default 60 s. */
  defaultRateLimitPauseMs?: number;
  /** Longest wait within one call (the HTTP core's `maxWaitMs`). Default 5 min. */
  maxWaitMs?: number;
  /** Teamwork's window, for pacing when an answer gives no reset (layer 2 above), ms. Default 1 min (tests scale it). */
  windowMs?: number;
  clock?: Clock;
  fetch?: typeof fetch;
  log?: Logger;
}

/** One page of a task listing, as Teamwork sent it. */
export interface TaskPage {
  tasks: V3Task[];
  /** Side-loaded records, keyed by string id. */
  included: V3Included;
  /** The page number asked for (1-based) within the current `updatedAfter` key. */
  page: number;
  hasMore: boolean;
}

/** A single task with its side-loads. */
export interface TaskWithIncluded {
  task: V3Task;
  included: V3Included;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface NewWebhook {
  /** `TASK.CREATED`, ... */
  event: string;
  /** Where Teamwork posts. */
  url: string;
  /** The signing token (TEAMWORK_WEBHOOK_TOKEN); omitted for an unsigned hook. */
  token?: string;
}

export interface TeamworkLimiterOptions {
  /** Requests per minute. Default 120. */
  requestsPerMinute?: number;
  clock?: Clock;
  /** When Teamwork is taken for down (src/http/rate-limiter.ts). Default the limiter's defaults. */
  outage?: OutageOptions;
  /** Multiplies the minute; tests run the same budget in seconds (and give the simulator the same scale). Default 1. */
  windowScale?: number;
  /**
   * Added to the (scaled) window, ms: the limiter counts a request when it leaves, Teamwork when it
   * arrives, and arrival times jitter (more so through a shared budget's engine). Default 0: Teamwork
   * publishes no limit, so TEAMWORK_REQUESTS_PER_MINUTE is already the operator's margin below it.
   */
  windowMarginMs?: number;
  /** The budget every worker process shares (QUEUE_BACKEND=redis or postgres), as `teamwork`. Default: none. */
  budgets?: BudgetStore | null;
}

/** A limiter with Teamwork's budget (`requestsPerMinute`, default 120) that tells when Teamwork is down. */
export function createTeamworkLimiter(options: TeamworkLimiterOptions = {}): RateLimiter {
  const scale = options.windowScale ?? 1;
  if (!(scale > 0)) throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Teamwork windowScale must be above 0, got ${scale}`);
  return new RateLimiter({
    windows: [{ limit: options.requestsPerMinute ?? 120, intervalMs: Math.ceil(MINUTE * scale + (options.windowMarginMs ?? 0)) }],
    clock: options.clock ?? systemClock,
    outage: options.outage ?? {},
    ...(options.budgets != null ? { shared: { store: options.budgets, name: 'teamwork' } } : {}),
  });
}

export class TeamworkClient {
  readonly baseUrl: string;
  readonly limiter: RateLimiter;
  private readonly http: HttpClient;
  private readonly clock: Clock;
  private readonly pageSize: number;
  private readonly lowRemaining: number | undefined;
  private readonly windowMs: number;

  constructor(options: TeamworkClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.clock = options.clock ?? systemClock;
    this.limiter = options.limiter ?? createTeamworkLimiter({ requestsPerMinute: options.requestsPerMinute, clock: this.clock });
    this.windowMs = options.windowMs ?? MINUTE;
    this.pageSize = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(options.pageSize ?? MAX_PAGE_SIZE)));
    this.lowRemaining = options.lowRemaining;
    const auth = Buffer.from(`${options.apiKey}:x`, 'utf8').toString('base64');
    this.http = new HttpClient({
      vendor: 'teamwork',
      baseUrl: this.baseUrl,
      headers: { authorization: `Basic ${auth}` },
      limiter: this.limiter,
      clock: this.clock,
      timeoutMs: options.timeoutMs,
      maxAttempts: options.maxAttempts,
      defaultRateLimitPauseMs: options.defaultRateLimitPauseMs,
      maxWaitMs: options.maxWaitMs,
      fetch: options.fetch,
      log: options.log,
    });
  }

  /**
   * `GET /projects/api/v3/tasks/{id}.json` with the side-loads. A deleted task comes back (200,
   * `status: "deleted"`); null when Teamwork answers 404.
   */
  async getTask(id: string, options: CallOptions = {}): Promise<TaskWithIncluded | null> {
    const response = await this.orNull(
      this.request('GET', `/projects/api/v3/tasks/${encodeURIComponent(id)}.json`, { query: { include: TASK_INCLUDES }, schema: V3TaskResponse, signal: options.signal }),
    );
    if (response === null) return null;
    return { task: response.data.task, included: response.data.included ?? {} };
  }

  /** `GET /tasks/{id}.json` (v1): the `todo-item`, or null on 404 (v1 may 404 a deleted task). */
  async getTaskV1(id: string, options: CallOptions = {}): Promise<V1TodoItem | null> {
    const response = await this.orNull(this.request('GET', `/tasks/${encodeURIComponent(id)}.json`, { schema: V1TaskResponse, signal: options.signal }));
    return response === null ? null : response.data['todo-item'];
  }

  /**
   * Every task updated at or after `since`, completed ones, those in completed lists and archived
   * projects included, oldest update first, page by page (see the header comment for the walk).
   */
  async *listTasksUpdatedSince(since: Date, options: CallOptions = {}): AsyncGenerator<TaskPage> {
    let after = clampSince(since);
    let page = 1;
    for (;;) {
      const result = await this.listPage({ updatedAfter: rfc3339(after), orderBy: 'updatedat', orderMode: 'asc' }, page, options.signal);
      yield result;
      if (!result.hasMore) return;
      const newest = newestUpdate(result.tasks);
      const next = newest === null ? null : new Date(newest.getTime() - SECOND);
      if (next !== null && next.getTime() > after.getTime()) {
        after = next;
        page = 1;
      } else {
        page += 1;
      }
    }
  }

  /**
   * Tasks deleted at or after `since` (`deletedAfter`, reference §2.2). Whether Teamwork lists deleted
   * tasks this way is not confirmed; a 400/422 for the filter surfaces as CONN_ERR_HTTP_CLIENT and the
   * backfill treats that as "not supported".
   */
  async *listTasksDeletedSince(since: Date, options: CallOptions = {}): AsyncGenerator<TaskPage> {
    for (let page = 1; ; page++) {
      const result = await this.listPage({ deletedAfter: rfc3339(clampSince(since)), orderBy: 'updatedat', orderMode: 'asc' }, page, options.signal);
      yield result;
      if (!result.hasMore) return;
    }
  }

  /** `GET /projects/api/v1/webhooks.json`: every hook on the site. */
  async listWebhooks(options: CallOptions = {}): Promise<Webhook[]> {
    const response = await this.request('GET', '/projects/api/v1/webhooks.json', { schema: WebhookListResponse, signal: options.signal });
    return response.data.webhooks;
  }

  /**
   * `POST /projects/api/v1/webhooks.json` with a v2 JSON hook for one event. Returns the new hook's id.
   * Not repeated after a timeout or 5xx (it might have been created); list and compare before retrying.
   */
  async createWebhook(hook: NewWebhook, options: CallOptions = {}): Promise<string> {
    const webhook: Record<string, string> = { event: hook.event, url: hook.url, version: '2', contentType: 'application/json' };
    if (hook.token !== undefined) webhook.token = hook.token;
    const response = await this.request('POST', '/projects/api/v1/webhooks.json', { body: { webhook }, schema: WebhookCreateResponse, signal: options.signal });
    return String(response.data.webhook?.id ?? response.data.id).trim();
  }

  /** `DELETE /projects/api/v1/webhooks/{id}.json`. False when the hook was already gone (404). */
  async deleteWebhook(id: string, options: CallOptions = {}): Promise<boolean> {
    const response = await this.orNull(this.request('DELETE', `/projects/api/v1/webhooks/${encodeURIComponent(id)}.json`, { signal: options.signal }));
    return response !== null;
  }

  // -------------------------------------------------------------------------------------------------

  private async listPage(filter: Record<string, string>, page: number, signal: AbortSignal | undefined): Promise<TaskPage> {
    const response = await this.request('GET', '/projects/api/v3/tasks.json', {
      query: {
        ...filter,
        includeCompletedTasks: true,
        showCompletedLists: true,
        includeArchivedProjects: true,
        include: TASK_INCLUDES,
        page,
        pageSize: this.pageSize,
      },
      schema: V3TaskListResponse,
      signal,
    });
    const hasMore = response.data.meta?.page?.hasMore;
    return { tasks: response.data.tasks, included: response.data.included ?? {}, page, hasMore: hasMore === true || hasMore === 'true' };
  }

  /** Every request goes through here, so that every answer's rate-limit headers are read. */
  private async request<T>(method: string, path: string, options: RequestOptions<T>): Promise<HttpResponse<T>> {
    const response = await this.http.request(method, path, options);
    this.observeRateLimit(response.headers);
    return response;
  }

  /** Layer 2 of the header comment: spread the rest of the budget when `x-ratelimit-remaining` is low. */
  private observeRateLimit(headers: Headers): void {
    const remaining = Number(headers.get('x-ratelimit-remaining') ?? headers.get('x-rate-limit-remaining') ?? NaN);
    if (!Number.isFinite(remaining) || remaining < 0) return;
    const limit = Number(headers.get('x-ratelimit-limit') ?? headers.get('x-rate-limit-limit') ?? NaN);
    const lowWater = this.lowRemaining ?? Math.max(2, Number.isFinite(limit) ? Math.floor(limit * 0.05) : 2);
    if (remaining > lowWater) return;
    const now = this.clock.now();
    const windowLeftMs = parseRateLimitReset(headers.get('x-ratelimit-reset') ?? headers.get('x-rate-limit-reset'), now) ?? this.windowMs;
    this.limiter.pauseUntil(now + Math.ceil(windowLeftMs / (remaining + 1)));
  }

  private async orNull<T>(pending: Promise<T>): Promise<T | null> {
    try {
      return await pending;
    } catch (err) {
      if (err instanceof ApiError && err.code === 'CONN_ERR_HTTP_NOT_FOUND') return null;
      throw err;
    }
  }
}

/** RFC 3339 in UTC with whole seconds, as the SDK sends filters: `2026-11-05T10:00:00Z`. */
export function rfc3339(date: Date): string {
  return new Date(Math.floor(date.getTime() / SECOND) * SECOND).toISOString().replace('.000Z', 'Z');
}

/**
 * The `updatedAfter`/`deletedAfter` value for "at or after `since`": one second earlier, because the
 * filter may be strict (`>`) and Teamwork's times have whole seconds; never before the v3 floor.
 */
function clampSince(since: Date): Date {
  if (Number.isNaN(since.getTime())) throw new ConnectorError('CONN_ERR_INTERNAL', 'Teamwork: listing tasks since an invalid date');
  const inclusive = since.getTime() - SECOND;
  return inclusive < UPDATED_AFTER_FLOOR.getTime() ? UPDATED_AFTER_FLOOR : new Date(inclusive);
}

/** The newest `updatedAt` among tasks, or null when none has one. */
export function newestUpdate(tasks: readonly V3Task[]): Date | null {
  let newest: Date | null = null;
  for (const task of tasks) {
    const at = parseInstant(task.updatedAt);
    if (at !== null && (newest === null || at.getTime() > newest.getTime())) newest = at;
  }
  return newest;
}
