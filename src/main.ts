/**
 * The composition root: builds the connector from its settings and runs one or both roles.
 * - `serve`: the HTTP app (webhooks, health); needs only the queue.
 * - `work`: the dispatcher; needs the queue, the sources and the database.
 * `start` runs both in one process. The worker side starts in the background (WorkerStart, below): it
 * waits for the database (a database down at boot is an outage, not a start-up failure) and, while
 * another process consumes the queue, stands by; neither keeps the webhooks from listening. Only a bad
 * setting stops a start. Stopping is graceful and ordered: close the tunnel and stop accepting
 * deliveries, end the worker's waits, let the dispatcher finish the event in hand, then close the queue
 * and the database.
 *
 * Who reconciles: exactly one worker at a time. With the file queue, the one holding the queue's
 * consumer lock; with a shared queue (QUEUE_BACKEND=redis|postgres, workers on any number of hosts),
 * the one holding the `reconciler` lease in the engine (src/sync/leases.ts, src/sync/leadership.ts):
 * every worker processes events, only the leader backfills, and a follower takes over within
 * RECONCILE_LEASE_SECONDS (plus one try) when the leader dies, at once when it stops.
 *
 * Where vendors reach us (serve role), printed per source at start-up: the ngrok tunnel's URL when
 * NGROK_AUTHTOKEN is set and it opened, else PUBLIC_URL, else the local URL (with a note that vendors
 * cannot reach it). With POLLING_ONLY no tunnel is opened and no webhook is expected: the endpoints
 * still answer, and the worker reconciles every few minutes instead.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Activity } from './admin/activity.ts';
import { createActivityBoard } from './admin/activity-board.ts';
import { BackfillJobs } from './admin/backfill-jobs.ts';
import { redact } from './admin/redact.ts';
import { SOURCE_API_SETTINGS } from './admin/source-settings.ts';
import { sharedQueueSqliteWarning, type Config } from './config.ts';
import type { Database } from './db/database.ts';
import { createDatabase } from './db/create-database.ts';
import { ConnectorError } from './errors.ts';
import { Lifecycle } from './lifecycle.ts';
import type { Logger } from './log.ts';
import type { Queue } from './queue/queue.ts';
import { createQueue, type QueueDeps } from './queue/create-queue.ts';
import { engineSettings } from './queue/engine.ts';
import { buildApp } from './server/app.ts';
import { HealthChecks, healthThresholds } from './server/health.ts';
import { createAlerts, watchVendorAuth, type Alerts } from './alerts/alerts.ts';
import { webhookLister } from './alerts/webhook-registrations.ts';
import { CONSOLE_OFF_NOTICE, consoleOnNotice } from './server/console/auth.ts';
import type { ConsoleOptions } from './server/console/routes.ts';
import { packageVersion } from './version.ts';
import { describeDatabaseFailure } from './startup-failure.ts';
import { REPLAY_WINDOW_FILE, ReplayWindow } from './server/replay-window.ts';
import { createSources, type SourceTuning } from './sources/index.ts';
import type { BudgetStore } from './budget/budget-store.ts';
import { createBudgetStore } from './budget/create-budget-store.ts';
import type { Source } from './sources/source.ts';
import type { VendorState } from './http/rate-limiter.ts';
import { HOUR, MINUTE, SECOND, sleep } from './retry-policy.ts';
import { backfillDeps } from './sync/backfill.ts';
import { Reconciler } from './sync/reconciler.ts';
import { Leadership, leaseTiming } from './sync/leadership.ts';
import { createLeases, holderId, RECONCILER_LEASE, type Leases } from './sync/leases.ts';
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
  /** The sources this process runs. */
  sources: readonly Source[];
  /** The health checks behind /health (src/server/health.ts). */
  health: HealthChecks;
  /** The alerts (src/alerts/alerts.ts): `active()` (the console's banner), `registrations()` (its overview). */
  alerts: Alerts;
  /** What this process saw, for the operator console; null when the console is off (no ADMIN_TOKEN). */
  activity: Activity | null;
  lifecycle: Lifecycle;
  /** Graceful stop; safe to call more than once. */
  stop(): Promise<void>;
  /** Cuts short what a graceful stop waits for (slow vendor requests). */
  abort(): void;
  /**
   * Runs a reconciliation backfill of every configured source now (worker role only; with a shared
   * queue, only while this worker holds the reconciler lease: elsewhere it does nothing).
   */
  reconcile(): Promise<void>;
}

