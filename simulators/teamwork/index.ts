/**
 * The Teamwork simulator: a seeded site served over HTTP with the v3/v1 task endpoints and the webhook
 * registration API, Basic auth with the API key, a per-minute rate limit, webhook deliveries for every
 * change, an activity loop, and run-time faults. The contract tests in test/simulators/teamwork-*.test.ts
 * pin every shape.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  ActivityLoop,
  FixedWindow,
  WebhookSender,
  basicAuthUser,
  realClock,
  registerControlRoutes,
  startServer,
  type Delivery,
  type Faults,
  type RunningSimulator,
  type SimClock,
} from '../common.ts';
import { createRandom } from '../generator/random.ts';
import { generateTeamworkData, type TeamworkGeneratorOptions } from '../generator/teamwork.ts';
import { registerTeamworkRoutes, type WebhookInput } from './api.ts';
import { TASK_EVENTS, type TeamworkData, type TwTask, type TwWebhook } from './model.ts';
import { TeamworkMutations, type Actor, type CreateTaskInput, type UpdateTaskInput } from './mutations.ts';
import { DEFAULT_TEAMWORK_QUIRKS, type TeamworkQuirks } from './payloads.ts';
import { TeamworkState } from './state.ts';
import { TeamworkWebhooks } from './webhooks.ts';

const MINUTE = 60_000;

export interface TeamworkLimits {
  /** Requests per minute before 429. Default 150 (reference 4: Projects' number is unknown; Spaces is 150). */
  perMinute?: number;
  /** Multiplies the window length: 0.01 makes the minute last 0.6 s. Default 1. */
  windowScale?: number;
}

export interface TeamworkSimulatorOptions {
  /** Data seed; default 1. Same seed and `data.anchor` -> same data. */
  seed?: number | string;
  /** The API key Basic auth accepts (as the user name; any password). Default `tw-sim-api-key`. */
  apiKey?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Time source for timestamps, windows and delayed consistency. Default the real clock. */
  clock?: SimClock;
  /** Sizes and anchor time of the generated site (anchor defaults to the clock's now). */
  data?: Omit<TeamworkGeneratorOptions, 'seed'>;
  limits?: TeamworkLimits;
  /** Faults switched on from the start. */
  faults?: Partial<Faults>;
  /** Switches for shapes the reference marks uncertain. */
  quirks?: Partial<TeamworkQuirks>;
  /** Waits before retrying a failed delivery, ms. Default 1, 5 and 10 minutes (reference 1.8, v2). */
  webhookRetryDelaysMs?: readonly number[];
  /** How long deliveries held by the `reorder` fault wait before they go out shuffled, ms. Default 250. */
  webhookReorderWindowMs?: number;
  /** Delivery timeout, ms. Default 5,000 (Teamwork wants 200 within 5 s). */
  webhookTimeoutMs?: number;
}

export interface TeamworkCredentials {
  /** Use as the Basic-auth user name. */
  apiKey: string;
  /** Any password is accepted. */
  password: string;
  /** The site base URL (what TEAMWORK_BASE_URL points at). */
  baseUrl: string;
  accountId: number;
  /** The API key's user: the default actor (`eventCreator`) of programmatic changes. */
  userId: number;
}

export interface TeamworkSimulator extends RunningSimulator {
  credentials: TeamworkCredentials;
  /** Every webhook attempt, dropped and held delivery, oldest first. */
  deliveries: readonly Delivery[];
  quirks: TeamworkQuirks;
  /** The site's data as plain records (newest versions). */
  data(): TeamworkData;
  /** A task's newest version (what the next change builds on), shown by the API or not. */
  task(id: number): TwTask | undefined;

  createTask(input: CreateTaskInput): Promise<TwTask>;
  updateTask(id: number, patch: UpdateTaskInput): Promise<TwTask>;
  completeTask(id: number, by?: Actor): Promise<TwTask>;
  reopenTask(id: number, by?: Actor): Promise<TwTask>;
  deleteTask(id: number, by?: Actor): Promise<TwTask>;
  moveTask(id: number, to: { tasklistId?: number; parentTaskId?: number | null } & Actor): Promise<TwTask>;
  tagTask(id: number, tagIds: number[], by?: Actor): Promise<TwTask>;
  untagTask(id: number, tagIds: number[], by?: Actor): Promise<TwTask>;
  completeTasklist(id: number): void;
  setProjectArchived(id: number, archived: boolean): void;

  /** Registers a webhook as `POST /projects/api/v1/webhooks.json` would. */
  registerWebhook(input: WebhookInput): TwWebhook;
  /** One registration per task event, all to `url` (what a connector's register command does). */
  registerAllTaskWebhooks(url: string, options?: Omit<WebhookInput, 'event' | 'url'>): TwWebhook[];
  listWebhooks(): TwWebhook[];
  deleteWebhook(id: number): boolean;

  /** Starts random changes at `perMinute` per real minute (re-paces if running). */
  startActivity(perMinute: number): void;
  stopActivity(): Promise<void>;
  /** Sends held deliveries (reorder fault) and waits for every delivery attempt in flight. */
  flush(): Promise<void>;
}

