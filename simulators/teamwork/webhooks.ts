/**
 * Teamwork webhook registrations and deliveries (reference 1.1 - 1.8, 5). One registration is one event
 * + one URL (+ version, content type, token), site-wide or for one project. For each task change the
 * simulator sends one delivery per matching active registration:
 * - v2 JSON: `v2TaskPayload` as compact JSON, `Content-Type: application/json`
 * - v2 Form: the same payload flattened (`Task.ID=...`), `application/x-www-form-urlencoded`
 * - v1: `event`, `objectId`, `accountId`, `userId` (+ `projectId` on delete) as a form
 * with `X-Projects-Event: <EVENT>` and, when the registration has a token, `X-Projects-Signature` =
 * lower-case hex HMAC-SHA256 of the exact body bytes keyed with the token (no prefix).
 * A delivery counts as received only on HTTP 200 within 5 s; failures are retried after 1, 5 and 10
 * minutes (the v2 schedule; configurable), and a registration with 3 discarded deliveries is
 * deactivated (reference 1.8).
 */
import { createHmac } from 'node:crypto';
import type { SimClock, WebhookSender } from '../common.ts';
import { WebhookInputError, type WebhookInput, type WebhookRegistry } from './api.ts';
import { wholeSeconds, type TaskEvent, type TwTask, type TwUser, type TwWebhook } from './model.ts';
import { flattenForm, v1FormFields, v2TaskPayload, type TeamworkQuirks } from './payloads.ts';
import type { TeamworkState } from './state.ts';

const CONTENT_TYPES = ['application/json', 'application/x-www-form-urlencoded'] as const;
/** Discarded deliveries after which Teamwork deactivates a hook (reference 1.8). */
const DEACTIVATE_AFTER_DISCARDS = 3;

export class TeamworkWebhooks implements WebhookRegistry {
  constructor(
    private readonly state: TeamworkState,
    private readonly sender: WebhookSender,
    private readonly quirks: TeamworkQuirks,
    private readonly clock: SimClock,
  ) {}

  register(input: WebhookInput): TwWebhook {
    const event = input.event.toUpperCase();
    if (!/^[A-Z]+\.[A-Z]+$/.test(event)) throw new WebhookInputError(`event must look like TASK.CREATED, got ${input.event}`);
    let url: URL;
    try {
      url = new URL(input.url);
    } catch {
      throw new WebhookInputError(`url is not a valid URL: ${input.url}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WebhookInputError('url must be http(s)');
    const version = input.version === undefined ? 2 : Number(input.version);
    if (version !== 1 && version !== 2) throw new WebhookInputError('version must be 1 or 2');
    const contentType = version === 1 ? 'application/x-www-form-urlencoded' : normaliseContentType(input.contentType);
    if (input.projectId && !this.state.projects.has(input.projectId)) throw new WebhookInputError(`project ${input.projectId} not found`);
    const hook: TwWebhook = {
      id: this.state.allocateWebhookId(),
      event,
      url: url.toString(),
      version,
      contentType,
      token: input.token ?? '',
      projectId: input.projectId ?? 0,
      status: 'active',
      discardedCount: 0,
      createdAt: wholeSeconds(this.clock.now()),
    };
    this.state.webhooks.set(hook.id, hook);
    return hook;
  }

  update(id: number, input: Partial<WebhookInput>): TwWebhook | undefined {
    const hook = this.state.webhooks.get(id);
    if (!hook) return undefined;
    if (input.url !== undefined) hook.url = new URL(input.url).toString();
    if (input.token !== undefined) hook.token = input.token;
    if (input.event !== undefined) hook.event = input.event.toUpperCase();
    if (input.version !== undefined) hook.version = Number(input.version) === 1 ? 1 : 2;
    if (input.contentType !== undefined && hook.version === 2) hook.contentType = normaliseContentType(input.contentType);
    // Saving a hook re-activates it (what an operator does after an outage).
    hook.status = 'active';
    hook.discardedCount = 0;
    return hook;
  }

  remove(id: number): boolean {
    return this.state.webhooks.delete(id);
  }

  list(projectId?: number): TwWebhook[] {
    const all = [...this.state.webhooks.values()];
    return projectId === undefined ? all : all.filter((h) => h.projectId === projectId);
  }

  /** Sends `event` for `task` to every matching active registration; resolves when the first attempts are done. */
  async emit(event: TaskEvent, task: TwTask, actorId: number): Promise<void> {
    const projectId = this.state.projectIdOf(task);
    const actor = this.state.users.get(actorId);
    for (const hook of this.state.webhooks.values()) {
      if (hook.status !== 'active' || hook.event !== event) continue;
      if (hook.projectId !== 0 && hook.projectId !== projectId) continue;
      const { body, contentType } = this.render(hook, event, task, actorId, actor);
      const headers: Record<string, string> = {
        'content-type': contentType,
        'x-projects-event': event,
        'user-agent': 'Teamwork-Webhooks (simulator)',
      };
      if (hook.token !== '' && (hook.version === 2 || this.quirks.signV1)) {
        headers['x-projects-signature'] = createHmac('sha256', hook.token).update(body, 'utf8').digest('hex');
      }
      await this.sender.send({
        target: String(hook.id),
        event,
        url: hook.url,
        headers,
        body,
        onFinal: (accepted) => {
          if (accepted) return;
          hook.discardedCount++;
          if (hook.discardedCount >= DEACTIVATE_AFTER_DISCARDS) hook.status = 'inactive';
        },
      });
    }
  }

  private render(hook: TwWebhook, event: TaskEvent, task: TwTask, actorId: number, actor: TwUser | undefined): { body: string; contentType: string } {
    if (hook.version === 1) {
      return { body: new URLSearchParams(v1FormFields(event, task, actorId, this.state, this.quirks)).toString(), contentType: 'application/x-www-form-urlencoded' };
    }
    const payload = v2TaskPayload(event, task, actor, this.state, this.quirks);
    if (hook.contentType === 'application/x-www-form-urlencoded') {
      return { body: new URLSearchParams(flattenForm(payload)).toString(), contentType: hook.contentType };
    }
    return { body: JSON.stringify(payload), contentType: 'application/json' };
  }
}

function normaliseContentType(value: string | undefined): TwWebhook['contentType'] {
  if (value === undefined) return 'application/json';
  const v = value.toLowerCase();
  if (v === 'json') return 'application/json';
  if (v === 'form') return 'application/x-www-form-urlencoded';
  if ((CONTENT_TYPES as readonly string[]).includes(v)) return v as TwWebhook['contentType'];
  // XML exists for v2 but nothing public documents its element names (reference 1.5).
  throw new WebhookInputError(`contentType ${value} is not supported by the simulator (application/json or application/x-www-form-urlencoded)`);
}
