/**
 * The operator console's routes under /dashboard: access (login, logout, the access check on every
 * other route), the JSON API the pages poll, and the pages themselves (assets.ts). Registered by one
 * call in src/server/app.ts. The routes are thin: facts come from the providers in ConsoleOptions
 * (src/server/console/data.ts), actions from the library functions in src/admin/ the CLI uses too.
 *
 * Access (auth.ts): without ADMIN_TOKEN every /dashboard URL answers 404 CONN_ERR_NOT_FOUND. With it,
 * the login page is public; every other route needs a session cookie or `Authorization: Bearer
 * <ADMIN_TOKEN>`: without one a page answers 303 to /dashboard/login and the API 401
 * CONN_ERR_AUTH_REQUIRED (unknown URLs too, so that nothing is learnt unauthenticated). An action
 * (any method but GET and HEAD under /dashboard/api) made with a session also needs its CSRF token in
 * `x-csrf-token` (403 CONN_ERR_CSRF).
 *
 * Answers: JSON; errors `{"error": "<code>", "message": "…"}` as elsewhere in the app, the message naming
 * the field at fault. Bad input is a 4xx, never a 500. Each action is logged (info, component
 * `console`) with who (`session <nonce prefix>` or `bearer`), the client address, what and how many.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BackfillRunningError, type BackfillJobs } from '../../admin/backfill-jobs.ts';
import { deadLetterDetail, discardDeadLetters, listDeadLetters, summarize } from '../../admin/dead-letters.ts';
import { replayDeadLetters, type ReplayRequest } from '../../admin/replay-dead-letters.ts';
import { UsageError } from '../../admin/usage-error.ts';
import { ConnectorError, toErrorRecord } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { SOURCE_NAMES, type SourceName } from '../../model.ts';
import type { Queue } from '../../queue/queue.ts';
import { SampledLog } from '../sampled-log.ts';
import { registerAssets } from './assets.ts';
import {
  ConsoleAuth,
  LoginLimiter,
  SESSION_COOKIE,
  SESSION_TTL_MS,
  cameOverHttps,
  clientAddress,
  consoleSessionOf,
  describeOperator,
  readCookie,
  sessionCookie,
  setConsoleSession,
  type RequestFacts,
} from './auth.ts';
import type { ActivityProvider, ProcessOverview } from './data.ts';

/** The health checks' evaluation (src/server/health.ts), shown as is. */
export interface HealthProvider {
  evaluate(): Promise<unknown>;
}
/** The alert conditions active now (src/alerts/), for the banner. */
export interface AlertsProvider {
  active(): unknown[];
}
/** The last check of the webhook registrations at the vendors. */
export interface WebhooksProvider {
  registrations(): unknown;
}

export interface ConsoleOptions {
  /** ADMIN_TOKEN. Unset: the console is off and every /dashboard URL answers 404. */
  adminToken?: string;
  /** TRUST_PROXY: read X-Forwarded-Proto (Secure cookie) and X-Forwarded-For (login limit) from the proxy. Default false. */
  trustProxy?: boolean;
  /** Recent events, sources and the queue's history (src/admin/activity.ts). */
  activity: ActivityProvider;
  /** This process, for the overview. */
  process: { version: string; role: ProcessOverview['role']; startedAt: Date };
  /** Backfills started from the console; absent: POST /dashboard/api/backfill answers 404. */
  backfill?: BackfillJobs;
  health?: HealthProvider;
  alerts?: AlertsProvider;
  webhooks?: WebhooksProvider;
  /** Clock for sessions and the login limiter, ms. Default Date.now. */
  now?: () => number;
}

/** What the console needs from the app besides its own options. */
export interface ConsoleDeps {
  log: Logger;
  queue: Queue;
  /** The app's extra health facts (its `database` is the overview's). */
  healthDetails?: () => Promise<Record<string, unknown>>;
}

/** Events a list answers with by default, and at most. */
const EVENTS_LIMIT = { default: 50, max: 500 } as const;
const DEAD_LETTERS_LIMIT = { default: 200, max: 5000 } as const;
/** Ids one replay or discard may name. */
const MAX_IDS = 10_000;
/** Bytes a login form may have. */
const LOGIN_BODY_LIMIT = 4096;
/** Bytes an action's JSON body may have (10,000 ids fit; the webhooks' larger limit is not for this). */
const ACTION_BODY_LIMIT = 1024 * 1024;