export async function startTeamworkSimulator(options: TeamworkSimulatorOptions = {}): Promise<TeamworkSimulator> {
  const clock = options.clock ?? realClock;
  const seed = options.seed ?? 1;
  const apiKey = options.apiKey ?? 'tw-sim-api-key';
  const quirks: TeamworkQuirks = { ...DEFAULT_TEAMWORK_QUIRKS, ...options.quirks };
  const data = generateTeamworkData({ ...options.data, seed, anchor: options.data?.anchor ?? clock.now() });
  const state = new TeamworkState(data, clock);
  const random = createRandom(`teamwork-run/${seed}`);
  const faultRandom = random.fork('faults');
  const activityRandom = random.fork('activity');

  const perMinute = options.limits?.perMinute ?? 150;
  const window = new FixedWindow(perMinute, MINUTE * (options.limits?.windowScale ?? 1), clock);
  const epochSeconds = (ms: number) => String(Math.ceil(ms / 1000));

  // Rate limit (reference 4): X-RateLimit-Limit / -Remaining on every API response; on 429 also
  // X-RateLimit-Reset (UTC epoch seconds). No Retry-After: none is documented for Projects.
  const limited = (reply: FastifyReply): FastifyReply =>
    reply
      .code(429)
      .header('x-ratelimit-limit', String(perMinute))
      .header('x-ratelimit-remaining', '0')
      .header('x-ratelimit-reset', epochSeconds(window.resetAt()))
      .send({ errors: [{ title: 'Too Many Requests', detail: 'You have exceeded your rate limit. Please try again later.' }] });

  const gate = (request: FastifyRequest, reply: FastifyReply): FastifyReply | void => {
    if (basicAuthUser(request.headers.authorization) !== apiKey) {
      return reply
        .code(401)
        .header('www-authenticate', 'Basic realm="Teamwork"')
        .send({ errors: [{ title: 'Unauthorized', detail: 'Invalid or missing API key (HTTP Basic auth, key as user name).' }] });
    }
    if (!window.take()) return limited(reply);
    reply.header('x-ratelimit-limit', String(perMinute)).header('x-ratelimit-remaining', String(window.remaining()));
  };

  let sender!: WebhookSender;
  let webhooks!: TeamworkWebhooks;
  let mutations!: TeamworkMutations;
  const activity = new ActivityLoop(() => mutations.randomChange(activityRandom));

  const server = await startServer(
    (app, tools) => {
      tools.faults.set(options.faults ?? {});
      sender = new WebhookSender({
        faults: tools.faults,
        clock,
        accepts: (status) => status === 200,
        timeoutMs: options.webhookTimeoutMs ?? 5_000,
        reorderWindowMs: options.webhookReorderWindowMs,
        retryDelaysMs: options.webhookRetryDelaysMs ?? [1 * MINUTE, 5 * MINUTE, 10 * MINUTE],
      });
      webhooks = new TeamworkWebhooks(state, sender, quirks, clock);
      mutations = new TeamworkMutations(state, webhooks, tools.faults, clock);
      registerTeamworkRoutes(app, { state, quirks, clock }, webhooks);
      registerControlRoutes(app, {
        faults: tools.faults,
        deliveries: () => sender.log,
        flush: () => sender.flush(),
        activity,
        snapshot: () => state.snapshot(),
        mutations: {
          createTask: (input: CreateTaskInput) => mutations.createTask(input),
          updateTask: (id: number, patch: UpdateTaskInput) => mutations.updateTask(id, patch),
          completeTask: (id: number, by?: Actor) => mutations.completeTask(id, by),
          reopenTask: (id: number, by?: Actor) => mutations.reopenTask(id, by),
          deleteTask: (id: number, by?: Actor) => mutations.deleteTask(id, by),
          moveTask: (id: number, to: { tasklistId?: number; parentTaskId?: number | null }) => mutations.moveTask(id, to),
          tagTask: (id: number, tagIds: number[]) => mutations.tagTask(id, tagIds),
          untagTask: (id: number, tagIds: number[]) => mutations.untagTask(id, tagIds),
          registerWebhook: async (input: WebhookInput) => webhooks.register(input),
        },
      });
    },
    {
      host: options.host,
      port: options.port,
      clock,
      random: () => faultRandom.next(),
      gate,
      rateLimitReply: (_request, reply) => limited(reply),
    },
  );

  const simulator: TeamworkSimulator = {
    url: server.url,
    requests: server.requests,
    faults: server.faults,
    quirks,
    credentials: { apiKey, password: 'x', baseUrl: server.url, accountId: state.accountId, userId: state.meId },
    get deliveries() {
      return sender.log;
    },
    data: () => state.snapshot(),
    task: (id) => state.latestTask(id),
    createTask: (input) => mutations.createTask(input),
    updateTask: (id, patch) => mutations.updateTask(id, patch),
    completeTask: (id, by) => mutations.completeTask(id, by),
    reopenTask: (id, by) => mutations.reopenTask(id, by),
    deleteTask: (id, by) => mutations.deleteTask(id, by),
    moveTask: (id, to) => mutations.moveTask(id, to),
    tagTask: (id, tagIds, by) => mutations.tagTask(id, tagIds, by),
    untagTask: (id, tagIds, by) => mutations.untagTask(id, tagIds, by),
    completeTasklist: (id) => mutations.completeTasklist(id),
    setProjectArchived: (id, archived) => mutations.setProjectArchived(id, archived),
    registerWebhook: (input) => webhooks.register(input),
    registerAllTaskWebhooks: (url, rest = {}) => TASK_EVENTS.map((event) => webhooks.register({ ...rest, event, url })),
    listWebhooks: () => webhooks.list(),
    deleteWebhook: (id) => webhooks.remove(id),
    startActivity: (perMinuteRate) => activity.start(perMinuteRate),
    stopActivity: () => activity.stop(),
    flush: () => sender.flush(),
    stop: async () => {
      await activity.stop();
      await sender.stop();
      await server.stop();
    },
  };
  return simulator;
}

export type { TeamworkQuirks } from './payloads.ts';
export type { TaskEvent, TeamworkData, TwTask, TwWebhook, TwUser, TwProject, TwTasklist, TwTag } from './model.ts';
export type { CreateTaskInput, UpdateTaskInput, Actor } from './mutations.ts';
export type { WebhookInput } from './api.ts';
