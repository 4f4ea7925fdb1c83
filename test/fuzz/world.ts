/**
 * The connector as the fuzz suite runs it: in this process, the real HTTP app (`buildApp`, sent to with
 * `inject()`), the real file queue on a temp directory, the real SQLite database and the real
 * Dispatcher with both real sources built from settings parsed by the product's own `parseConfig`. No
 * vendor API credentials are set, so nothing leaves the process. The dispatcher retries after a few
 * milliseconds instead of the production backoff, so that a batch drains quickly.
 *
 * What the suite observes is what an operator would: HTTP answers, rows in connector.db, the dead
 * letters, the queue's counts, the log. Two seams are recorded, both passing every call through
 * unchanged: the queue the app enqueues into (which events each delivery produced), and each source's
 * `handle` (the changes each event produced, so that a row can be traced back to its delivery).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { parseConfig, type Config } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { createDatabase } from '../../src/db/create-database.ts';
import type { ErrorRecord } from '../../src/errors.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import type { Changes, QueueEvent } from '../../src/model.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import type { DeadLetter, Queue, QueueStats } from '../../src/queue/queue.ts';
import { buildApp } from '../../src/server/app.ts';
import { createSources } from '../../src/sources/index.ts';
import type { Source } from '../../src/sources/source.ts';
import { Dispatcher } from '../../src/workers/dispatcher.ts';

export const TEAMWORK_TOKEN = 'fuzz-teamwork-token';
export const MISSIVE_SECRET = 'fuzz-missive-secret';

/** What one event became, as the dispatcher reported it. */
export type Outcome =
  | { kind: 'succeeded'; records: number; changes: Changes | undefined }
  | { kind: 'dead-lettered'; error: ErrorRecord };

export interface World {
  config: Config;
  /** Whether webhook secrets are configured (so that unsigned deliveries must be refused); else WEBHOOKS_ALLOW_UNSIGNED=true. */
  secrets: boolean;
  app: FastifyInstance;
  /** Where the app listens (http://127.0.0.1:<port>), for the deliveries sent over a real socket. */
  url: string;
  queue: FileQueue;
  db: Database;
  /** Events enqueued by the app, in order. */
  enqueued: QueueEvent[];
  /** Runs `send` and collects into `sink` the events enqueued for it (deliveries may be sent concurrently). */
  track<T>(sink: QueueEvent[], send: () => Promise<T>): Promise<T>;
  /** Final outcome per event id (the last report wins: a retried event reports again). */
  outcomes: Map<string, Outcome>;
  /** Log lines of level warn and up, the newest 200 kept. */
  recentLog: Array<Record<string, unknown>>;
  /** How many times a queue operation failed and was tried again (a lane stuck on one event). */
  queueOpRetries: number;
  /** Events whose ack, retry or dead-lettering failed and is being tried again (from the log). */
  stuckEvents: Set<string>;
  stats(): Promise<QueueStats>;
  deadLetters(): Promise<DeadLetter[]>;
  task(id: string): Record<string, unknown> | undefined;
  email(id: string): Record<string, unknown> | undefined;
  /** Forgets what was recorded about earlier batches (keeps memory flat over a long run). */
  forget(): void;
  close(): Promise<void>;
}

