/**
 * The Missive simulator: a seeded organization served over HTTP with the conversations, messages and
 * hooks endpoints, Bearer auth, the three API limits (concurrency, per minute, per 15 minutes; windows
 * scalable), signed expiring attachment URLs, rule deliveries for every change, an activity loop and
 * run-time faults. The contract tests in test/simulators/missive-*.test.ts pin every shape.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  ActivityLoop,
  WebhookSender,
  bearerToken,
  realClock,
  registerControlRoutes,
  startServer,
  type Delivery,
  type Faults,
  type RunningSimulator,
  type SimClock,
} from '../common.ts';
import { generateMissiveData, type MissiveGeneratorOptions } from '../generator/missive.ts';
import { createRandom } from '../generator/random.ts';
import { hookJson, registerMissiveRoutes } from './api.ts';
import { MissiveHooks, type RuleInput } from './hooks.ts';
import { MissiveLimiter, type MissiveLimits } from './limits.ts';
import { RULE_TYPES, type MissiveData, type MvComment, type MvConversation, type MvRule } from './model.ts';
import { MissiveMutations, type CommentInput, type EmailInput, type EmailResult } from './mutations.ts';
import { DEFAULT_MISSIVE_QUIRKS, createAttachmentSigner, type MissiveQuirks } from './payloads.ts';
import { MissiveState } from './state.ts';

const SECOND = 1000;

export interface MissiveSimulatorOptions {
  /** Data seed; default 1. Same seed and `data.anchor` -> same data. */
  seed?: number | string;
  /** The Bearer token the API accepts. Default `missive_pat-sim-token`. */
  token?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Time source for timestamps, windows, URL expiry and delayed consistency. Default the real clock. */
  clock?: SimClock;
  /** Sizes and anchor time of the generated organization (anchor defaults to the clock's now). */
  data?: Omit<MissiveGeneratorOptions, 'seed'>;
  /** API limits; defaults 5 concurrent, 300/min, 900/15 min, windowScale 1. */
  limits?: MissiveLimits;
  /** Lifetime of attachment URLs, seconds. Default 900 (reference U9: unknown). */
  attachmentUrlTtlSeconds?: number;
  faults?: Partial<Faults>;
  quirks?: Partial<MissiveQuirks>;
  /** Waits before retrying a failed delivery, ms. Default 5 retries over 8 minutes (reference 1.7). */
  webhookRetryDelaysMs?: readonly number[];
  /** How long deliveries held by the `reorder` fault wait before they go out shuffled, ms. Default 250. */
  webhookReorderWindowMs?: number;
  /** Delivery timeout, ms. Default 15,000 (reference 1.7). */
  webhookTimeoutMs?: number;
}

export interface MissiveCredentials {
  /** `Authorization: Bearer <token>`. */
  token: string;
  /** What MISSIVE_BASE_URL points at (`<url>/v1`). */
  baseUrl: string;
  /** The token's user. */
  userId: string;
  organizationId: string;
}

export interface MissiveSimulator extends RunningSimulator {
  credentials: MissiveCredentials;
  deliveries: readonly Delivery[];
  quirks: MissiveQuirks;
  data(): MissiveData;
  conversation(id: string): MvConversation | undefined;

  receiveEmail(input?: EmailInput): Promise<EmailResult>;
  sendEmail(input?: EmailInput): Promise<EmailResult>;
  addLabel(conversationId: string, labelId: string): Promise<MvConversation>;
  removeLabel(conversationId: string, labelId: string): Promise<MvConversation>;
  addComment(conversationId: string, input: CommentInput): Promise<{ conversation: MvConversation; comment: MvComment }>;
  closeConversation(conversationId: string): Promise<MvConversation>;
  reopenConversation(conversationId: string): Promise<MvConversation>;
  assign(conversationId: string, userIds: string[]): Promise<MvConversation>;
  setTeam(conversationId: string, teamId: string | null): Promise<MvConversation>;
  trashConversation(conversationId: string): Promise<MvConversation>;
  restoreConversation(conversationId: string): Promise<MvConversation>;

  /** Creates a webhook rule; sends the validation request first and throws when it is not answered 2xx. */
  createRule(input: RuleInput): Promise<MvRule>;
  /** One rule per type, all to `url` with the same secret (what an operator sets up for the connector). */
  createAllRules(url: string, secret: string): Promise<MvRule[]>;
  deleteRule(id: string): boolean;
  listRules(): MvRule[];

  startActivity(perMinute: number): void;
  stopActivity(): Promise<void>;
  flush(): Promise<void>;
}

