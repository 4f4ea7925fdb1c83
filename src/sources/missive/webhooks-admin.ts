/**
 * Missive webhooks made through the API (`/v1/hooks`), and the manual steps for when that is not
 * possible.
 *
 * The hooks API is undocumented (reference missive.md §1.3, confidence L): public code creates hooks
 * with `POST /v1/hooks` and `{"hooks": {"type", "url"}}`, reads `hooks.id` back, and deletes with
 * `DELETE /v1/hooks/{id}` (404 = already gone). Whether it accepts a signing secret is not known; we
 * send MISSIVE_WEBHOOK_SECRET as `hooks.secret`. Missive validates a webhook URL with a request before
 * saving it, so a hook that would arrive unsigned at a connector expecting signatures is refused at
 * creation (our endpoint answers 401), and the command falls back to the manual rule. The documented
 * way, a rule with a Webhook action made in Missive's settings (§1.1), always works: `manualSteps`.
 *
 * The calls go through the shared HTTP core and the process-wide Missive budget, like every Missive
 * request. (Teamwork's counterpart is sources/teamwork/webhooks-admin.ts.)
 */
import { z } from 'zod';
import { HttpClient } from '../../http/http-client.ts';
import type { Logger } from '../../log.ts';
import { SECOND } from '../../retry-policy.ts';
import { DEFAULT_MISSIVE_BASE_URL, sharedMissiveLimiter } from './client.ts';
import { sameUrl } from '../urls.ts';

/** The path our server receives Missive deliveries on. */
export const MISSIVE_WEBHOOK_PATH = '/webhooks/missive';

/**
 * The hook types registered: the messages themselves, and the conversation changes an email row shows
 * (labels, assignees, closed state). Comments and team changes carry nothing we store.
 */
export const MISSIVE_HOOK_TYPES = ['incoming_email', 'outgoing_email', 'label_change', 'conversation_assignee_change', 'conversation_closed', 'conversation_reopened'] as const;

/** What the UI calls each hook type, for the manual steps. */
const RULE_TRIGGERS: Record<(typeof MISSIVE_HOOK_TYPES)[number], string> = {
  incoming_email: 'Incoming messages (email)',
  outgoing_email: 'Outgoing messages (email)',
  label_change: 'User actions > Label change',
  conversation_assignee_change: 'User actions > Assignee changed',
  conversation_closed: 'User actions > Conversation closed',
  conversation_reopened: 'User actions > Conversation reopened',
};

/** Our endpoint for a public base URL; a URL already ending in the path is taken as it is. */
export function missiveWebhookUrl(publicUrl: string): string {
  const base = publicUrl.trim().replace(/\/+$/, '');
  return base.endsWith(MISSIVE_WEBHOOK_PATH) ? base : `${base}${MISSIVE_WEBHOOK_PATH}`;
}

export interface MissiveHook {
  id: string;
  type: string;
  url: string;
}

const HookRow = z.looseObject({ id: z.union([z.string(), z.number()]).transform(String), type: z.string().default(''), url: z.string().default('') });
const HookResponse = z.looseObject({ hooks: HookRow });
const HookListResponse = z.looseObject({ hooks: z.union([z.array(HookRow), HookRow.transform((h) => [h])]).default([]) });

export interface MissiveHooksApiOptions {
  /** MISSIVE_API_TOKEN. */
  token: string;
  /** MISSIVE_BASE_URL. Default https://public.missiveapp.com/v1 */
  baseUrl?: string;
  fetch?: typeof fetch;
  log?: Logger;
  /** Per-attempt timeout, ms. Default 30 s (creating waits for Missive's validation request). */
  timeoutMs?: number;
  /** Attempts for network errors, 429 and 5xx. Default 3. */
  maxAttempts?: number;
}

export class MissiveHooksApi {
  private readonly http: HttpClient;

  constructor(options: MissiveHooksApiOptions) {
    const baseUrl = (options.baseUrl ?? DEFAULT_MISSIVE_BASE_URL).replace(/\/+$/, '');
    this.http = new HttpClient({
      vendor: 'missive',
      baseUrl,
      headers: { authorization: `Bearer ${options.token}` },
      limiter: sharedMissiveLimiter(baseUrl, options.token),
      timeoutMs: options.timeoutMs ?? 30 * SECOND,
      maxAttempts: options.maxAttempts ?? 3,
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      ...(options.log !== undefined ? { log: options.log } : {}),
    });
  }

