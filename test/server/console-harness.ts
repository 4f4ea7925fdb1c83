/**
 * A console under test: the real app (buildApp) on a real file queue in a temp dir, answering through
 * inject(); a logger whose JSON lines the test reads; a clock the test moves (sessions, login limit).
 * The ActivityProvider is the real one (src/admin/activity.ts) on the harness's lifecycle and queue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Activity } from '../../src/admin/activity.ts';
import { redact } from '../../src/admin/redact.ts';
import { parseConfig, type Config } from '../../src/config.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import type { Logger } from '../../src/log.ts';
import { createQueue } from '../../src/queue/create-queue.ts';
import type { Queue } from '../../src/queue/queue.ts';
import { buildApp } from '../../src/server/app.ts';
import type { ConsoleOptions } from '../../src/server/console/routes.ts';
import type { Source } from '../../src/sources/source.ts';
import { createSources } from '../../src/sources/index.ts';
import { logSink, type LogLine } from '../admin/helpers.ts';

export const TOKEN = 'console-test-token-0123456789abcdef';

export interface ConsoleHarness {
  app: FastifyInstance;
  queue: Queue;
  lines: LogLine[];
  lifecycle: Lifecycle;
  config: Config;
  sources: readonly Source[];
  clock: { now: number };
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** ADMIN_TOKEN; null: unset (the console off). */
  token?: string | null;
  env?: Record<string, string>;
  console?: Partial<ConsoleOptions>;
  /** More console options, made from the harness's parts (a BackfillJobs over its queue, say). */
  extend?: (parts: { queue: Queue; sources: readonly Source[]; config: Config; log: Logger; closing: Array<() => Promise<void>> }) => Promise<Partial<ConsoleOptions>>;
}

export async function consoleHarness(options: HarnessOptions = {}): Promise<ConsoleHarness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-console-'));
  const config = parseConfig({ DATA_DIR: dir, ...options.env });
  const { log, lines } = logSink('info');
  const lifecycle = new Lifecycle(() => {});
  const queue = await createQueue(config, { log, lifecycle });
  const sources = createSources(config, { log });
  const clock = { now: Date.now() };
  const activity = new Activity({ lifecycle, queue, sources, database: () => null, redact });
  activity.start();
  const token = options.token === undefined ? TOKEN : options.token;
  const closing: Array<() => Promise<void>> = [];
  const extra = options.extend === undefined ? {} : await options.extend({ queue, sources, config, log, closing });
  const app = await buildApp({
    log,
    queue,
    sources,
    lifecycle,
    maxBodyBytes: 1 << 20,
    healthDetails: async () => ({ database: { ok: true, backend: 'sqlite' } }),
    console: {
      ...(token === null ? {} : { adminToken: token }),
      trustProxy: config.TRUST_PROXY,
      activity,
      process: { version: '9.9.9-test', role: 'start', startedAt: new Date(Date.now() - 5000) },
      now: () => clock.now,
      ...options.console,
      ...extra,
    },
  });
  return {
    app,
    queue,
    lines,
    lifecycle,
    config,
    sources,
    clock,
    close: async () => {
      await app.close();
      await activity.close();
      for (const close of closing) await close();
      await queue.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The value of the session cookie a response set (name=value), or undefined. */
export function sessionFrom(response: LightMyRequestResponse): string | undefined {
  const header = response.headers['set-cookie'];
  const cookie = (Array.isArray(header) ? header : [header]).find((c) => c?.startsWith('connector_session='));
  return cookie?.split(';')[0];
}

/** Logs in (from `remoteAddress`) and returns the Cookie header value and the CSRF token. */
export async function login(app: FastifyInstance, token = TOKEN, remoteAddress = '127.0.0.1'): Promise<{ cookie: string; csrf: string }> {
  const answer = await app.inject({ method: 'POST', url: '/dashboard/login', payload: `token=${encodeURIComponent(token)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, remoteAddress });
  if (answer.statusCode !== 303) throw new Error(`login answered ${answer.statusCode}: ${answer.body}`);
  const cookie = sessionFrom(answer)!;
  const session = await app.inject({ url: '/dashboard/api/session', headers: { cookie } });
  return { cookie, csrf: (session.json() as { csrfToken: string }).csrfToken };
}

/** Every route under /dashboard in the app's route table (from printRoutes), with a sample URL for each. */
export function dashboardRoutes(app: FastifyInstance): Array<{ method: string; url: string }> {
  const routes: Array<{ method: string; url: string }> = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([^)]+)\))?$/.exec(line);
    if (match === null) continue;
    const depth = (match[1] as string).length / 4;
    stack.length = depth;
    const url = (depth > 0 ? (stack[depth - 1] as string) : '') + (match[2] as string);
    stack.push(url);
    if (match[3] === undefined || !url.startsWith('/dashboard')) continue;
    for (const method of match[3].split(', ')) routes.push({ method, url: url.replace(/:[A-Za-z]+/g, 'sample-id').replace(/\*/g, 'any') });
  }
  return routes;
}