/** The console's answer to anything it refuses. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string) => new Refusal(400, 'CONN_ERR_REQUEST_INVALID', message);
const notFound = (message: string) => new Refusal(404, 'CONN_ERR_NOT_FOUND', message);

function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).type('application/json; charset=utf-8').send({ error: code, message });
}

/** Registers /dashboard on `app`: the console, or (without ADMIN_TOKEN) 404 for every URL under it. */
export async function registerConsole(app: FastifyInstance, options: ConsoleOptions | undefined, deps: ConsoleDeps): Promise<void> {
  if (options?.adminToken === undefined) {
    await app.register(
      async (scope) => {
        scope.setNotFoundHandler((_request, reply) => sendError(reply, 404, 'CONN_ERR_NOT_FOUND', 'the operator console is off: set ADMIN_TOKEN to turn it on'));
      },
      { prefix: '/dashboard' },
    );
    return;
  }
  const token = options.adminToken;
  await app.register(async (scope) => consoleScope(scope, { ...options, adminToken: token }, deps), { prefix: '/dashboard' });
}

async function consoleScope(scope: FastifyInstance, options: ConsoleOptions & { adminToken: string }, deps: ConsoleDeps): Promise<void> {
  const now = options.now ?? Date.now;
  const trustProxy = options.trustProxy === true;
  const auth = new ConsoleAuth({ token: options.adminToken, now });
  const limiter = new LoginLimiter(now);
  const log = deps.log.child({ component: 'console' });
  // Lines any client can cause (failed logins) are sampled, as the webhook refusals are.
  const sampled = new SampledLog(log);
  scope.addHook('onClose', async () => {
    sampled.close();
    await options.backfill?.stop();
  });
  const facts = (request: FastifyRequest): RequestFacts => ({
    headers: request.headers,
    remoteAddress: request.socket.remoteAddress,
    encrypted: (request.socket as { encrypted?: boolean }).encrypted === true,
  });
  const client = (request: FastifyRequest) => clientAddress(facts(request), trustProxy);

  scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: LOGIN_BODY_LIMIT }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  scope.setErrorHandler((error, request, reply) => {
    if (error instanceof Refusal) return sendError(reply, error.status, error.code, error.message);
    if (error instanceof UsageError) return sendError(reply, 400, 'CONN_ERR_REQUEST_INVALID', error.message);
    if (error instanceof BackfillRunningError) return reply.code(409).send({ error: error.code, message: error.message, job: error.job });
    const status = (error as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return sendError(reply, status, 'CONN_ERR_REQUEST_INVALID', `the request could not be read: ${(error as Error).message}`);
    }
    // Not the request's fault. A ConnectorError that may pass (the queue engine away, the database not
    // there yet) is a 503 naming it; anything else is a bug: 500, logged as an error.
    const record = toErrorRecord(error);
    if (error instanceof ConnectorError && record.retryable) {
      log.warn({ reqId: request.id, code: record.code, url: request.url.split('?')[0] }, `console request could not be served: ${record.message}`);
      return sendError(reply, 503, record.code, record.message);
    }
    log.error({ reqId: request.id, err: error, url: request.url.split('?')[0] }, 'console request failed');
    return sendError(reply, 500, 'CONN_ERR_INTERNAL', 'internal error; the log has the details');
  });

  scope.setNotFoundHandler((request, reply) => sendError(reply, 404, 'CONN_ERR_NOT_FOUND', `no console route ${request.method} ${request.url.split('?')[0]}`));

  // The access check, before anything is read or parsed.
  scope.addHook('onRequest', async (request, reply) => {
    void reply.header('x-content-type-options', 'nosniff').header('x-frame-options', 'DENY').header('referrer-policy', 'no-referrer');
    if ((request.routeOptions.config as { public?: boolean } | undefined)?.public === true) return;
    const path = request.url.split('?')[0] as string;
    const api = path.startsWith('/dashboard/api/') || path === '/dashboard/api';
    if (api) void reply.header('cache-control', 'no-store');
    const cookie = readCookie(request.headers, SESSION_COOKIE);
    const operator = auth.verifyBearer(request.headers.authorization) ?? auth.verifySession(cookie);
    if (operator === null) {
      if (api) return sendError(reply, 401, 'CONN_ERR_AUTH_REQUIRED', 'log in at /dashboard/login, or send Authorization: Bearer <ADMIN_TOKEN>');
      return reply.code(303).header('location', '/dashboard/login').header('cache-control', 'no-store').send();
    }
    const csrfToken = operator.kind === 'session' ? auth.csrfToken(operator.nonce) : null;
    if (api && operator.kind === 'session' && request.method !== 'GET' && request.method !== 'HEAD') {
      const given = request.headers['x-csrf-token'];
      if (!auth.csrfMatches(operator.nonce, typeof given === 'string' ? given : undefined)) {
        log.warn({ who: describeOperator(operator), client: client(request), method: request.method, url: path }, 'console action refused: no valid CSRF token');
        return sendError(reply, 403, 'CONN_ERR_CSRF', 'this action needs the x-csrf-token header with the token from GET /dashboard/api/session');
      }
    }
    setConsoleSession(request, { operator, csrfToken });
  });

  /** Who made the request (it passed the access check), for log lines. */
  const who = (request: FastifyRequest) => {
    const session = consoleSessionOf(request);
    return session === undefined ? 'unknown' : describeOperator(session.operator);
  };
  const audit = (request: FastifyRequest, action: string, facts: Record<string, unknown>, message: string) =>
    log.info({ who: who(request), client: client(request), action, ...facts }, message);

  // ── access ──

  scope.get('/login', { config: { public: true } }, async (_request, reply) => loginPage(reply, 200, null));

  scope.post('/login', { config: { public: true }, bodyLimit: LOGIN_BODY_LIMIT }, async (request, reply) => {
    const from = client(request);
    const wait = limiter.retryAfterMs(from);
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      sampled.write('warn', 'console:login-limited', { client: from, retryAfterSeconds: seconds }, 'console login refused: too many failed logins from this address');
      void reply.header('retry-after', String(seconds));
      return loginPage(reply, 429, `Too many failed logins from your address. Try again in ${seconds} s.`);
    }
    const body = request.body as Record<string, unknown> | null | undefined;
    const given = body !== null && typeof body === 'object' ? body.token : undefined;
    if (typeof given !== 'string' || given === '') return loginPage(reply, 400, 'Enter the token (the form field token was empty).');
    if (!auth.tokenMatches(given)) {
      limiter.fail(from);
      sampled.write('warn', 'console:login-failed', { client: from }, 'console login failed: wrong token');
      return loginPage(reply, 401, 'That is not the token. Try again.');
    }
    limiter.succeed(from);
    const session = auth.newSession();
    log.info({ who: `session ${session.nonce.slice(0, 8)}`, client: from, action: 'login' }, 'console login');
    return reply
      .code(303)
      .header('set-cookie', sessionCookie(session.value, { secure: cameOverHttps(facts(request), trustProxy), maxAgeMs: SESSION_TTL_MS }))
      .header('location', '/dashboard')
      .header('cache-control', 'no-store')
      .send();
  });

  scope.post('/logout', { config: { public: true } }, async (request, reply) => {
    const operator = auth.verifySession(readCookie(request.headers, SESSION_COOKIE));
    if (operator !== null) log.info({ who: describeOperator(operator), client: client(request), action: 'logout' }, 'console logout');
    return reply
      .code(303)
      .header('set-cookie', sessionCookie(null, { secure: cameOverHttps(facts(request), trustProxy) }))
      .header('location', '/dashboard/login')
      .header('cache-control', 'no-store')
      .send();
  });

  scope.get('/api/session', async (request) => {
    const session = consoleSessionOf(request)!;
    const { operator } = session;
    return { operator: describeOperator(operator), csrfToken: session.csrfToken, expiresAt: operator.kind === 'session' ? new Date(operator.expiresAt).toISOString() : null };
  });

  // ── facts ──

  scope.get('/api/overview', async () => {
    const memory = process.memoryUsage();
    const processFacts: ProcessOverview = {
      version: options.process.version,
      role: options.process.role,
      pid: process.pid,
      startedAt: options.process.startedAt.toISOString(),
      uptimeSeconds: Math.max(0, Math.round((Date.now() - options.process.startedAt.getTime()) / 1000)),
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
    };
    const [stats, details, health, sources, processes] = await Promise.all([
      deps.queue.stats().then(
        (s) => ({ stats: s, error: null }),
        (err: unknown) => ({ stats: null, error: toErrorRecord(err) }),
      ),
      deps.healthDetails === undefined ? Promise.resolve({} as Record<string, unknown>) : deps.healthDetails().catch((err: unknown) => ({ database: { ok: false, detail: toErrorRecord(err).message } })),
      // A check that throws is shown as such; the rest of the overview still answers.
      options.health === undefined
        ? Promise.resolve(null)
        : options.health.evaluate().catch((err: unknown) => {
            log.warn({ err }, 'console overview: the health checks could not be evaluated');
            return { error: toErrorRecord(err) };
          }),
      options.activity.sources(),
      options.activity.processes(),
    ]);
    return {
      process: processFacts,
      processes,
      sources,
      queue: { ...stats, history: options.activity.queueHistory() },
      database: (details as { database?: unknown }).database ?? null,
      health,
      alerts: options.alerts?.active() ?? null,
      webhooks: options.webhooks?.registrations() ?? null,
    };
  });

  scope.get('/api/events', async (request) => {
    const query = readQuery(request, ['q', 'source', 'limit']);
    const source = optionalSource(query.source, 'source');
    const limit = optionalLimit(query.limit, EVENTS_LIMIT);
    const q = query.q?.trim();
    const events = await options.activity.events({ limit, ...(q !== undefined && q !== '' ? { query: q } : {}), ...(source !== undefined ? { source } : {}) });
    return { events };
  });

  scope.get('/api/events/:id', async (request) => {
    const { id } = request.params as { id: string };
    const detail = await options.activity.event(id);
    if (detail === null) throw notFound(`no event ${id} in this process's recent activity or the queue`);
    return detail;
  });

  scope.get('/api/dead-letters', async (request) => {
    const query = readQuery(request, ['q', 'source', 'limit']);
    const source = optionalSource(query.source, 'source');
    const limit = optionalLimit(query.limit, DEAD_LETTERS_LIMIT);
    return listDeadLetters(deps.queue, { limit, ...(source !== undefined ? { source } : {}), ...(query.q !== undefined ? { query: query.q } : {}) });
  });

  scope.get('/api/dead-letters/:id', async (request) => {
    const { id } = request.params as { id: string };
    const detail = await deadLetterDetail(deps.queue, id);
    if (detail === null) throw notFound(`${id} is not a dead letter (replayed, discarded, or never dead-lettered)`);
    return detail;
  });

  // ── actions ──

  scope.post('/api/dead-letters/replay', { bodyLimit: ACTION_BODY_LIMIT }, async (request) => {
    const selection = readSelection(request.body, 'replay', ['ids', 'source', 'all', 'dryRun']);
    const result = await replayDeadLetters(deps.queue, selection);
    const ids = result.replayed.map((d) => d.event.id);
    audit(request, 'dead-letters.replay', { count: ids.length, dryRun: result.dryRun, filter: filterFacts(selection), missing: result.missingIds.length }, `console: ${result.dryRun ? 'would replay' : 'replayed'} ${ids.length} dead letter(s)`);
    return { replayed: ids.length, ids, missingIds: result.missingIds, dryRun: result.dryRun };
  });

  scope.post('/api/dead-letters/discard', { bodyLimit: ACTION_BODY_LIMIT }, async (request) => {
    const selection = readSelection(request.body, 'discard', ['ids', 'source', 'all', 'dryRun', 'confirm']);
    const confirm = (request.body as Record<string, unknown>).confirm;
    if (selection.dryRun !== true && confirm !== true) throw invalid('confirm: true is required to discard dead letters (they are deleted for good); send dryRun: true to only list them');
    const result = await discardDeadLetters(deps.queue, selection);
    const discarded = result.discarded.map(summarize);
    audit(request, 'dead-letters.discard', { count: discarded.length, dryRun: result.dryRun, filter: filterFacts(selection), missing: result.missingIds.length }, `console: ${result.dryRun ? 'would discard' : 'discarded'} ${discarded.length} dead letter(s)`);
    return { discarded: discarded.length, ids: discarded.map((d) => d.id), missingIds: result.missingIds, dryRun: result.dryRun };
  });

  scope.get('/api/backfill', async () => ({ jobs: options.backfill?.list() ?? [], available: options.backfill !== undefined }));

  scope.post('/api/backfill', { bodyLimit: ACTION_BODY_LIMIT }, async (request, reply) => {
    const body = readObject(request.body, ['source', 'since', 'full']);
    if (body.source === undefined) throw invalid(`source is required: one of ${SOURCE_NAMES.join(', ')}`);
    const source = optionalSource(body.source, 'source') as SourceName;
    if (body.full !== undefined && typeof body.full !== 'boolean') throw invalid('full must be true or false');
    let since: Date | undefined;
    if (body.since !== undefined && body.since !== null) {
      if (typeof body.since !== 'string' || !/^\d{4}-\d{2}-\d{2}/.test(body.since) || Number.isNaN(Date.parse(body.since))) {
        throw invalid('since must be an ISO 8601 time, e.g. 2025-01-31 or 2025-01-31T08:00:00Z');
      }
      since = new Date(body.since);
      if (body.full === true) throw invalid('since and full contradict each other: send one');
      if (since.getTime() > Date.now()) throw invalid(`since ${since.toISOString()} is in the future`);
    }
    if (options.backfill === undefined) throw notFound('backfills cannot be started from this process (it has no database to keep checkpoints in); run `connector backfill`');
    const job = options.backfill.start({ source, ...(since !== undefined ? { since } : {}), ...(body.full === true ? { full: true } : {}) });
    audit(request, 'backfill.start', { source, since: job.request.since, full: job.request.full, job: job.id }, `console: started a backfill of ${source}`);
    return reply.code(202).send({ job });
  });

  await registerAssets(scope);
}