  /** `GET /hooks`: the hooks made through the API (rules made in the UI are not listed). */
  async list(signal?: AbortSignal): Promise<MissiveHook[]> {
    const response = await this.http.get('/hooks', { schema: HookListResponse, signal });
    return response.data.hooks;
  }

  /** `POST /hooks`. Not repeated after a timeout or 5xx (it may exist): list before trying again. */
  async create(hook: { type: string; url: string; secret?: string }, signal?: AbortSignal): Promise<MissiveHook> {
    const body: Record<string, string> = { type: hook.type, url: hook.url };
    if (hook.secret !== undefined) body.secret = hook.secret;
    const response = await this.http.request('POST', '/hooks', { body: { hooks: body }, schema: HookResponse, signal });
    return response.data.hooks;
  }

  /** `DELETE /hooks/{id}`. False when it was already gone (404). */
  async delete(id: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.http.request('DELETE', `/hooks/${encodeURIComponent(id)}`, { signal });
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'CONN_ERR_HTTP_NOT_FOUND') return false;
      throw err;
    }
  }
}


/** The API hooks that post to our endpoint. */
export async function listOurMissiveHooks(api: MissiveHooksApi, publicUrl: string, signal?: AbortSignal): Promise<MissiveHook[]> {
  const url = missiveWebhookUrl(publicUrl);
  return (await api.list(signal)).filter((hook) => sameUrl(hook.url, url));
}

export interface RegisterMissiveHooksResult {
  created: MissiveHook[];
  existing: MissiveHook[];
  /** The first type Missive refused to create, and why; the types after it were not tried. */
  refused?: { type: string; error: unknown };
}

/**
 * Makes one hook per type for our endpoint, skipping types that already have one. Stops at the first
 * refusal and reports it with what was done before it. Listing failures throw.
 */
export async function registerMissiveHooks(
  api: MissiveHooksApi,
  options: { publicUrl: string; secret?: string; types?: readonly string[]; signal?: AbortSignal },
): Promise<RegisterMissiveHooksResult> {
  const url = missiveWebhookUrl(options.publicUrl);
  const ours = await listOurMissiveHooks(api, options.publicUrl, options.signal);
  const result: RegisterMissiveHooksResult = { created: [], existing: [] };
  for (const type of options.types ?? MISSIVE_HOOK_TYPES) {
    const found = ours.find((hook) => hook.type === type);
    if (found !== undefined) {
      result.existing.push(found);
      continue;
    }
    try {
      result.created.push(await api.create({ type, url, ...(options.secret !== undefined ? { secret: options.secret } : {}) }, options.signal));
    } catch (err) {
      result.refused = { type, error: err };
      break;
    }
  }
  return result;
}

/** Deletes every API hook that posts to our endpoint; returns the ones removed. */
export async function removeOurMissiveHooks(api: MissiveHooksApi, publicUrl: string, signal?: AbortSignal): Promise<MissiveHook[]> {
  const removed: MissiveHook[] = [];
  for (const hook of await listOurMissiveHooks(api, publicUrl, signal)) {
    await api.delete(hook.id, signal);
    removed.push(hook);
  }
  return removed;
}

/** The steps to create the webhook rule by hand in Missive (the documented way; reference §1.1). */
export function missiveManualSteps(publicUrl: string, secretSet: boolean): string[] {
  const url = missiveWebhookUrl(publicUrl);
  return [
    'In Missive (as an organization admin on the Productive or Business plan): Settings > Rules > New rule.',
    `Trigger: one rule per trigger below (or one rule per trigger group): ${MISSIVE_HOOK_TYPES.map((t) => RULE_TRIGGERS[t]).join('; ')}.`,
    'Conditions: none (or narrow to the inboxes and teams you want mirrored).',
    `Action: Webhook, URL ${url}`,
    secretSet
      ? 'Secret: paste the value of MISSIVE_WEBHOOK_SECRET, exactly; deliveries carry X-Hook-Signature: sha256=<HMAC> and the connector refuses any other.'
      : 'Secret: generate one (e.g. `openssl rand -hex 32`), paste it into the rule AND set MISSIVE_WEBHOOK_SECRET to it, then restart the connector; without it, deliveries are not verified.',
    'Organization rules fire only on conversations shared with the organization, personal rules only on your private ones: create the rule in both places if you need both.',
    'Save: Missive sends a validation request first, so the connector must be running and reachable at that URL.',
  ];
}