export async function startWorld(options: { secrets: boolean }): Promise<World> {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-fuzz-'));
  const config = parseConfig({
    DATA_DIR: path.join(dir, 'data'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKFILL_ON_START: 'false',
    BACKFILL_INTERVAL_MINUTES: '0',
    // Without secrets every delivery would be refused (issue 15 item 3): the no-secret half is the
    // operator's explicit opt-out, where unsigned deliveries of every shape get through to the handlers.
    ...(options.secrets ? { TEAMWORK_WEBHOOK_TOKEN: TEAMWORK_TOKEN, MISSIVE_WEBHOOK_SECRET: MISSIVE_SECRET } : { WEBHOOKS_ALLOW_UNSIGNED: 'true' }),
  });

  const recentLog: Array<Record<string, unknown>> = [];
  let queueOpRetries = 0;
  const stuckEvents = new Set<string>();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.trim() === '') continue;
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text) as Record<string, unknown>;
        } catch {
          line = { msg: text.slice(0, 500) };
        }
        if (typeof line.msg === 'string' && /^could not (ack|retry|dead-letter) the event; trying again/.test(line.msg)) {
          queueOpRetries++;
          if (typeof line.eventId === 'string') stuckEvents.add(line.eventId);
        }
        // Bodies can be megabytes: keep only the facts.
        recentLog.push({ level: line.level, msg: line.msg, code: line.code, err: typeof line.err === 'object' && line.err !== null ? (line.err as { message?: unknown }).message : line.err });
        if (recentLog.length > 200) recentLog.shift();
      }
      done();
    },
  });
  const log = createLogger({ level: 'warn', console: false, destination: sink });
  const lifecycle = new Lifecycle((err, name) => log.error({ err, lifecycleEvent: name }, 'lifecycle listener failed'));

  const queue = await FileQueue.open({ dir: config.queueDir, log: log.child({ component: 'queue' }), lifecycle });
  const db = await createDatabase(config, { log });
  await db.migrate();

  const enqueued: QueueEvent[] = [];
  const sinks = new AsyncLocalStorage<QueueEvent[]>();
  const outcomes = new Map<string, Outcome>();
  const changesById = new Map<string, Changes>();
  lifecycle.on('event:succeeded', ({ eventId, records }) => void outcomes.set(eventId, { kind: 'succeeded', records, changes: changesById.get(eventId) }));
  lifecycle.on('event:dead-lettered', ({ eventId, error }) => void outcomes.set(eventId, { kind: 'dead-lettered', error }));

  // Recording seams: every call passes through unchanged.
  const recordingSources: Source[] = createSources(config, { log }).map((source) => {
    const recording: Source = {
      name: source.name,
      apiConfigured: source.apiConfigured,
      verify: (delivery) => source.verify(delivery),
      parseWebhook: (delivery) => source.parseWebhook(delivery),
      handle: async (event, context) => {
        const changes = await source.handle(event, context);
        changesById.set(event.id, changes);
        return changes;
      },
    };
    return recording;
  });
  const appQueue: Queue = {
    backend: queue.backend,
    enqueue: async (events) => {
      await queue.enqueue(events);
      enqueued.push(...events);
      sinks.getStore()?.push(...events);
    },
    claim: (o) => queue.claim(o),
    ack: (id) => queue.ack(id),
    retry: (id, error, o) => queue.retry(id, error, o),
    deadLetter: (id, error) => queue.deadLetter(id, error),
    stats: () => queue.stats(),
    peek: (limit) => queue.peek(limit),
    listDeadLetters: (filter) => queue.listDeadLetters(filter),
    replayDeadLetters: (filter, o) => queue.replayDeadLetters(filter, o),
    discardDeadLetters: (filter, o) => queue.discardDeadLetters(filter, o),
    waitForWork: (ms, options) => queue.waitForWork(ms, options),
    close: () => queue.close(),
  };

  const dispatcher = new Dispatcher({
    queue,
    db,
    sources: recordingSources,
    log,
    lifecycle,
    maxAttempts: config.MAX_QUEUE_ATTEMPTS,
    concurrency: config.WORKER_CONCURRENCY,
    retryDelay: () => 5,
    idleWaitMs: 50,
  });
  dispatcher.start();
  const app = await buildApp({ log, queue: appQueue, sources: recordingSources, lifecycle, maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;

  const reader = new BetterSqlite3(config.sqlitePath, { readonly: true, fileMustExist: true });
  const selectTask = reader.prepare('SELECT id, title, updated_at, deleted FROM tasks WHERE id = ?');
  const selectEmail = reader.prepare('SELECT id, conversation_id, subject, updated_at, deleted FROM emails WHERE id = ?');

  let closed = false;
  return {
    config,
    secrets: options.secrets,
    app,
    url,
    queue,
    db,
    enqueued,
    track: (sink, send) => sinks.run(sink, send),
    outcomes,
    recentLog,
    get queueOpRetries() {
      return queueOpRetries;
    },
    stuckEvents,
    stats: () => queue.stats(),
    deadLetters: () => queue.listDeadLetters({ all: true }),
    task: (id) => selectTask.get(id) as Record<string, unknown> | undefined,
    email: (id) => selectEmail.get(id) as Record<string, unknown> | undefined,
    forget() {
      enqueued.length = 0;
      outcomes.clear();
      changesById.clear();
      recentLog.length = 0;
      queueOpRetries = 0;
      stuckEvents.clear();
    },
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      dispatcher.abort();
      await dispatcher.stop();
      await queue.close();
      await db.close();
      reader.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
