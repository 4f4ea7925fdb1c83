/**
 * The Missive REST API (reference section 2), on the shared HTTP core: the only module that knows
 * Missive's URLs, auth and pagination. One method per endpoint; `walkConversations` follows the
 * `until` paging of the conversation list.
 *
 * Budget (reference section 3): 5 requests in flight, 300 per minute and 900 per 15 minutes, all at
 * once, per token. Every client for one (base URL, token) in the process shares one RateLimiter, so
 * the webhook handler, the backfill and attachment downloads draw from the same budget; with the
 * shared queue that limiter also reserves from the budget `missive` in the queue's engine, which every
 * worker process shares (src/budget/budget-store.ts). A 429 pauses that limiter (and, through the
 * engine, every process's) until Retry-After (seconds or an HTTP date) or X-RateLimit-Reset.
 * Each window is made `windowMarginMs` longer than Missive's: the limiter counts a request when it
 * leaves, Missive when it arrives, and arrival times jitter.
 *
 * Paging rules (reference 2.2, 2.4, pitfall 12). Lists run newest first; the next page is asked for
 * with `until=<the oldest time on this page>`, which is inclusive, so rows at that time come again; and
 * rows that tie at a page's boundary are never split (a page then holds more than `limit` rows). Rows
 * are deduplicated by id. After each page:
 *   fewer rows than `limit`                  -> the last page
 *   a row newer than `until`                 -> the server ignored `until`: stop rather than loop
 *   oldest row older than `since`            -> done (rows older than `since` are not yielded)
 *   every row at one time T (a full page)    -> all rows at T are here (ties are never split), so the
 *                                               next page is `until=T-1`. The reference calls such a page
 *                                               the last one; asking once more costs one request when it
 *                                               is, and saves every older row when it is not (a run of
 *                                               ties as long as a page would otherwise end the walk)
 *   no row not seen before                   -> stop (a server repeating itself)
 *   otherwise                                -> `until=<oldest>`
 * `until` strictly decreases on every page, so a walk always ends.
 */
import type { BudgetStore } from '../../budget/budget-store.ts';
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { systemClock, type Clock } from '../../http/clock.ts';
import { createGuardedFetch } from '../../http/guarded-fetch.ts';
import { HttpClient } from '../../http/http-client.ts';
import { RateLimiter, type OutageOptions } from '../../http/rate-limiter.ts';
import { MINUTE, SECOND } from '../../retry-policy.ts';
import {
  ConversationsResponse,
  MessageListResponse,
  MessagesResponse,
  type MissiveConversation,
  type MissiveMessage,
} from './payloads.ts';

export const DEFAULT_MISSIVE_BASE_URL = 'https://public.missiveapp.com/v1';

/** Missive's documented budget (reference section 3). */
export const MISSIVE_RATE_LIMITS = {
  concurrency: 5,
  windows: [
    { limit: 300, intervalMs: 1 * MINUTE },
    { limit: 900, intervalMs: 15 * MINUTE },
  ],
} as const;

/** Largest page of the conversation list (reference 2.2). */
export const CONVERSATIONS_PAGE_LIMIT = 50;
/** Largest page of a conversation's messages (reference 2.4). */
export const MESSAGES_PAGE_LIMIT = 10;
/** Most ids in one `GET /messages/:id1,:id2` (reference 2.6; as real consumers do). */
export const MESSAGES_BATCH_SIZE = 10;

/** Mailbox filters of the conversation list (reference 2.2). */
export const MAILBOXES = ['inbox', 'all', 'assigned', 'closed', 'snoozed', 'flagged', 'trashed', 'junked', 'drafts'] as const;
export type Mailbox = (typeof MAILBOXES)[number];

/** Which conversations to list: one mailbox, or a label or team id (Missive requires one). */
export type ConversationFilter = { readonly [K in Mailbox]?: true } & {
  readonly shared_label?: string;
  readonly team_inbox?: string;
  readonly team_closed?: string;
  readonly team_all?: string;
  readonly organization?: string;
};