/** The query string's parameters, each given at most once, none unknown. */
function readQuery(request: FastifyRequest, known: readonly string[]): Record<string, string | undefined> {
  const query = (request.query ?? {}) as Record<string, unknown>;
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(query)) {
    if (!known.includes(key)) throw invalid(`unknown query parameter ${key}; known: ${known.join(', ')}`);
    if (typeof value !== 'string') throw invalid(`query parameter ${key} must be given once`);
    out[key] = value;
  }
  return out;
}

function optionalSource(value: unknown, field: string): SourceName | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || !(SOURCE_NAMES as readonly string[]).includes(value)) throw invalid(`${field} must be one of ${SOURCE_NAMES.join(', ')}`);
  return value as SourceName;
}

function optionalLimit(value: string | undefined, bounds: { default: number; max: number }): number {
  if (value === undefined || value === '') return bounds.default;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > bounds.max) throw invalid(`limit must be a whole number from 1 to ${bounds.max}`);
  return Number(value);
}

/** The JSON body as an object with only `known` keys. */
function readObject(body: unknown, known: readonly string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid(`the body must be a JSON object with ${known.join(', ')}`);
  for (const key of Object.keys(body)) if (!known.includes(key)) throw invalid(`unknown field ${key}; known: ${known.join(', ')}`);
  return body as Record<string, unknown>;
}

