/**
 * Missive REST routes (reference 2): conversations list/get, conversation messages, messages (single,
 * batch, by Message-ID), the hooks API, and the signed attachment downloads. Authentication and limits
 * run before these (see `index.ts`); attachment downloads need neither (reference 4).
 *
 * Errors: the reference documents no error body, only that errors are JSON. GUESS: `{"error": "..."}`.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { jsonArrayParts, jsonBytes, type SimClock } from '../common.ts';
import { fileBytes } from '../generator/text.ts';
import { RULE_TYPES, type MvAttachment, type MvConversation, type MvMessage, type MvRule, type RuleType } from './model.ts';
import { MissiveJson, commentJson, type AttachmentSigner, type MissiveQuirks } from './payloads.ts';
import type { MissiveState } from './state.ts';

export interface MissiveApiContext {
  state: MissiveState;
  quirks: MissiveQuirks;
  clock: SimClock;
  signer: AttachmentSigner;
  /** Creates a hook the way `POST /v1/hooks` does; rejects when the validation request fails. */
  createHook(input: { type: RuleType; url: string; secret: string | null }): Promise<MvRule>;
  deleteHook(id: string): boolean;
}

type Query = Record<string, string | string[] | undefined>;

const one = (query: Query, name: string): string | undefined => {
  const value = query[name];
  return Array.isArray(value) ? value[value.length - 1] : value;
};
const isTrue = (value: string | undefined) => value === 'true' || value === '1';

class BadRequest extends Error {}

function error(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send({ error: message });
}

function limitParam(query: Query, fallback: number, max: number): number {
  const raw = one(query, 'limit');
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new BadRequest('limit must be a positive integer');
  if (n > max) throw new BadRequest(`limit must be ${max} or less`);
  return n;
}

function untilParam(query: Query): number | undefined {
  const raw = one(query, 'until');
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new BadRequest('until must be a unix timestamp in seconds');
  return n;
}

/**
 * Newest first by `time`; rows with time <= until; `limit` rows plus every further row that ties with
 * the last one (reference 2.2: a page may exceed `limit`, and rows equal to `until` reappear).
 */
export function pageByTime<T>(rows: T[], time: (row: T) => number, id: (row: T) => string, limit: number, until: number | undefined): T[] {
  const eligible = rows.filter((r) => until === undefined || time(r) <= until);
  eligible.sort((a, b) => time(b) - time(a) || (id(a) < id(b) ? 1 : id(a) > id(b) ? -1 : 0));
  if (eligible.length <= limit) return eligible;
  const boundary = time(eligible[limit - 1] as T);
  let end = limit;
  while (end < eligible.length && time(eligible[end] as T) === boundary) end++;
  return eligible.slice(0, end);
}

const MAILBOXES = ['inbox', 'all', 'assigned', 'closed', 'snoozed', 'flagged', 'trashed', 'junked', 'drafts'] as const;
const ID_FILTERS = ['shared_label', 'team_inbox', 'team_closed', 'team_all'] as const;

/** The mailbox predicate of one query, from the token user's point of view (reference 2.2). */
function mailboxFilter(query: Query, ctx: MissiveApiContext): (c: MvConversation) => boolean {
  const me = ctx.state.meId;
  const tests: Array<(c: MvConversation) => boolean> = [];
  const flags = (c: MvConversation) => c.flags[me] ?? { closed: false, archived: false, trashed: false, junked: false, flagged: false, snoozed: false };
  const hidden = (c: MvConversation) => flags(c).trashed || flags(c).junked;
  for (const box of MAILBOXES) {
    if (!isTrue(one(query, box))) continue;
    switch (box) {
      case 'inbox':
        tests.push((c) => { const f = flags(c); return !f.closed && !f.archived && !f.trashed && !f.junked && !f.snoozed; });
        break;
      case 'all':
        tests.push((c) => ctx.quirks.allIncludesTrash || !hidden(c));
        break;
      case 'assigned':
        tests.push((c) => c.assigneeIds.includes(me) && !flags(c).closed && !hidden(c));
        break;
      case 'closed':
        tests.push((c) => flags(c).closed && !hidden(c));
        break;
      case 'snoozed':
        tests.push((c) => flags(c).snoozed && !hidden(c));
        break;
      case 'flagged':
        tests.push((c) => flags(c).flagged && !hidden(c));
        break;
      case 'trashed':
        tests.push((c) => flags(c).trashed);
        break;
      case 'junked':
        tests.push((c) => flags(c).junked);
        break;
      case 'drafts':
        tests.push((c) => c.draftsCount > 0);
        break;
      default: {
        const never: never = box;
        throw new Error(`unknown mailbox ${String(never)}`);
      }
    }
  }
  for (const name of ID_FILTERS) {
    const id = one(query, name);
    if (id === undefined || id === '') continue;
    if (name === 'shared_label') tests.push((c) => c.labelIds.includes(id) && !hidden(c));
    if (name === 'team_inbox') tests.push((c) => c.teamId === id && !flags(c).closed && !hidden(c));
    if (name === 'team_closed') tests.push((c) => c.teamId === id && flags(c).closed && !hidden(c));
    if (name === 'team_all') tests.push((c) => c.teamId === id && !hidden(c));
  }
  if (tests.length === 0) throw new BadRequest('You need to paginate at least one mailbox, shared label or team');
  const organization = one(query, 'organization');
  const usesIdFilter = ID_FILTERS.some((n) => one(query, n));
  if (organization && !usesIdFilter) tests.push((c) => c.organizationId === organization);
  return (c) => tests.every((t) => t(c));
}