export interface MissiveRateLimitOptions {
  /**
   * Multiplies Missive's window lengths (60 s, 15 min). 1 in production; tests run the same ratios in
   * seconds with e.g. 0.002 (and give the simulator the same scale). Default 1.
   */
  windowScale?: number;
  /**
   * Added to each (scaled) window, ms, to absorb the jitter between a request leaving and arriving.
   * Default 1 s.
   */
  windowMarginMs?: number;
  /** When Missive is taken for down (src/http/rate-limiter.ts). Default the limiter's defaults. */
  outage?: OutageOptions;
  /**
   * The budget every worker process shares (QUEUE_BACKEND=redis or postgres), as `missive`: the
   * windows and the 5 in flight hold for all of them together. Default: this process's own.
   */
  budgets?: BudgetStore | null;
}

export interface MissiveClientOptions {
  /** MISSIVE_API_TOKEN, sent as `Authorization: Bearer <token>`. */
  token: string;
  /** MISSIVE_BASE_URL. Default https://public.missiveapp.com/v1 */
  baseUrl?: string;
  fetch?: typeof fetch;
  clock?: Clock;
  log?: Logger;
  /** The budget to draw from. Default: the process-wide limiter for this base URL and token. */
  limiter?: RateLimiter;
  /** How the process-wide limiter is made, when `limiter` is not given. */
  rateLimit?: MissiveRateLimitOptions;
  /** Per-attempt timeout, ms. Default 30 s. */
  timeoutMs?: number;
  /** Attempts per request for network errors, timeouts, 429 and 5xx. Default 5. */
  maxAttempts?: number;
  /** Longest wait within one call (the HTTP core's `maxWaitMs`). Default 5 min. */
  maxWaitMs?: number;
  /**
   * Hosts (`host` or `host:port`) attachment downloads may reach although private or loopback, and
   * over http (ATTACHMENTS_ALLOWED_HOSTS). Every other download is https to a public address only
   * (src/http/guarded-fetch.ts). Default none.
   */
  attachmentHosts?: readonly string[];
}

export interface ConversationPage {
  /** New rows (not seen earlier in the walk) with `last_activity_at >= since`, newest first. */
  conversations: MissiveConversation[];
  /** The `until` this page was asked with (unix seconds), or null for the first page. */
  until: number | null;
  /** Clock time (ms) just before the page was requested: its state is at least this recent. */
  requestedAt: number;
}

export interface WalkOptions {
  /** Stop at rows older than this (last_activity_at). Default: walk to the end. */
  since?: Date;
  /** Rows per page, at most 50. Default 50. */
  limit?: number;
  signal?: AbortSignal;
}

const sharedLimiters = new Map<string, RateLimiter>();

/**
 * The limiter every Missive client of this process with the same base URL, token and scale shares.
 * Made on first use.
 */
export function sharedMissiveLimiter(baseUrl: string, token: string, options: MissiveRateLimitOptions = {}, clock: Clock = systemClock): RateLimiter {
  const scale = options.windowScale ?? 1;
  const margin = options.windowMarginMs ?? 1 * SECOND;
  const key = JSON.stringify([baseUrl, token, scale, margin, options.outage ?? null, options.budgets?.id ?? null]);
  let limiter = sharedLimiters.get(key);
  if (limiter === undefined) {
    limiter = createMissiveLimiter(
      { windowScale: scale, windowMarginMs: margin, ...(options.outage !== undefined ? { outage: options.outage } : {}), ...(options.budgets != null ? { budgets: options.budgets } : {}) },
      clock,
    );
    sharedLimiters.set(key, limiter);
  }
  return limiter;
}