export async function startMissiveSimulator(options: MissiveSimulatorOptions = {}): Promise<MissiveSimulator> {
  const clock = options.clock ?? realClock;
  const seed = options.seed ?? 1;
  const token = options.token ?? 'missive_pat-sim-token';
  const quirks: MissiveQuirks = { ...DEFAULT_MISSIVE_QUIRKS, ...options.quirks };
  const data = generateMissiveData({ ...options.data, seed, anchor: options.data?.anchor ?? clock.now() });
  const state = new MissiveState(data, clock);
  const random = createRandom(`missive-run/${seed}`);
  const faultRandom = random.fork('faults');
  const activityRandom = random.fork('activity');
  const limiter = new MissiveLimiter(options.limits ?? {}, clock);
  let baseUrl = '';
  const signer = createAttachmentSigner(() => baseUrl, randomBytes(16).toString('hex'), options.attachmentUrlTtlSeconds ?? 900, () => clock.now());

  const gate = (request: FastifyRequest, reply: FastifyReply): FastifyReply | void => {
    if (!request.url.startsWith('/v1/')) return; // attachment downloads: no token, no limits
    if (bearerToken(request.headers.authorization) !== token) {
      return reply.code(401).send({ error: 'Invalid or missing API token (Authorization: Bearer <token>)' });
    }
    const refused = limiter.admit(request);
    if (refused) return limiter.reply(reply, refused);
  };

  let sender!: WebhookSender;
  let hooks!: MissiveHooks;
  let mutations!: MissiveMutations;
  const activity = new ActivityLoop(() => mutations.randomChange(activityRandom));

  const server = await startServer(
    (app, tools) => {
      tools.faults.set(options.faults ?? {});
      sender = new WebhookSender({
        faults: tools.faults,
        clock,
        accepts: (status) => status >= 200 && status <= 299,
        timeoutMs: options.webhookTimeoutMs ?? 15 * SECOND,
        reorderWindowMs: options.webhookReorderWindowMs,
        retryDelaysMs: options.webhookRetryDelaysMs ?? [20 * SECOND, 40 * SECOND, 80 * SECOND, 120 * SECOND, 220 * SECOND],
      });
      hooks = new MissiveHooks(state, sender, quirks, clock, random.fork('ids'), signer);
      mutations = new MissiveMutations(state, hooks, tools.faults, clock, quirks, random.fork('mutations'));
      registerMissiveRoutes(app, {
        state,
        quirks,
        clock,
        signer,
        createHook: (input) => hooks.createRule(input, 'api'),
        deleteHook: (id) => hooks.deleteRule(id),
      });
      registerControlRoutes(app, {
        faults: tools.faults,
        deliveries: () => sender.log,
        flush: () => sender.flush(),
        activity,
        snapshot: () => state.snapshot(),
        mutations: {
          receiveEmail: (input?: EmailInput) => mutations.receiveEmail(input),
          sendEmail: (input?: EmailInput) => mutations.sendEmail(input),
          addLabel: (c: string, l: string) => mutations.addLabel(c, l),
          removeLabel: (c: string, l: string) => mutations.removeLabel(c, l),
          addComment: (c: string, input: CommentInput) => mutations.addComment(c, input),
          closeConversation: (c: string) => mutations.closeConversation(c),
          reopenConversation: (c: string) => mutations.reopenConversation(c),
          assign: (c: string, users: string[]) => mutations.assign(c, users),
          setTeam: (c: string, team: string | null) => mutations.setTeam(c, team),
          trashConversation: (c: string) => mutations.trashConversation(c),
          restoreConversation: (c: string) => mutations.restoreConversation(c),
          createRule: async (input: RuleInput) => hookJson(await hooks.createRule(input)),
        },
      });
    },
    {
      host: options.host,
      port: options.port,
      clock,
      random: () => faultRandom.next(),
      gate,
      release: (request) => limiter.release(request),
      rateLimitReply: (_request, reply) => limiter.reply(reply, { ...limiter.current(), remaining: 0 }),
    },
  );
  baseUrl = server.url;

  return {
    url: server.url,
    requests: server.requests,
    faults: server.faults,
    quirks,
    credentials: { token, baseUrl: `${server.url}/v1`, userId: state.meId, organizationId: state.organization.id },
    get deliveries() {
      return sender.log;
    },
    data: () => state.snapshot(),
    conversation: (id) => state.conversations.latest(id),
    receiveEmail: (input) => mutations.receiveEmail(input),
    sendEmail: (input) => mutations.sendEmail(input),
    addLabel: (c, l) => mutations.addLabel(c, l),
    removeLabel: (c, l) => mutations.removeLabel(c, l),
    addComment: (c, input) => mutations.addComment(c, input),
    closeConversation: (c) => mutations.closeConversation(c),
    reopenConversation: (c) => mutations.reopenConversation(c),
    assign: (c, users) => mutations.assign(c, users),
    setTeam: (c, team) => mutations.setTeam(c, team),
    trashConversation: (c) => mutations.trashConversation(c),
    restoreConversation: (c) => mutations.restoreConversation(c),
    createRule: (input) => hooks.createRule(input),
    createAllRules: async (url, secret) => {
      const rules: MvRule[] = [];
      for (const type of RULE_TYPES) rules.push(await hooks.createRule({ type, url, secret }));
      return rules;
    },
    deleteRule: (id) => hooks.deleteRule(id),
    listRules: () => hooks.listRules(),
    startActivity: (perMinute) => activity.start(perMinute),
    stopActivity: () => activity.stop(),
    flush: () => sender.flush(),
    stop: async () => {
      await activity.stop();
      await sender.stop();
      await server.stop();
    },
  };
}

export type { MissiveQuirks } from './payloads.ts';
export type { MissiveLimits } from './limits.ts';
export type { RuleInput } from './hooks.ts';
export type { EmailInput, CommentInput, EmailResult } from './mutations.ts';
export type { MissiveData, MvConversation, MvMessage, MvComment, MvRule, RuleType, MvAttachment, MvAddress } from './model.ts';
