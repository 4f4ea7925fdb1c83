/**
 * Webhook registration as library functions; the `register-webhooks` CLI command is a thin layer over
 * these, and the alerts' periodic look at the registrations (shown in the console) lists through them.
 *
 * Teamwork registers one event per hook (reference §1.1), so "our webhooks" are the hooks whose URL is
 * our endpoint, one per task event. Registering is idempotent: an event that already has a hook for our
 * URL is left alone (its token cannot be read back, so a changed TEAMWORK_WEBHOOK_TOKEN needs
 * `removeOurWebhooks` first). Hooks for other URLs are never touched.
 */
import type { TeamworkClient } from './client.ts';
import type { Webhook } from './payloads.ts';
import { TASK_WEBHOOK_EVENTS } from './webhook.ts';
import { sameUrl } from '../urls.ts';

/** The path our server receives Teamwork deliveries on. */
export const TEAMWORK_WEBHOOK_PATH = '/webhooks/teamwork';

/**
 * Our endpoint for a public base URL: `https://example.com` -> `https://example.com/webhooks/teamwork`.
 * A URL that already ends in the path is taken as it is.
 */
export function teamworkWebhookUrl(publicUrl: string): string {
  const base = publicUrl.trim().replace(/\/+$/, '');
  return base.endsWith(TEAMWORK_WEBHOOK_PATH) ? base : `${base}${TEAMWORK_WEBHOOK_PATH}`;
}


export interface WebhookAdminOptions {
  client: TeamworkClient;
  /** PUBLIC_URL (our base URL) or the full endpoint URL. */
  publicUrl: string;
  signal?: AbortSignal;
}

export interface RegisterWebhooksOptions extends WebhookAdminOptions {
  /** TEAMWORK_WEBHOOK_TOKEN; Teamwork then signs every delivery with it. Omit for unsigned hooks. */
  token?: string;
  /** Events to register. Default: the eight task events. */
  events?: readonly string[];
}

export interface RegisteredWebhook {
  id: string;
  event: string;
  url: string;
  /** Teamwork's `status` of the hook when it says (`active`; `inactive` once Teamwork turned it off). */
  status?: string;
}

export interface RegisterWebhooksResult {
  /** Hooks made by this call. */
  created: RegisteredWebhook[];
  /** Hooks that were already there for our URL and one of the events. */
  existing: RegisteredWebhook[];
}

function registered(hook: Webhook): RegisteredWebhook {
  return { id: String(hook.id).trim(), event: hook.event.toUpperCase(), url: hook.url, ...(hook.status === undefined ? {} : { status: hook.status }) };
}

/** The hooks that post to our endpoint. */
export async function listOurWebhooks(options: WebhookAdminOptions): Promise<RegisteredWebhook[]> {
  const url = teamworkWebhookUrl(options.publicUrl);
  const hooks = await options.client.listWebhooks({ signal: options.signal });
  return hooks.filter((hook) => sameUrl(hook.url, url)).map(registered);
}

/** Makes one hook per event for our endpoint, skipping events that already have one. */
export async function registerWebhooks(options: RegisterWebhooksOptions): Promise<RegisterWebhooksResult> {
  const url = teamworkWebhookUrl(options.publicUrl);
  const ours = await listOurWebhooks(options);
  const result: RegisterWebhooksResult = { created: [], existing: [] };
  const events = [...new Set((options.events ?? TASK_WEBHOOK_EVENTS).map((e) => e.trim().toUpperCase()))];
  for (const event of events) {
    const found = ours.find((hook) => hook.event === event);
    if (found !== undefined) {
      result.existing.push(found);
      continue;
    }
    const id = await options.client.createWebhook({ event, url, token: options.token }, { signal: options.signal });
    result.created.push({ id, event, url });
  }
  return result;
}

/** Deletes every hook that posts to our endpoint; returns the ones removed. */
export async function removeOurWebhooks(options: WebhookAdminOptions): Promise<RegisteredWebhook[]> {
  const ours = await listOurWebhooks(options);
  const removed: RegisteredWebhook[] = [];
  for (const hook of ours) {
    await options.client.deleteWebhook(hook.id, { signal: options.signal });
    removed.push(hook);
  }
  return removed;
}
