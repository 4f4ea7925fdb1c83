/**
 * The composition root: builds the connector from its settings and runs one or both roles.
 * - `serve`: the HTTP app (webhooks, health); needs only the queue.
 * - `work`: the dispatcher; needs the queue, the sources and the database.
 * `start` runs both in one process. Stopping is graceful and ordered: close the tunnel and stop
 * accepting deliveries, let the dispatcher finish the event in hand, then close the queue and the
 * database.
 *
 * Where vendors reach us (serve role), printed per source at start-up: the ngrok tunnel's URL when
 * NGROK_AUTHTOKEN is set and it opened, else PUBLIC_URL, else the local URL (with a note that vendors
 * cannot reach it). With POLLING_ONLY no tunnel is opened and no webhook is expected: the endpoints
 * still answer, and the worker reconciles every few minutes instead.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { SOURCE_API_SETTINGS } from './admin/source-settings.ts';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { createDatabase } from './db/create-database.ts';
import { Lifecycle } from './lifecycle.ts';
import type { Logger } from './log.ts';
import type { Queue } from './queue/queue.ts';
import { createQueue, type QueueDeps } from './queue/create-queue.ts';
import { buildApp } from './server/app.ts';
import { REPLAY_WINDOW_FILE, ReplayWindow } from './server/replay-window.ts';
import { createSources } from './sources/index.ts';
import type { Source } from './sources/source.ts';
import { HOUR, MINUTE } from './retry-policy.ts';
import { CheckpointStore } from './sync/checkpoints.ts';
import { Reconciler } from './sync/reconciler.ts';
import { openTunnel, type Tunnel, type TunnelOptions } from './tunnel.ts';
import { Dispatcher } from './workers/dispatcher.ts';
import { IngestPressure } from './workers/ingest-pressure.ts';

/** With POLLING_ONLY, reconciliation runs at least this often. */
const POLLING_INTERVAL = 2 * MINUTE;

export interface Roles {
  serve: boolean;
  work: boolean;
}

export interface RunningConnector {
  /** Where the HTTP app listens, when serving. */
  url: string | null;
  /** The base URL vendors reach us at: the tunnel's, else PUBLIC_URL; null when neither (or not serving). */
  publicUrl: string | null;
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
  /** ngrok options for tests (module loader, ingress address, timeout); the token comes from the settings. */
  tunnel?: Pick<TunnelOptions, 'load' | 'serverAddr' | 'timeoutMs'>;
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
  let publicUrl: string | null = null;
  let tunnel: Tunnel | null = null;
  const interval = config.BACKFILL_INTERVAL_MINUTES * MINUTE;
  const reconcileEveryMs = config.POLLING_ONLY ? Math.min(interval || POLLING_INTERVAL, POLLING_INTERVAL) : interval;
  const minutes = Math.round(reconcileEveryMs / MINUTE);
  const reconcileEvery = reconcileEveryMs > 0 ? `every ${minutes} minute${minutes === 1 ? '' : 's'}` : 'on start-up only';