/** Which dead letters a replay or discard body names, in the body's words (not the CLI's flags). */
function readSelection(raw: unknown, action: 'replay' | 'discard', known: readonly string[]): ReplayRequest {
  const body = readObject(raw, known);
  const selection: ReplayRequest = {};
  if (body.ids !== undefined) {
    if (!Array.isArray(body.ids) || body.ids.some((id) => typeof id !== 'string' || id.trim() === '')) throw invalid('ids must be an array of event ids (non-empty strings)');
    if (body.ids.length > MAX_IDS) throw invalid(`ids may name at most ${MAX_IDS} events; use source or all for more`);
    if (body.ids.length > 0) selection.ids = body.ids as string[];
  }
  if (body.source !== undefined) selection.source = optionalSource(body.source, 'source');
  if (body.all !== undefined && typeof body.all !== 'boolean') throw invalid('all must be true or false');
  if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw invalid('dryRun must be true or false');
  if (body.confirm !== undefined && typeof body.confirm !== 'boolean') throw invalid('confirm must be true or false');
  const narrowed = selection.source !== undefined || selection.ids !== undefined;
  if (body.all === true && narrowed) throw invalid(`all: true ${action}s every dead letter: send it alone, or narrow with source and/or ids instead`);
  if (body.all === true) selection.all = true;
  else if (!narrowed) throw invalid(`say which dead letters to ${action}: source, ids, or all: true for every one`);
  if (body.dryRun === true) selection.dryRun = true;
  return selection;
}

