/**
 * The composition root: builds the connector from its settings and runs one or both roles.
 * - `serve`: the HTTP app (webhooks, health); needs only the queue.
 * - `work`: the dispatcher; needs the queue, the sources and the database.
 * `start` runs both in one process. Stopping is graceful and ordered: stop accepting deliveries, let
 * the dispatcher finish the batch in hand, then close the queue and the database.
 */
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { createDatabase } from './db/create-database.ts';
import { Lifecycle } from './lifecycle.ts';
import type { Logger } from './log.ts';
import type { Queue } from './queue/queue.ts';
import { createQueue, type QueueDeps } from './queue/create-queue.ts';
import { buildApp } from './server/app.ts';
import { createSources } from './sources/index.ts';
import type { Source } from './sources/source.ts';
import { MINUTE } from './retry-policy.ts';
import { CheckpointStore } from './sync/checkpoints.ts';
import { Reconciler } from './sync/reconciler.ts';
import { Dispatcher } from './workers/dispatcher.ts';

/** With POLLING_ONLY, reconciliation runs at least this often. */
const POLLING_INTERVAL = 2 * MINUTE;

export interface Roles {
  serve: boolean;
  work: boolean;
}

export interface RunningConnector {
  /** Where the HTTP app listens, when serving. */
  url: string | null;
  app: FastifyInstance | null;
  queue: Queue;
  db: Database | null;
  lifecycle: Lifecycle;
  /** Graceful stop; safe to call more than once. */
  stop(): Promise<void>;
  /** Cuts short what a graceful stop waits for (slow vendor requests). */
  abort(): void;
  /** Runs a reconciliation backfill of every configured source now (worker role only). */
  reconcile(): Promise<void>;
}

export interface StartOptions {
  roles: Roles;
  log: Logger;
  /** Replaces the sources made from the settings (tests). */
  sources?: Source[];
  /** File-queue options for tests and harnesses (crash points, compaction threshold). */
  queue?: Pick<QueueDeps, 'crashPoint' | 'compactThresholdBytes'>;
}

export async function startConnector(config: Config, options: StartOptions): Promise<RunningConnector> {
  const { log, roles } = options;
  const lifecycle = new Lifecycle((err, name) => log.error({ err, lifecycleEvent: name }, 'lifecycle listener failed'));
  const queue = await createQueue(config, { ...options.queue, log: log.child({ component: 'queue' }), lifecycle });
  const closers: Array<() => Promise<void>> = [() => queue.close()];
  let app: FastifyInstance | null = null;
  let db: Database | null = null;
  let dispatcher: Dispatcher | null = null;
  let reconciler: Reconciler | null = null;
  let url: string | null = null;

  try {
    const sources = options.sources ?? createSources(config, { log });
    for (const source of sources) {
      if (!source.apiConfigured) log.warn({ source: source.name }, `${source.name}: API credentials are not set; webhooks are received, but enrichment and backfill are off`);
    }

    if (roles.work) {
      const database = await createDatabase(config, { log: log.child({ component: 'db' }) });
      closers.unshift(() => database.close());
      await database.migrate();
      db = database;
      dispatcher = new Dispatcher({ queue, db, sources, log, lifecycle, maxAttempts: config.MAX_QUEUE_ATTEMPTS, concurrency: config.WORKER_CONCURRENCY });
      dispatcher.start();
      log.info({ backend: db.backend, concurrency: config.WORKER_CONCURRENCY }, 'worker started');

      const interval = config.BACKFILL_INTERVAL_MINUTES * MINUTE;
      reconciler = new Reconciler({
        sources,
        log,
        intervalMs: config.POLLING_ONLY ? Math.min(interval || POLLING_INTERVAL, POLLING_INTERVAL) : interval,
        onStart: config.BACKFILL_ON_START,
        deps: { queue, checkpoints: new CheckpointStore(database, config.checkpointDir), lifecycle, log, overlapSeconds: config.BACKFILL_OVERLAP_SECONDS, initialHours: config.BACKFILL_INITIAL_HOURS },
      });
      reconciler.start();
    }

    if (roles.serve) {
      const database = db;
      app = await buildApp({
        log,
        queue,
        sources,
        lifecycle,
        maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
        healthDetails: database === null ? undefined : async () => ({ database: await database.health() }),
      });
      await app.listen({ host: config.HOST, port: config.PORT });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : config.PORT;
      url = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}`;
      log.info({ url }, `listening on ${url}`);
      for (const source of sources) log.info({ source: source.name }, `${source.name} webhook URL: ${config.PUBLIC_URL ?? url}/webhooks/${source.name}`);
    }
  } catch (err) {
    await reconciler?.stop();
    await dispatcher?.stop();
    await app?.close();
    for (const close of closers) await close().catch(() => {});
    throw err;
  }

  let stopping: Promise<void> | null = null;
  return {
    url,
    app,
    queue,
    db,
    lifecycle,
    abort: () => dispatcher?.abort(),
    reconcile: () => reconciler?.runAll() ?? Promise.resolve(),
    stop: () => {
      stopping ??= (async () => {
        await app?.close();
        await reconciler?.stop();
        await dispatcher?.stop();
        for (const close of closers) await close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