  try {
    const sources = options.sources ?? createSources(config, { log });
    for (const source of sources) {
      if (!source.apiConfigured) {
        log.warn({ source: source.name }, `${source.name}: API credentials are not set (${SOURCE_API_SETTINGS[source.name]}); webhooks are received and stored as they come, but enrichment and backfill are off`);
      }
      // Loud on purpose: anyone who can reach the endpoint can write to the database (docs/configuration.md).
      if (source.acceptsUnsigned === true) {
        const setting = source.name === 'teamwork' ? 'TEAMWORK_WEBHOOK_TOKEN' : 'MISSIVE_WEBHOOK_SECRET';
        const bodies = source.apiConfigured ? 'each is re-read from the API before it is stored' : 'their bodies are stored as sent, since the API is not configured';
        log.warn({ source: source.name, unsigned: true }, `${source.name}: WEBHOOKS_ALLOW_UNSIGNED is on and ${setting} is not set: deliveries are accepted WITHOUT a signature from anyone who can reach the endpoint (${bodies}); set ${setting}`);
      }
    }

    if (roles.work) {
      const database = await createDatabase(config, { log: log.child({ component: 'db' }) });
      closers.unshift(() => database.close());
      await database.migrate();
      db = database;
      // In one process with the webhooks, deliveries go first when they flood the event loop.
      const pressure = roles.serve ? new IngestPressure(lifecycle) : null;
      if (pressure !== null) closers.push(async () => pressure.close());
      dispatcher = new Dispatcher({ queue, db, sources, log, lifecycle, maxAttempts: config.MAX_QUEUE_ATTEMPTS, concurrency: config.WORKER_CONCURRENCY, yieldTo: pressure === null ? undefined : () => pressure.high });
      dispatcher.start();
      log.info({ backend: db.backend, concurrency: config.WORKER_CONCURRENCY }, 'worker started');

      reconciler = new Reconciler({
        sources,
        log,
        intervalMs: reconcileEveryMs,
        onStart: config.BACKFILL_ON_START,
        deps: { queue, checkpoints: new CheckpointStore(database, config.checkpointDir), lifecycle, log, overlapSeconds: config.BACKFILL_OVERLAP_SECONDS, initialHours: config.BACKFILL_INITIAL_HOURS },
      });
      reconciler.start();
      if (config.POLLING_ONLY && !roles.serve) log.info({ pollingOnly: true }, `POLLING_ONLY is on: webhooks are not expected; reconciling ${reconcileEvery}`);
    }

    if (roles.serve) {
      const database = db;
      const replayWindow = config.DELIVERY_REPLAY_WINDOW_HOURS === 0 ? undefined : await ReplayWindow.open({
        file: path.join(config.queueDir, REPLAY_WINDOW_FILE),
        windowMs: config.DELIVERY_REPLAY_WINDOW_HOURS * HOUR,
        maxEntries: config.DELIVERY_REPLAY_MAX_ENTRIES,
        log,
      });
      if (replayWindow !== undefined) closers.push(() => replayWindow.close());
      app = await buildApp({
        log,
        queue,
        sources,
        lifecycle,
        replayWindow,
        maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
        limits: {
          headersTimeoutMs: config.HTTP_HEADERS_TIMEOUT_MS,
          requestTimeoutMs: config.HTTP_REQUEST_TIMEOUT_MS,
          keepAliveTimeoutMs: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
          ...(config.HTTP_MAX_CONNECTIONS === undefined ? {} : { maxConnections: config.HTTP_MAX_CONNECTIONS }),
          maxConnectionsPerClient: config.HTTP_MAX_CONNECTIONS_PER_CLIENT,
          bodyBytesInFlight: config.WEBHOOK_BODIES_IN_FLIGHT_BYTES,
          clientBodyBytesInFlight: config.WEBHOOK_CLIENT_BODIES_IN_FLIGHT_BYTES,
        },
        refusalLinesPerMinute: config.LOG_REFUSALS_PER_MINUTE,
        healthDetails: database === null ? undefined : async () => ({ database: await database.health() }),
      });
      await app.listen({ host: config.HOST, port: config.PORT });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : config.PORT;
      url = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}`;
      log.info({ url }, `listening on ${url}`);
      if (config.POLLING_ONLY) {
        log.info({ pollingOnly: true }, `POLLING_ONLY is on: webhooks are not expected (the endpoints still answer) and no tunnel is opened; the worker reconciles ${reconcileEvery}`);
      } else {
        tunnel = await openTunnel({ port, host: config.HOST, authtoken: config.NGROK_AUTHTOKEN, log: log.child({ component: 'tunnel' }), ...options.tunnel });
        publicUrl = tunnel?.url ?? config.PUBLIC_URL ?? null;
        for (const source of sources) {
          const webhookUrl = `${publicUrl ?? url}/webhooks/${source.name}`;
          log.info({ source: source.name, webhookUrl }, `${source.name} webhook URL: ${webhookUrl}`);
        }
        if (tunnel !== null) {
          log.info({ tunnel: tunnel.url }, `register the tunnel's webhook URLs with \`npm run register-webhooks -- --url ${tunnel.url}\` (on ngrok's free plan the URL changes on every start)`);
        } else if (publicUrl === null) {
          log.info(`vendors cannot reach ${url}: set PUBLIC_URL (or NGROK_AUTHTOKEN for a tunnel), or POLLING_ONLY=true to rely on reconciliation`);
        }
      }
    }
  } catch (err) {
    await tunnel?.close();
    await reconciler?.stop();
    await dispatcher?.stop();
    await app?.close();
    for (const close of closers) await close().catch(() => {});
    throw err;
  }

  let stopping: Promise<void> | null = null;
  return {
    url,
    publicUrl,
    app,
    queue,
    db,
    lifecycle,
    abort: () => dispatcher?.abort(),
    reconcile: () => reconciler?.runAll() ?? Promise.resolve(),
    stop: () => {
      stopping ??= (async () => {
        await tunnel?.close();
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