function filterFacts(selection: ReplayRequest): Record<string, unknown> {
  return { ...(selection.source !== undefined ? { source: selection.source } : {}), ...(selection.ids !== undefined ? { ids: selection.ids.length } : {}), ...(selection.all === true ? { all: true } : {}) };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The login form: small, self-contained (no script, inline style only), with a message when there is one. */
function loginPage(reply: FastifyReply, status: number, message: string | null) {
  const note = message === null ? '' : `<p class="note" role="alert">${escapeHtml(message)}</p>`;
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in: connector console</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;background:#f4f5f7;color:#1d2330}
main{background:#fff;padding:2rem;border:1px solid #ccd;border-radius:8px;width:min(22rem,90vw)}
h1{font-size:1.25rem;margin:0 0 1rem}label{display:block;margin-bottom:.25rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #889;border-radius:4px}
button{margin-top:1rem;padding:.5rem 1rem;font:inherit;border:1px solid #1d2330;border-radius:4px;background:#1d2330;color:#fff;cursor:pointer}
.note{border-left:4px solid #b00;padding:.25rem .75rem;background:#fff3f3}
</style>
</head>
<body>
<main>
<h1>Connector console</h1>
${note}
<form method="post" action="/dashboard/login">
<label for="token">Admin token (ADMIN_TOKEN)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
`;
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    .send(html);
}