export interface StartOptions {
  roles: Roles;
  log: Logger;
  /** Replaces the sources made from the settings (tests). */
  sources?: Source[];
  /** Vendor windows scaled down for the sources made from the settings (tests: minutes in seconds). */
  sourceTuning?: SourceTuning;
  /** File-queue options for tests and harnesses (crash points, compaction threshold). */
  queue?: Pick<QueueDeps, 'crashPoint' | 'compactThresholdBytes'>;
  /** ngrok options for tests (module loader, ingress address, timeout); the token comes from the settings. */
  tunnel?: Pick<TunnelOptions, 'load' | 'serverAddr' | 'timeoutMs'>;
}

export async function startConnector(config: Config, options: StartOptions): Promise<RunningConnector> {
  const { log, roles } = options;
  const lifecycle = new Lifecycle((err, name) => log.error({ err, lifecycleEvent: name }, 'lifecycle listener failed'));
  let queueDurability: string | undefined;
  const queue = await createQueue(config, { ...options.queue, log: log.child({ component: 'queue' }), lifecycle, onDurabilityWarning: (warning) => (queueDurability = warning) });
  const closers: Array<() => Promise<void>> = [() => queue.close()];
  let app: FastifyInstance | null = null;
  let worker: WorkerStart | null = null;
  let url: string | null = null;
  let publicUrl: string | null = null;
  let tunnel: Tunnel | null = null;
  const interval = config.BACKFILL_INTERVAL_MINUTES * MINUTE;
  const reconcileEveryMs = config.POLLING_ONLY ? Math.min(interval || POLLING_INTERVAL, POLLING_INTERVAL) : interval;
  const reconcileEvery = describeEvery(reconcileEveryMs);
  let sources: Source[];
  // Made in the try below, which either makes them or throws.
  let health!: HealthChecks;
  let alerts!: Alerts;
  let activity: Activity | null = null;
  /** A `serve` process's console reads rows and checkpoints through a database of its own, once migrated. */
  let readDatabase: Database | null = null;

  try {
    // With the shared queue, several workers call the vendors: their budgets live in the queue's engine.
    const budgets: BudgetStore | null = await createBudgetStore(config, { log: log.child({ component: 'budgets' }) });
    if (budgets !== null) {
      const store = budgets;
      closers.push(() => store.close());
      log.info({ engine: store.engine }, `vendor budgets are shared by every worker through the queue's ${store.engine === 'redis' ? 'Redis' : 'PostgreSQL'} (prefix ${config.QUEUE_PREFIX})`);
    }
    sources = options.sources ?? createSources(config, { log, budgets, ...(options.sourceTuning !== undefined ? { tuning: options.sourceTuning } : {}) });
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

    // What this process sees, for the operator console (ADMIN_TOKEN): posted to the board beside the
    // queue, so that the console of any process shows the workers' events too.
    if (config.ADMIN_TOKEN !== undefined) {
      if (!roles.work) {
        // Migrated (as every process may: migrations are safe side by side) in the background, and
        // used once that succeeded: a database away at start must not keep the webhooks closed.
        const opened = await createDatabase(config, { log: log.child({ component: 'db' }), budgets });
        const stopTrying = new AbortController();
        closers.unshift(async () => {
          stopTrying.abort();
          await opened.close();
        });
        void (async () => {
          for (let failures = 0; !stopTrying.signal.aborted; failures++) {
            try {
              await opened.migrate();
              readDatabase = opened;
              return;
            } catch (err) {
              log.debug({ err }, 'the console cannot read the database yet; trying again');
              await sleep(Math.min(500 * 2 ** failures, 30 * SECOND), stopTrying.signal);
            }
          }
        })();
      }
      const board = await createActivityBoard(engineSettings(config), config.DATA_DIR, log.child({ component: 'console' }));
      const role = roles.serve && roles.work ? 'start' : roles.serve ? 'serve' : 'work';
      const started = new Activity({ lifecycle, queue, sources, database: () => worker?.database ?? readDatabase, redact, board: { board, id: holderId(role), role } });
      started.start();
      activity = started;
      closers.push(() => started.close());
    }

    // The worker side starts in the background (see WorkerStart): the webhooks below listen whether or
    // not the database is there yet, or another process consumes the queue.
    if (roles.work) {
      const sqliteWarning = sharedQueueSqliteWarning(config);
      if (sqliteWarning !== null) log.warn({ dbBackend: 'sqlite', queueBackend: config.QUEUE_BACKEND }, sqliteWarning);
      worker = new WorkerStart({
        config,
        log,
        roles,
        queue,
        lifecycle,
        sources,
        budgets,
        onDatabase: (database) => closers.unshift(() => database.close()),
        reconcileEveryMs,
        reconcileEvery,
      });
      worker.start();
      if (config.POLLING_ONLY && !roles.serve) log.info({ pollingOnly: true }, `POLLING_ONLY is on: webhooks are not expected; reconciling ${reconcileEvery}`);
    }

    // Health checks and alerts, in every process. A `serve` process alerts on its queue only: the
    // workers alert on the rest (src/alerts/alert-monitor.ts, `conditions`).
    const starting = worker;
    const checks = new HealthChecks({
      queue,
      lifecycle,
      queueDir: config.queueDir,
      thresholds: healthThresholds(config),
      ...(starting === null ? {} : { worker: { facts: () => starting.health() } }),
      ...(queueDurability === undefined ? {} : { queueDurability }),
    });
    health = checks;
    let lister: ReturnType<typeof webhookLister> = null;
    const watching = createAlerts({
      config,
      lifecycle,
      health: checks,
      log,
      ...(roles.work ? {} : { conditions: ['queue_unavailable'] as const }),
      listWebhooks: (signal) => (lister === null ? Promise.reject(new Error('no public URL (PUBLIC_URL or the tunnel), or POLLING_ONLY: nothing to look for')) : lister(signal)),
    });
    alerts = watching;

    if (roles.serve) {
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
        health: checks,
        alerts: watching,
        ...(activity === null ? {} : { console: await consoleOptions(config, { log, roles, queue, lifecycle, sources, activity, health: checks, alerts: watching, database: () => worker?.database ?? readDatabase, closers }) }),
      });
      await app.listen({ host: config.HOST, port: config.PORT });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : config.PORT;
      url = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}`;
      log.info({ url }, `listening on ${url}`);
      log.info({ console: activity !== null }, activity !== null ? consoleOnNotice(url) : CONSOLE_OFF_NOTICE);
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
    // The webhook registrations are looked at where vendors reach us: the tunnel's URL, or PUBLIC_URL.
    lister = webhookLister(config, publicUrl ?? config.PUBLIC_URL ?? null, log);
    watching.start();
    closers.unshift(() => watching.stop());
    closers.push(async () => checks.close());
    // A configuration error of the worker side stops the start here; an outage does not.
    await worker?.firstOutcome;
  } catch (err) {
    await worker?.stop();
    await tunnel?.close();
    await app?.close();
    for (const close of closers) await close().catch(() => {});
    throw err;
  }

  let stopping: Promise<void> | null = null;
  return {
    health,
    alerts,
    url,
    publicUrl,
    app,
    queue,
    sources,
    activity,
    get db() {
      return worker?.database ?? null;
    },
    lifecycle,
    abort: () => worker?.dispatcher?.abort(),
    reconcile: () => worker?.reconciler?.runAll() ?? Promise.resolve(),
    stop: () => {
      stopping ??= (async () => {
        await tunnel?.close();
        await app?.close();
        await worker?.stop();
        for (const close of closers) await close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}

/** The longest pause between two tries of the database while the worker waits for it, ms. */
const DATABASE_RETRY_MAX_MS = 5 * SECOND;
/** How often the worker repeats that it waits for the database, ms. */
const DATABASE_WAIT_LINE_EVERY_MS = 30 * SECOND;
/** How often a worker on standby tries the consumer lock, ms: bounds how soon it takes over. */
const STANDBY_POLL_MS = SECOND;

interface WorkerStartOptions {
  config: Config;
  log: Logger;
  roles: Roles;
  queue: Queue;
  lifecycle: Lifecycle;
  sources: Source[];
  /** The shared vendor budgets (Airtable's, for the database), or null. */
  budgets: BudgetStore | null;
  reconcileEveryMs: number;
  /** The same, in words ("every 15 minutes"). */
  reconcileEvery: string;
  /** The database object exists (migrated or not): the caller closes it on stop, after `stop()`. */
  onDatabase(database: Database): void;
}

type WorkerState = { state: 'starting' } | { state: 'waiting for the database'; cause: string } | { state: 'standby'; holder: string } | { state: 'running' };

/**
 * The worker side's start, in the background so that nothing it waits for keeps the webhooks closed:
 * 1. the database: created and migrated. While that fails for any reason but a setting (unreachable,
 *    refused credentials during a rotation, a database not created yet, read-only...), the worker waits:
 *    one WARN line at once and every 30 s ("waiting for the database (<cause>); deliveries are being
 *    queued"), a new try every few seconds, and /health says the database is not ok. A bad setting
 *    (CONN_ERR_CONFIG_INVALID) on the first try fails the start (exit 2).
 * 2. the queue's consumer lock (one process claims): while another live process holds it, this worker
 *    is a standby. One INFO line ("standing by; pid N holds the queue"), a try every second, and no
 *    claim, no backfill and no reconciliation meanwhile (they would repeat the holder's vendor
 *    requests). When the holder stops (or dies, or freezes for the lock's stale time), the standby
 *    takes the lock, says so in one line and goes on.
 * 3. the dispatcher and the reconciler (with its start-up backfill) start. With a shared queue (no
 *    consumer lock: every worker claims), the reconciler starts only while this worker holds the
 *    `reconciler` lease: a Leadership bids for it, creates a Reconciler when it takes it (one INFO
 *    line) and stops it, aborting its runs, when it loses it (one WARN line) or hands it over on stop
 *    (one INFO line). A follower says once who leads. /health's worker facts say `reconciler: leader`
 *    or `follower`.
 * `firstOutcome` settles once the first try of each step is made: rejected for a bad setting, resolved
 * otherwise (running, waiting or standing by). `stop()` ends the waits, then stops the reconciler and
 * the dispatcher (the event in hand finishes).
 */
class WorkerStart {
  database: Database | null = null;
  dispatcher: Dispatcher | null = null;
  reconciler: Reconciler | null = null;
  private leadership: Leadership | null = null;
  private leases: Leases | null = null;
  private pressure: IngestPressure | null = null;
  private readonly stopWatching: Array<() => void> = [];
  readonly firstOutcome: Promise<void>;
  private status: WorkerState = { state: 'starting' };
  private readonly stopping = new AbortController();
  private settleFirst: (err?: unknown) => void = () => {};
  private run: Promise<void> = Promise.resolve();

  constructor(private readonly options: WorkerStartOptions) {
    this.firstOutcome = new Promise<void>((resolve, reject) => {
      let settled = false;
      this.settleFirst = (err?: unknown) => {
        if (settled) return;
        settled = true;
        if (err === undefined) resolve();
        else reject(err);
      };
    });
    this.firstOutcome.catch(() => {}); // awaited by startConnector; never an unhandled rejection
  }

  start(): void {
    this.run = this.starting().then(
      () => this.settleFirst(),
      (err: unknown) => {
        this.settleFirst(err);
        if (!this.stopping.signal.aborted) this.options.log.error({ err }, `the worker could not start: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  /**
   * The /health facts of the worker side: the database (not ok while waited for), the worker's state
   * with its reconciler role (`leader`, or `follower` naming the leader when known), and each vendor's
   * (a paused vendor does not make the connector unhealthy: its events wait).
   */
  async health(): Promise<Record<string, unknown>> {
    const status = this.status;
    const role = this.reconciler !== null ? 'leader' : 'follower';
    const leader = this.leadership?.holder ?? null;
    const worker = {
      ...(status.state === 'standby' ? { state: 'standby', holder: status.holder } : { state: status.state }),
      reconciler: role,
      ...(role === 'follower' && leader !== null ? { reconcilerHolder: leader } : {}),
    };
    const vendors = Object.fromEntries(this.options.sources.flatMap((s) => (s.vendor === undefined ? [] : [[s.name, vendorHealth(s.vendor.status())]])));
    if (this.database !== null) {
      const database = await this.database.health();
      // The worker's writes failing is the truth, whatever a read-only probe saw (a renamed field, say).
      const outage = this.dispatcher?.writeOutage ?? null;
      if (outage !== null && database.ok) return { database: { ...database, ok: false, detail: `writes have failed since ${outage.since}: ${outage.error}` }, worker, vendors };
      return { database, worker, vendors };
    }
    const cause = status.state === 'waiting for the database' ? status.cause : 'connecting';
    return { database: { ok: false, backend: this.options.config.DB_BACKEND, detail: `waiting for the database (${cause})` }, worker, vendors };
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.run;
    // The reconciler's lease (stop its runs, then give the lease back: a follower takes over at once)
    // and the dispatcher stop side by side: with the engine away each waits out its own timeout.
    await Promise.all([this.leadership?.stop(), this.dispatcher?.stop()]);
    await this.reconciler?.stop();
    await this.leases?.close();
    this.pressure?.close();
    for (const stop of this.stopWatching.splice(0)) stop();
  }

  private async starting(): Promise<void> {
    const database = await this.openDatabase();
    if (database === null) return;
    this.database = database;
    if (!(await this.holdQueue()) || this.stopping.signal.aborted) return;
    await this.startWorking(database);
    this.settleFirst();
  }

  /** Creates and migrates the database, waiting while it cannot be; null when stopped first. */
  private async openDatabase(): Promise<Database | null> {
    const { config, log } = this.options;
    let database: Database | null = null;
    let failures = 0;
    let lineAt = -Infinity;
    for (;;) {
      try {
        if (database === null) {
          database = await createDatabase(config, { log: log.child({ component: 'db' }), budgets: this.options.budgets });
          this.options.onDatabase(database);
        }
        await database.migrate();
        if (failures > 0) log.info({ backend: database.backend }, 'the database is back: starting the worker');
        return database;
      } catch (err) {
        if (err instanceof ConnectorError && err.code === 'CONN_ERR_CONFIG_INVALID' && failures === 0) throw err;
        if (this.stopping.signal.aborted) return null;
        failures++;
        const cause = describeDatabaseFailure(err, config) ?? (err instanceof ConnectorError ? `${err.code}: ${firstLine(err.message)}` : firstLine(err instanceof Error ? err.message : String(err)));
        this.status = { state: 'waiting for the database', cause };
        log.debug({ err }, 'the database is not ready');
        if (Date.now() - lineAt >= DATABASE_WAIT_LINE_EVERY_MS) {
          lineAt = Date.now();
          log.warn({ backend: config.DB_BACKEND, failures }, `waiting for the database (${cause}); deliveries are being queued`);
        }
        this.settleFirst();
        await sleep(Math.min(250 * 2 ** Math.min(failures, 10), DATABASE_RETRY_MAX_MS), this.stopping.signal);
        if (this.stopping.signal.aborted) return null;
      }
    }
  }

  /** Becomes the queue's consumer, standing by while another process is; false when stopped first. */
  private async holdQueue(): Promise<boolean> {
    const { queue, log } = this.options;
    if (queue.tryConsume === undefined) return true;
    let holder: string | null = null;
    let problemAt = -Infinity;
    for (;;) {
      try {
        const answer = await queue.tryConsume();
        if (answer.consumer) {
          if (holder !== null) log.info({ previousHolder: holder }, `took over the queue from ${holder}; processing events`);
          return true;
        }
        if (holder === null) log.info({ holder: answer.holder }, `standing by; ${answer.holder} holds the queue (this worker takes over when it stops; no backfill meanwhile)`);
        holder = answer.holder;
        this.status = { state: 'standby', holder };
        this.settleFirst();
      } catch (err) {
        if (this.stopping.signal.aborted) return false;
        if (Date.now() - problemAt >= DATABASE_WAIT_LINE_EVERY_MS) {
          problemAt = Date.now();
          log.warn({ err }, `could not take the queue's consumer lock; trying again: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      await sleep(STANDBY_POLL_MS, this.stopping.signal);
      if (this.stopping.signal.aborted) return false;
    }
  }

  private async startWorking(db: Database): Promise<void> {
    const { config, log, roles, queue, lifecycle, sources } = this.options;
    for (const source of sources) if (source.vendor !== undefined) this.stopWatching.push(watchVendor(source.name, source.vendor, log, lifecycle));
    // A vendor refusing our credentials (401/403): `vendor:auth`, for the alert, and one line per change.
    this.stopWatching.push(watchVendorAuth(sources, lifecycle, log));
    // In one process with the webhooks, deliveries go first when they flood the event loop.
    const pressure = roles.serve ? new IngestPressure(lifecycle) : null;
    const dispatcher = new Dispatcher({ queue, db, sources, log, lifecycle, maxAttempts: config.MAX_QUEUE_ATTEMPTS, concurrency: config.WORKER_CONCURRENCY, yieldTo: pressure === null ? undefined : () => pressure.high });
    dispatcher.start();
    log.info({ backend: db.backend, concurrency: config.WORKER_CONCURRENCY }, 'worker started');
    this.status = { state: 'running' };
    this.dispatcher = dispatcher;
    this.pressure = pressure;
    const settings = engineSettings(config);
    if (settings === null) {
      // The file queue's consumer lock already makes this the one worker.
      this.reconciler = this.newReconciler(db, undefined);
      this.reconciler.start();
      return;
    }
    const leases = await createLeases(settings, log.child({ component: 'lease' }));
    this.leases = leases;
    const holder = holderId('worker');
    const ttlMs = config.RECONCILE_LEASE_SECONDS * SECOND;
    const takeover = `${Math.ceil((ttlMs + leaseTiming(ttlMs).pollMs) / SECOND)} s`;
    const llog = log.child({ component: 'reconciler', lease: RECONCILER_LEASE });
    const hasBackfill = sources.some((s) => s.backfill !== undefined);
    const schedule = !hasBackfill ? 'no source has API credentials, so there is nothing to backfill' : config.BACKFILL_ON_START ? `backfilling now, then ${this.options.reconcileEvery}` : `backfilling ${this.options.reconcileEvery}`;
    this.leadership = new Leadership({
      leases,
      name: RECONCILER_LEASE,
      holder,
      ttlMs,
      log: llog,
      onTaken: (previous) => {
        llog.info({ holder, previousHolder: previous }, `took the reconciler lease${previous === null ? '' : ` from ${previous}`}: this worker reconciles (${schedule})`);
        this.reconciler = this.newReconciler(db, { leases, holder, ttlMs });
        this.reconciler.start();
      },
      onLost: async (reason) => {
        const reconciler = this.reconciler;
        this.reconciler = null;
        await reconciler?.stop();
        if (reason === 'stopping') llog.info({ holder }, `handed the reconciler lease over (stopping): another worker takes it within ${Math.ceil(leaseTiming(ttlMs).pollMs / SECOND)} s`);
        else llog.warn({ holder, reason }, `lost the reconciler lease (${reason}); reconciliation stopped here, another worker takes it over`);
      },
      onFollowing: (leader) => {
        if (leader !== null) llog.info({ holder, leader }, `${leader} holds the reconciler lease: this worker processes events and runs no backfill (it takes over within ${takeover} if that one stops)`);
      },
    });
    this.leadership.start();
  }

  private newReconciler(db: Database, runLease: { leases: Leases; holder: string; ttlMs: number } | undefined): Reconciler {
    const { config, log, queue, lifecycle, sources, reconcileEveryMs } = this.options;
    return new Reconciler({
      sources,
      log,
      intervalMs: reconcileEveryMs,
      onStart: config.BACKFILL_ON_START,
      deps: backfillDeps(config, { db, queue, lifecycle, log }),
      ...(runLease === undefined ? {} : { runLease }),
    });
  }
}

/**
 * One log line per change of a vendor's state (src/http/rate-limiter.ts), with the reason and the time
 * it can be asked again, and the change on the lifecycle (metrics, tests).
 */
function watchVendor(name: Source['name'], vendor: NonNullable<Source['vendor']>, log: Logger, lifecycle: Lifecycle): () => void {
  const vlog = log.child({ component: 'vendor', source: name });
  return vendor.onStateChange((state, previous) => {
    const until = state.state === 'ok' ? undefined : new Date(state.until).toISOString();
    lifecycle.emit('vendor:state', { source: name, state: state.state, previous: previous.state, ...(until !== undefined ? { until } : {}), ...(state.state !== 'ok' ? { reason: state.reason } : {}) });
    if (state.state === 'paused') {
      vlog.warn({ state: state.state, until, reason: state.reason }, `${name} paused until ${until} (${state.reason}); its events wait in the queue, other sources go on`);
    } else if (state.state === 'unavailable') {
      vlog.warn({ state: state.state, until, reason: state.reason }, `${name} unavailable (${state.reason}); its events wait in the queue, other sources go on; trying it again from ${until}, then at growing intervals`);
    } else if (previous.state !== 'ok') {
      const seconds = Math.round((Date.now() - previous.since) / 1000);
      vlog.info({ state: state.state, previous: previous.state, pausedSeconds: seconds }, previous.state === 'paused' ? `${name} resumed after ${seconds} s` : `${name} available again after ${seconds} s`);
    }
  });
}

/** `every 15 minutes`, `every 30 seconds`, `on start-up only`. */
function describeEvery(ms: number): string {
  if (ms <= 0) return 'on start-up only';
  const [n, unit] = ms < MINUTE ? [Math.round(ms / SECOND), 'second'] : [Math.round((ms / MINUTE) * 10) / 10, 'minute'];
  return `every ${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** A vendor's state for /health. */
function vendorHealth(state: VendorState): Record<string, unknown> {
  if (state.state === 'ok') return { state: 'ok' };
  return { state: state.state, since: new Date(state.since).toISOString(), until: new Date(state.until).toISOString(), reason: state.reason };
}


function firstLine(text: string): string {
  return text.split('\n', 1)[0]?.trim() ?? '';
}

interface ConsoleWiring {
  log: Logger;
  roles: Roles;
  queue: Queue;
  lifecycle: Lifecycle;
  sources: readonly Source[];
  activity: Activity;
  health: HealthChecks;
  /** The alerts: the banner's active ones, and the webhook registrations at the vendors. */
  alerts: Alerts;
  /** The database backfills keep their checkpoints in, once open. */
  database: () => Database | null;
  closers: Array<() => Promise<void>>;
}

/** The operator console's options (src/server/console/routes.ts): what it shows and the backfills it starts. */
async function consoleOptions(config: Config, wiring: ConsoleWiring): Promise<ConsoleOptions> {
  const { log, roles, queue, lifecycle, sources, activity, health, alerts, database, closers } = wiring;
  const settings = engineSettings(config);
  let lease: { leases: Leases; holder: string; ttlMs: number } | undefined;
  if (settings !== null) {
    // With a shared queue a console backfill holds the source's run lease, as the CLI's does.
    const leases = await createLeases(settings, log.child({ component: 'lease' }));
    closers.push(() => leases.close());
    lease = { leases, holder: holderId('backfill'), ttlMs: config.RECONCILE_LEASE_SECONDS * SECOND };
  }
  const backfill = new BackfillJobs({
    sources,
    log,
    ...(lease === undefined ? {} : { lease }),
    deps: () => {
      const db = database();
      return db === null ? null : backfillDeps(config, { db, queue, lifecycle, log });
    },
  });
  return {
    adminToken: config.ADMIN_TOKEN,
    trustProxy: config.TRUST_PROXY,
    activity,
    process: { version: packageVersion(), role: roles.serve && roles.work ? 'start' : roles.serve ? 'serve' : 'work', startedAt: new Date() },
    backfill,
    health: { evaluate: async () => (await health.evaluate()).body },
    alerts,
    webhooks: alerts,
  };
}