/** A fresh limiter with Missive's budget (see MissiveRateLimitOptions). */
export function createMissiveLimiter(options: MissiveRateLimitOptions = {}, clock: Clock = systemClock): RateLimiter {
  const scale = options.windowScale ?? 1;
  const margin = options.windowMarginMs ?? 1 * SECOND;
  if (!(scale > 0)) throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Missive windowScale must be above 0, got ${scale}`);
  return new RateLimiter({
    concurrency: MISSIVE_RATE_LIMITS.concurrency,
    windows: MISSIVE_RATE_LIMITS.windows.map((w) => ({ limit: w.limit, intervalMs: Math.ceil(w.intervalMs * scale + margin) })),
    clock,
    outage: options.outage ?? {},
    ...(options.budgets != null ? { shared: { store: options.budgets, name: 'missive' } } : {}),
  });
}

export class MissiveClient {
  private readonly http: HttpClient;
  /** For attachment downloads: the same budget, through the SSRF-guarded fetch. */
  private readonly downloads: HttpClient;
  private readonly clock: Clock;
  readonly limiter: RateLimiter;

  constructor(options: MissiveClientOptions) {
    const baseUrl = (options.baseUrl ?? DEFAULT_MISSIVE_BASE_URL).replace(/\/+$/, '');
    this.clock = options.clock ?? systemClock;
    this.limiter = options.limiter ?? sharedMissiveLimiter(baseUrl, options.token, options.rateLimit, this.clock);
    this.http = new HttpClient({
      vendor: 'missive',
      baseUrl,
      headers: { authorization: `Bearer ${options.token}` },
      limiter: this.limiter,
      clock: this.clock,
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      ...(options.log !== undefined ? { log: options.log } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
      ...(options.maxWaitMs !== undefined ? { maxWaitMs: options.maxWaitMs } : {}),
    });
    this.downloads = new HttpClient({
      vendor: 'missive',
      baseUrl,
      limiter: this.limiter,
      clock: this.clock,
      fetch: createGuardedFetch({ allowedHosts: options.attachmentHosts ?? [] }),
      ...(options.log !== undefined ? { log: options.log } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
      ...(options.maxWaitMs !== undefined ? { maxWaitMs: options.maxWaitMs } : {}),
    });
  }

  /** One page of `GET /conversations`, newest first. May hold more than `limit` rows (ties). */
  async listConversations(filter: ConversationFilter, options: { until?: number; limit?: number; signal?: AbortSignal } = {}): Promise<MissiveConversation[]> {
    const query: Record<string, string | number | boolean | undefined> = { ...filter, limit: options.limit ?? CONVERSATIONS_PAGE_LIMIT, until: options.until };
    const response = await this.http.get('/conversations', { query, schema: ConversationsResponse, signal: options.signal });
    return response.data.conversations;
  }

  /**
   * Walks the conversation list newest first (see the header for the paging rules), one page at a
   * time, each row once.
   */
  async *walkConversations(filter: ConversationFilter, options: WalkOptions = {}): AsyncGenerator<ConversationPage> {
    const limit = Math.min(options.limit ?? CONVERSATIONS_PAGE_LIMIT, CONVERSATIONS_PAGE_LIMIT);
    const sinceSeconds = options.since === undefined ? null : options.since.getTime() / 1000;
    const seen = new Set<string>();
    let until: number | null = null;
    for (;;) {
      const requestedAt = this.clock.now();
      const rows = await this.listConversations(filter, { limit, signal: options.signal, ...(until !== null ? { until } : {}) });
      const fresh = rows.filter((row) => !seen.has(row.id));
      for (const row of fresh) seen.add(row.id);
      const inRange = sinceSeconds === null ? fresh : fresh.filter((row) => row.last_activity_at === null || row.last_activity_at === undefined || row.last_activity_at >= sinceSeconds);
      yield { conversations: inRange, until, requestedAt };

      const next = nextUntil(rows.map((row) => row.last_activity_at), rows.length, limit, fresh.length, until, sinceSeconds);
      if (next === null) return;
      until = next;
    }
  }

  /** `GET /conversations/:id`; null when Missive answers 404 (deleted, or no longer visible to the token). */
  async getConversation(id: string, signal?: AbortSignal): Promise<MissiveConversation | null> {
    try {
      const response = await this.http.get(`/conversations/${encodeURIComponent(id)}`, { schema: ConversationsResponse, signal });
      return response.data.conversations[0] ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /**
   * Every message of a conversation (summaries: headers and preview, no body), newest first, each
   * once. Drafts are not listed by Missive.
   */
  async listConversationMessages(id: string, signal?: AbortSignal): Promise<MissiveMessage[]> {
    const path = `/conversations/${encodeURIComponent(id)}/messages`;
    const seen = new Map<string, MissiveMessage>();
    let until: number | null = null;
    for (;;) {
      const response = await this.http.get(path, {
        query: { limit: MESSAGES_PAGE_LIMIT, until: until ?? undefined },
        schema: MessageListResponse,
        signal,
      });
      const rows = response.data.messages;
      let fresh = 0;
      for (const row of rows) {
        if (seen.has(row.id)) continue;
        seen.set(row.id, row);
        fresh++;
      }
      const next = nextUntil(rows.map((row) => row.delivered_at ?? row.created_at), rows.length, MESSAGES_PAGE_LIMIT, fresh, until, null);
      if (next === null) break;
      until = next;
    }
    return [...seen.values()];
  }

  /** `GET /messages/:id` (headers, body, attachments, conversation); null on 404. */
  async getMessage(id: string, signal?: AbortSignal): Promise<MissiveMessage | null> {
    try {
      const response = await this.http.get(`/messages/${encodeURIComponent(id)}`, { schema: MessagesResponse, signal });
      return response.data.messages.find((m) => m.id === id) ?? response.data.messages[0] ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /**
   * Full messages for `ids`, with `GET /messages/:id1,:id2,...` (at most 10 ids per request, up to 5
   * requests at once). Ids Missive does not return are left out; the order is Missive's.
   */
  async getMessages(ids: readonly string[], signal?: AbortSignal): Promise<MissiveMessage[]> {
    const unique = [...new Set(ids)];
    const batches: string[][] = [];
    for (let i = 0; i < unique.length; i += MESSAGES_BATCH_SIZE) batches.push(unique.slice(i, i + MESSAGES_BATCH_SIZE));
    const results = await mapPool(batches, MISSIVE_RATE_LIMITS.concurrency, (batch) => this.getMessageBatch(batch, signal));
    return results.flat();
  }

  /**
   * Downloads an attachment from its signed URL: a plain GET without our token (reference 4), at most
   * `maxBytes` (CONN_ERR_HTTP_BAD_RESPONSE when over). An expired URL answers 403 (CONN_ERR_HTTP_AUTH).
   * Only https to public addresses, or a host in `attachmentHosts`, on every redirect too; anything
   * else is CONN_ERR_ATTACHMENT_URL_REFUSED before a connection is opened.
   */
  async downloadAttachment(url: string, maxBytes: number, signal?: AbortSignal): Promise<{ body: Buffer; contentType: string | null }> {
    const response = await this.downloads.download(url, { maxBytes, absolute: true, ...(signal !== undefined ? { signal } : {}) });
    return { body: response.body, contentType: response.headers.get('content-type') };
  }

  private async getMessageBatch(batch: string[], signal?: AbortSignal): Promise<MissiveMessage[]> {
    const path = `/messages/${batch.map((id) => encodeURIComponent(id)).join(',')}`;
    try {
      const response = await this.http.get(path, { schema: MessagesResponse, signal });
      const wanted = new Set(batch);
      return response.data.messages.filter((m) => wanted.has(m.id));
    } catch (err) {
      // A URL too long for something on the way (414): ask for each half.
      if (err instanceof ConnectorError && err.status === 414 && batch.length > 1) {
        const half = Math.ceil(batch.length / 2);
        return [...(await this.getMessageBatch(batch.slice(0, half), signal)), ...(await this.getMessageBatch(batch.slice(half), signal))];
      }
      // Whether one unknown id fails the whole batch is not documented: ask for each on its own.
      if (isNotFound(err) && batch.length > 1) {
        const singles = await mapPool(batch, MISSIVE_RATE_LIMITS.concurrency, (id) => this.getMessage(id, signal));
        return singles.filter((m): m is MissiveMessage => m !== null);
      }
      if (isNotFound(err)) return [];
      throw err;
    }
  }
}

/**
 * The `until` of the next page, or null when the walk is over (the rules are in the header).
 * @param times the page's row times, unix seconds (null for rows without one)
 */
export function nextUntil(
  times: ReadonlyArray<number | null | undefined>,
  rows: number,
  limit: number,
  fresh: number,
  until: number | null,
  since: number | null,
): number | null {
  const known = times.filter((t): t is number => typeof t === 'number');
  if (rows < limit || known.length === 0) return null;
  const oldest = Math.min(...known);
  const newest = Math.max(...known);
  if (until !== null && newest > until) return null;
  if (since !== null && oldest < since) return null;
  if (oldest === newest) return Math.ceil(oldest) - 1;
  if (fresh === 0) return null;
  return oldest;
}

function isNotFound(err: unknown): boolean {
  return err instanceof ConnectorError && err.code === 'CONN_ERR_HTTP_NOT_FOUND';
}

/**
 * `fn` over `items` with at most `concurrency` running; results in input order. After a failure no
 * new item starts, and the first failure is thrown once the running ones have settled.
 */
export async function mapPool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
  return results;
}