function parseIds(raw: string): string[] {
  return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export function registerMissiveRoutes(app: FastifyInstance, ctx: MissiveApiContext): void {
  const { state, signer } = ctx;
  const json = new MissiveJson(state);
  const send = (reply: FastifyReply, body: Buffer) => reply.type('application/json; charset=utf-8').send(body);
  const list = (key: string, items: Buffer[]) => jsonBytes([`{"${key}":`, ...jsonArrayParts(items), '}']);
  const visibleConversation = (id: string) => state.conversations.get(id);

  app.get('/v1/conversations', async (request, reply) => {
    const query = request.query as Query;
    try {
      const filter = mailboxFilter(query, ctx);
      const limit = limitParam(query, 25, 50);
      const until = untilParam(query);
      const rows = pageByTime(state.conversations.visible().filter(filter), (c) => c.lastActivityAt, (c) => c.id, limit, until);
      return send(reply, list('conversations', rows.map((c) => json.conversation(c))));
    } catch (err) {
      if (err instanceof BadRequest) return error(reply, 400, err.message);
      throw err;
    }
  });

  app.get('/v1/conversations/:id', async (request, reply) => {
    const conversation = visibleConversation((request.params as { id: string }).id);
    if (!conversation) return error(reply, 404, 'Conversation not found');
    return send(reply, list('conversations', [json.conversation(conversation)]));
  });

  app.get('/v1/conversations/:id/messages', async (request, reply) => {
    const query = request.query as Query;
    const conversation = visibleConversation((request.params as { id: string }).id);
    if (!conversation || conversation.guest) return error(reply, 404, 'Conversation not found');
    try {
      const limit = limitParam(query, 10, 10);
      const until = untilParam(query);
      const messages = conversation.messageIds.map((id) => state.messages.get(id)).filter((m): m is MvMessage => m !== undefined);
      const rows = pageByTime(messages, (m) => m.deliveredAt, (m) => m.id, limit, until);
      return send(reply, list('messages', rows.map((m) => json.messageRow(m))));
    } catch (err) {
      if (err instanceof BadRequest) return error(reply, 400, err.message);
      throw err;
    }
  });

  app.get('/v1/conversations/:id/comments', async (request, reply) => {
    const query = request.query as Query;
    const conversation = visibleConversation((request.params as { id: string }).id);
    if (!conversation || conversation.guest) return error(reply, 404, 'Conversation not found');
    try {
      const limit = limitParam(query, 10, 10);
      const until = untilParam(query);
      const comments = conversation.commentIds.map((id) => state.comments.get(id)).filter((c) => c !== undefined);
      const rows = pageByTime(comments, (c) => c.createdAt, (c) => c.id, limit, until);
      return { comments: rows.map((c) => commentJson(c, state, signer)) };
    } catch (err) {
      if (err instanceof BadRequest) return error(reply, 400, err.message);
      throw err;
    }
  });

  const render = (message: MvMessage) => json.fullMessage(message, state.conversations.get(message.conversationId), signer);

  // Single id -> {"messages": {...}} (object); comma-separated ids -> {"messages": [...]} (reference 2.6).
  app.get('/v1/messages/:ids', async (request, reply) => {
    const raw = (request.params as { ids: string }).ids;
    const ids = parseIds(raw);
    if (ids.length === 1 && !raw.includes(',')) {
      const message = state.messages.get(ids[0] as string);
      if (!message) return error(reply, 404, 'Message not found');
      return send(reply, jsonBytes(['{"messages":', render(message), '}']));
    }
    const found = ids.map((id) => state.messages.get(id)).filter((m): m is MvMessage => m !== undefined);
    if (found.length === 0) return error(reply, 404, 'Messages not found');
    return send(reply, list('messages', found.map(render)));
  });

  app.get('/v1/messages', async (request, reply) => {
    const header = one(request.query as Query, 'email_message_id');
    if (!header) return error(reply, 400, 'email_message_id is required');
    const ids = (state.byMessageIdHeader.get(header) ?? []).slice(-10);
    const found = ids.map((id) => state.messages.get(id)).filter((m): m is MvMessage => m !== undefined);
    return send(reply, list('messages', found.map(render)));
  });

  // Hooks API (reference 1.3, [L]): {"hooks": {"type", "url"}} -> {"hooks": {id, type, url, ...}}.
  app.post('/v1/hooks', async (request, reply) => {
    const hooks = (request.body as { hooks?: Record<string, unknown> } | null)?.hooks;
    const type = hooks?.type;
    const url = hooks?.url;
    if (typeof type !== 'string' || !(RULE_TYPES as readonly string[]).includes(type)) {
      return error(reply, 400, `hooks.type must be one of ${RULE_TYPES.join(', ')}`);
    }
    if (typeof url !== 'string' || !/^https?:\/\//.test(url)) return error(reply, 400, 'hooks.url must be an http(s) URL');
    try {
      const rule = await ctx.createHook({ type: type as RuleType, url, secret: typeof hooks?.secret === 'string' ? hooks.secret : null });
      return reply.code(201).send({ hooks: hookJson(rule) });
    } catch (err) {
      return error(reply, 422, err instanceof Error ? err.message : String(err));
    }
  });
  app.get('/v1/hooks', async () => ({ hooks: [...state.rules.values()].filter((r) => r.origin === 'api').map(hookJson) }));
  app.delete('/v1/hooks/:id', async (request, reply) => {
    if (!ctx.deleteHook((request.params as { id: string }).id)) return error(reply, 404, 'Hook not found');
    return {};
  });

  // Signed, expiring attachment downloads (reference 4): no token; 403 once `Expires` has passed or the
  // signature does not match.
  app.get('/attachments/:id/:filename', async (request, reply) => {
    const { id } = request.params as { id: string };
    const query = request.query as Query;
    const expires = Number(one(query, 'Expires'));
    const signature = one(query, 'Signature') ?? '';
    const attachment = findAttachment(state, id);
    const denied = (why: string) =>
      reply.code(403).header('content-type', 'application/xml').send(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>${why}</Message></Error>`);
    if (!Number.isFinite(expires) || !verifyAttachmentSignature(ctx, id, expires, signature)) return denied('Invalid signature');
    if (ctx.clock.now() / 1000 > expires) return denied('Request has expired');
    if (!attachment) return reply.code(404).send({ error: 'Attachment not found' });
    return reply
      .header('content-type', `${attachment.mediaType}/${attachment.subType}`)
      .header('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(attachment.filename)}`)
      .send(fileBytes(attachment.id, attachment.size));
  });
}

export function hookJson(rule: MvRule): Record<string, unknown> {
  return { id: rule.id, type: rule.type, url: rule.url };
}

function findAttachment(state: MissiveState, id: string): MvAttachment | undefined {
  for (const message of state.messages.latestAll()) {
    const hit = message.attachments.find((a) => a.id === id);
    if (hit) return hit;
  }
  for (const comment of state.comments.values()) if (comment.attachment?.id === id) return comment.attachment;
  return undefined;
}

function verifyAttachmentSignature(ctx: MissiveApiContext, id: string, expires: number, signature: string): boolean {
  const expected = Buffer.from(ctx.signer.sign(id, expires), 'hex');
  const given = Buffer.from(signature, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
