/**
 * Missive webhook rules and deliveries (reference 1). A rule has a type (when it fires), a URL and a
 * secret. Every change sends one delivery per active rule of the matching type:
 *   {"rule": {id, description, type}, "conversation": {...}, "message" | "latest_message": {...},
 *    "comment": {...} (new_comment only)}
 * as compact JSON (`escapeHtmlInJson` quirk), `Content-Type: application/json`, signed with
 * `X-Hook-Signature: sha256=<hex HMAC-SHA256 of the body keyed with the secret>`. A delivery counts as
 * received on any 2xx within 15 s; failures are retried 5 times over about 8 minutes, and a rule that
 * failed more than 50 times in a row is disabled (reference 1.7).
 *
 * Saving a rule sends a validation request first (reference 1.7; its shape is undocumented, U1). GUESS:
 * a signed POST whose body is `{"rule": {id, description, type}}` (no `conversation`); the rule is
 * saved only when the endpoint answers 2xx.
 */
import type { SimClock, WebhookSender } from '../common.ts';
import type { Random } from '../generator/random.ts';
import { RULE_TYPES, unixSeconds, type MessageKey, type MvComment, type MvConversation, type MvMessage, type MvRule, type RuleType } from './model.ts';
import {
  commentJson,
  conversationJson,
  conversationMessages,
  defaultMessageKey,
  encodeJson,
  hookSignature,
  messageRow,
  type AttachmentSigner,
  type MissiveQuirks,
} from './payloads.ts';
import type { MissiveState } from './state.ts';

/** Consecutive failures after which Missive disables a rule (reference 1.7). */
const DISABLE_AFTER_FAILURES = 50;
/** Timeout of the validation request, ms. */
const VALIDATION_TIMEOUT_MS = 15_000;

export interface RuleInput {
  type: RuleType;
  url: string;
  /** Signing secret; default a random one. Pass null for an unsigned rule (API hooks without a secret). */
  secret?: string | null;
  /** Default `Webhook <type>`. */
  description?: string;
  /** Where deliveries put the message; default `message` for email rules, `latest_message` for others. */
  messageKey?: MessageKey;
}

export class MissiveHooks {
  constructor(
    private readonly state: MissiveState,
    private readonly sender: WebhookSender,
    private readonly quirks: MissiveQuirks,
    private readonly clock: SimClock,
    private readonly random: Random,
    private readonly signer: AttachmentSigner,
  ) {}

  /** Saves a rule after its validation request was answered 2xx; throws otherwise. */
  async createRule(input: RuleInput, origin: MvRule['origin'] = 'rule'): Promise<MvRule> {
    if (!(RULE_TYPES as readonly string[]).includes(input.type)) throw new Error(`unknown rule type ${input.type}`);
    const rule: MvRule = {
      id: this.random.uuid(),
      description: input.description ?? `Webhook ${input.type}`,
      type: input.type,
      url: new URL(input.url).toString(),
      secret: input.secret === undefined ? this.random.hex(40) : input.secret,
      messageKey: input.messageKey ?? null,
      origin,
      active: true,
      consecutiveFailures: 0,
      createdAt: unixSeconds(this.clock.now()),
    };
    await this.validate(rule);
    this.state.rules.set(rule.id, rule);
    return rule;
  }

  deleteRule(id: string): boolean {
    return this.state.rules.delete(id);
  }

  listRules(): MvRule[] {
    return [...this.state.rules.values()];
  }

  /** Sends `type` for a conversation change to every active rule of that type. */
  async emit(type: RuleType, conversation: MvConversation, about: { message?: MvMessage; comment?: MvComment } = {}): Promise<void> {
    for (const rule of this.state.rules.values()) {
      if (!rule.active || rule.type !== type) continue;
      const body = encodeJson(this.payload(rule, conversation, about), this.quirks.escapeHtmlInJson);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Missive-Webhooks (simulator)' };
      if (rule.secret !== null) headers['x-hook-signature'] = hookSignature(rule.secret, body);
      await this.sender.send({
        target: rule.id,
        event: type,
        url: rule.url,
        headers,
        body,
        onFinal: (accepted) => {
          rule.consecutiveFailures = accepted ? 0 : rule.consecutiveFailures + 1;
          if (rule.consecutiveFailures > DISABLE_AFTER_FAILURES) rule.active = false;
        },
      });
    }
  }

  private payload(rule: MvRule, conversation: MvConversation, about: { message?: MvMessage; comment?: MvComment }): Record<string, unknown> {
    const body: Record<string, unknown> = {
      rule: { id: rule.id, description: rule.description, type: rule.type },
      conversation: conversationJson(conversation, this.state, true),
    };
    const messages = conversationMessages(conversation, this.state);
    const latest = messages[messages.length - 1];
    const message = about.message ?? latest;
    const key = rule.messageKey ?? defaultMessageKey(rule.type);
    if (message) {
      if (key === 'message' || key === 'both') body.message = messageRow(message, this.state);
      if (key === 'latest_message') body.latest_message = messageRow(message, this.state);
      if (key === 'both' && latest) {
        const row = messageRow(latest, this.state);
        body.latest_message = { id: row.id, references: row.references, to_fields: row.to_fields };
      }
    }
    if (about.comment) body.comment = commentJson(about.comment, this.state, this.signer);
    return body;
  }

  private async validate(rule: MvRule): Promise<void> {
    const body = encodeJson({ rule: { id: rule.id, description: rule.description, type: rule.type } }, this.quirks.escapeHtmlInJson);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'Missive-Webhooks (simulator)' };
    if (rule.secret !== null) headers['x-hook-signature'] = hookSignature(rule.secret, body);
    let status: number;
    try {
      const response = await fetch(rule.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(VALIDATION_TIMEOUT_MS) });
      await response.arrayBuffer().catch(() => undefined);
      status = response.status;
    } catch (err) {
      throw new Error(`webhook URL validation failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (status < 200 || status > 299) throw new Error(`webhook URL validation failed: HTTP ${status}`);
  }
}
