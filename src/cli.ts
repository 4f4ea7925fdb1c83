/**
 * The `connector` command line. Each command is also an npm script (`npm run check-queue -- --json`).
 * The operator commands are thin layers over the library functions in src/admin/ (which the dashboard
 * reuses): parse the flags, open what the action needs, print its result, exit.
 *
 * Exit codes: 0 done; 1 failed (the message says what to do); 2 bad settings or usage (an unknown flag,
 * a missing filter or URL). A bad setting stops any command but `doctor` with one line naming the
 * variable and the rule. The commands that read or replay the queue, and `backfill` (which only
 * enqueues), are safe while `start` runs in another process on the same DATA_DIR.
 *
 * Operator commands print their results on stdout and log to `${LOG_DIR}/app.log` only, so that their
 * output stays readable; `start`, `serve` and `work` log to the console as well.
 *
 * The read-only commands (`check-queue`, `doctor`, `replay-dlq --dry-run`, `discard-dlq --dry-run`) create nothing: no data
 * directory, no queue, no database, no migration, and no LOG_DIR (where it does not exist they log to
 * the console instead). Where they find no queue they say where they looked and exit 2; `--data-dir`
 * (or DATA_DIR) points them at the connector's data directory.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { WebhookAction } from './admin/register-webhooks.ts';
import type { ReplayRequest } from './admin/replay-dead-letters.ts';
import { existsSync } from 'node:fs';
import { loadConfig, parseConfig, readEnv, unknownSettingText, type Config, type Env } from './config.ts';
import { ConnectorError } from './errors.ts';
import { createLogger, createLoggerFromConfig, type Logger } from './log.ts';
import type { Roles } from './main.ts';
import { SOURCE_NAMES, type SourceName } from './model.ts';
import { packageVersion } from './version.ts';

// What each command needs is imported when it runs, so that `--help` and usage errors answer at once.

/** Exit codes: 0 done, 1 failed, 2 bad settings or usage. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** `overrides`: settings given as options (`--data-dir`), over `.env` and the environment. */
function settings(overrides: Env = {}): Config {
  try {
    return loadConfig({ ...readEnv(), ...overrides });
  } catch (err) {
    if (err instanceof ConnectorError && err.code === 'CONN_ERR_CONFIG_INVALID') {
      process.stderr.write(`connector: ${err.message}\n`);
      process.exit(EXIT.usage);
    }
    throw err;
  }
}

/**
 * Runs the chosen roles until SIGINT/SIGTERM; a second signal forces the exit. A database down at boot
 * does not stop them (the worker waits for it), nor another worker holding the queue (this one stands by).
 */
async function run(roles: Roles): Promise<void> {
  const config = settings();
  const log = createLoggerFromConfig(config);
  for (const unknown of config.unknownSettings) log.warn({ variable: unknown.name, suggestion: unknown.suggestion }, unknownSettingText(unknown));
  const { startConnector } = await import('./main.ts');
  let connector;
  try {
    connector = await startConnector(config, { roles, log });
  } catch (err) {
    return startupFailed(config, log, err);
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      connector.abort();
      process.exit(EXIT.failed);
    }
    log.info({ signal }, 'shutting down: finishing events in flight (send the signal again to force)');
    connector.lifecycle.emit('shutdown:start', { signal });
    connector.stop().then(
      () => process.exit(EXIT.ok),
      (err: unknown) => fatal(log, err, 'shutdown failed'),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * A start that failed: one line on stderr with the cause and the fix (src/startup-failure.ts), the same
 * line in app.log, the stack at debug level only; exit 2 for a setting, 1 otherwise.
 */
async function startupFailed(config: Config, log: Logger, err: unknown): Promise<never> {
  const { describeStartupFailure } = await import('./startup-failure.ts');
  const { makeScrubber, secretValues } = await import('./log.ts');
  const { line, exitCode } = describeStartupFailure(err, config);
  const safe = makeScrubber(secretValues(config))(line);
  log.debug({ err }, `could not start: ${safe}`);
  createLoggerFromConfig(config, { console: false }).fatal({ code: err instanceof ConnectorError ? err.code : (err as { code?: unknown } | null)?.code }, safe);
  process.stderr.write(`connector: ${safe}\n`);
  return exit(exitCode);
}

function fatal(log: Logger, err: unknown, what: string): never {
  const message = err instanceof Error ? err.message : String(err);
  log.fatal({ err }, `${what}: ${message}`);
  process.exit(EXIT.failed);
}

// ───────────────────────────── operator commands ─────────────────────────────

interface AdminContext {
  config: Config;
  log: Logger;
}

interface AdminOptions {
  /** `--data-dir`: DATA_DIR for this command. */
  dataDir?: string;
  /** The command only reads: it creates no LOG_DIR (logging to the console where there is none). */
  readOnly?: boolean;
}

/** The settings a `--data-dir` option gives. */
function dataDirOverride(dataDir: string | undefined): Env {
  return dataDir === undefined ? {} : { DATA_DIR: dataDir };
}

/** Settings, a file-only logger, the action; prints failures; exits with the action's code. */
async function admin(command: string, action: (context: AdminContext) => Promise<number>, options: AdminOptions = {}): Promise<never> {
  const config = settings(dataDirOverride(options.dataDir));
  const log = createLoggerFromConfig(config, logDestination(config, options.readOnly === true)).child({ command });
  for (const unknown of config.unknownSettings) {
    log.warn({ variable: unknown.name, suggestion: unknown.suggestion }, unknownSettingText(unknown));
    process.stderr.write(`connector ${command}: warning: ${unknownSettingText(unknown)}\n`);
  }
  const { UsageError } = await import('./admin/usage-error.ts');
  let code: number;
  try {
    code = await action({ config, log });
  } catch (err) {
    code = failure(command, err, err instanceof UsageError, log);
  }
  return exit(code);
}

/** An operator command's log: `${LOG_DIR}/app.log`; for a read-only command with no LOG_DIR, the console. */
function logDestination(config: Config, readOnly: boolean): { console: boolean; logDir?: string } {
  return readOnly && !existsSync(config.LOG_DIR) ? { console: true, logDir: undefined } : { console: false };
}

/** Refuses (exit 2, one line) to open a file queue that is not there: opening would create an empty one. */
async function assertQueueThere(config: Config): Promise<void> {
  const { noQueueAt } = await import('./admin/check-queue.ts');
  const { UsageError } = await import('./admin/usage-error.ts');
  const missing = noQueueAt(config);
  if (missing !== null) throw new UsageError(missing);
}

/** The message and exit code for an action that threw; `usage`: the request itself was refused. */
function failure(command: string, err: unknown, usage: boolean, log?: Logger): number {
  const message = err instanceof Error ? err.message : String(err);
  if (usage || (err instanceof ConnectorError && err.code === 'CONN_ERR_CONFIG_INVALID')) {
    process.stderr.write(`connector ${command}: ${message}\n`);
    return EXIT.usage;
  }
  const code = err instanceof ConnectorError ? `${err.code}: ` : '';
  log?.error({ err }, `${command} failed: ${message}`);
  process.stderr.write(`connector ${command}: failed: ${code}${message}\n`);
  return EXIT.failed;
}

/** Exits once stdout and stderr have taken everything written (pipes may be asynchronous). */
async function exit(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
  process.exit(code);
}

function print(lines: string | readonly string[]): void {
  process.stdout.write(`${typeof lines === 'string' ? lines : lines.join('\n')}\n`);
}

function wholeNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('must be a whole number (0 or more)');
  return n;
}

function isoTime(value: string): Date {
  const date = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value.trim()) || Number.isNaN(date.getTime())) throw new InvalidArgumentError('must be an ISO 8601 time, e.g. 2025-01-31 or 2025-01-31T08:00:00Z');
  return date;
}

const dataDirOption = () => new Option('--data-dir <dir>', "the connector's data directory, where its queue is (default: DATA_DIR, else ./data)");
const sourceOption = (description: string) => new Option('--source <name>', description).choices(SOURCE_NAMES);

async function checkQueueCommand(options: { last: number; json?: boolean; dataDir?: string }): Promise<never> {
  return admin('check-queue', async ({ config, log }) => {
    await assertQueueThere(config);
    const { checkQueue } = await import('./admin/check-queue.ts');
    const { renderQueueReport } = await import('./admin/render.ts');
    const { openQueue, queueLocation, queueWorker } = await import('./admin/resources.ts');
    const queue = await openQueue(config, log);
    try {
      const report = await checkQueue(queue, { last: options.last, worker: await queueWorker(config) });
      const where = config.QUEUE_BACKEND === 'file' ? { queueDir: config.queueDir } : { queue: queueLocation(config) };
      print(options.json === true ? JSON.stringify({ ...where, ...report }, null, 2) : renderQueueReport(report, queueLocation(config)));
      return EXIT.ok;
    } finally {
      await queue.close();
    }
  }, { dataDir: options.dataDir, readOnly: true });
}

async function migrateQueueCommand(options: { dryRun?: boolean; dataDir?: string }): Promise<never> {
  return admin('migrate-queue', async ({ config, log }) => {
    const { migrateQueue } = await import('./admin/migrate-queue.ts');
    const { openQueue, queueLocation } = await import('./admin/resources.ts');
    const { UsageError } = await import('./admin/usage-error.ts');
    if (config.QUEUE_BACKEND === 'file') throw new UsageError('set QUEUE_BACKEND=redis (with REDIS_URL) or QUEUE_BACKEND=postgres (with QUEUE_DATABASE_URL or DATABASE_URL) to the engine to move the file queue into');
    const fileConfig = { ...config, QUEUE_BACKEND: 'file' as const };
    await assertQueueThere(fileConfig);
    const from = await openQueue(fileConfig, log);
    try {
      const to = await openQueue(config, log);
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.on('SIGINT', onSignal);
      try {
        let lastLine = 0;
        const result = await migrateQueue(from, to, {
          dryRun: options.dryRun,
          signal: controller.signal,
          onProgress: ({ moved, left, waitingFor }) => {
            if (Date.now() - lastLine < 1_000 && left > 0) return;
            lastLine = Date.now();
            print(`moved ${moved}, ${left} left${waitingFor > 0 ? ` (${waitingFor} backing off: waiting for their time)` : ''}`);
          },
        });
        const target = `${config.QUEUE_BACKEND} (${queueLocation(config)})`;
        if (result.dryRun) print(`${result.moved} event(s) in ${config.queueDir} would move to ${target} (dry run; nothing changed)`);
        else print(`${result.interrupted ? 'interrupted: ' : ''}moved ${result.moved} event(s) from ${config.queueDir} to ${target}${result.interrupted ? '; run again to move the rest' : ''}`);
        if (result.deadLetters > 0) print(`${result.deadLetters} dead letter(s) stay in ${config.queueDir}: to have them processed, replay them there first (QUEUE_BACKEND=file connector replay-dlq --all) and migrate again`);
        return result.interrupted ? EXIT.failed : EXIT.ok;
      } finally {
        process.off('SIGINT', onSignal);
        await to.close();
      }
    } finally {
      await from.close();
    }
  }, { dataDir: options.dataDir });
}

async function backfillCommand(options: { source?: SourceName; since?: Date; full?: boolean }): Promise<never> {
  return admin('backfill', async ({ config, log }) => {
    const { backfillSources, chooseBackfillSources } = await import('./admin/backfill.ts');
    const { BackfillProgressView } = await import('./admin/progress.ts');
    const { renderBackfillSummary } = await import('./admin/render.ts');
    const { openDatabase, openQueue, queueWorker } = await import('./admin/resources.ts');
    const { Lifecycle } = await import('./lifecycle.ts');
    const { createSources } = await import('./sources/index.ts');
    const { backfillDeps } = await import('./sync/backfill.ts');
    const { engineSettings } = await import('./queue/engine.ts');
    const { createLeases, holderId } = await import('./sync/leases.ts');
    const { createBudgetStore } = await import('./budget/create-budget-store.ts');
    const command = { ...(options.source !== undefined ? { sources: [options.source] } : {}), since: options.since, full: options.full };
    chooseBackfillSources(createSources(config, { log }), command); // refuse a bad request before opening anything
    const lifecycle = new Lifecycle((err) => log.error({ err }, 'lifecycle listener failed'));
    const queue = await openQueue(config, log, lifecycle);
    // Beside running workers on the shared queue, the backfill's requests count against the budget they share.
    const budgets = await createBudgetStore(config, { log });
    const sources = createSources(config, { log, budgets });
    const controller = new AbortController();
    const view = new BackfillProgressView(process.stdout);
    const onSignal = () => {
      if (controller.signal.aborted) return void exit(EXIT.failed);
      view.end();
      process.stderr.write('interrupted: stopping after the request in hand (again to quit at once); checkpoints stay at the last completed page\n');
      controller.abort(new Error('interrupted'));
    };
    process.on('SIGINT', onSignal);
    // With a shared queue, each source's backfill holds its run lease: it waits for a running
    // reconciliation of that source (src/admin/backfill.ts).
    const settings = engineSettings(config);
    const leases = settings === null ? null : await createLeases(settings, log.child({ component: 'lease' }));
    try {
      const db = await openDatabase(config, log);
      try {
        const deps = backfillDeps(config, { db, queue, lifecycle, log });
        const report = await backfillSources(sources, deps, {
          ...command,
          signal: controller.signal,
          onStart: (source, since) => view.start(source, since),
          onPage: (progress) => view.page(progress),
          onDone: () => view.done(),
          ...(leases === null ? {} : { lease: { leases, holder: holderId('backfill'), ttlMs: config.RECONCILE_LEASE_SECONDS * 1000 } }),
          onWaiting: (source, holder) => {
            if (holder === null) return;
            const who = holder.startsWith('worker@') ? 'the workers\' reconciliation' : 'another `connector backfill`';
            process.stderr.write(`${source}: waiting: ${who} is backfilling ${source} (${holder} holds the lease backfill:${source}); this backfill starts as soon as it ends (Ctrl-C to stop)\n`);
          },
        });
        view.end();
        print(renderBackfillSummary(report, await queueWorker(config)));
        return report.aborted || report.outcomes.some((o) => o.status === 'failed') ? EXIT.failed : EXIT.ok;
      } finally {
        await db.close();
      }
    } finally {
      process.off('SIGINT', onSignal);
      await leases?.close();
      await queue.close();
      await budgets?.close();
    }
  });
}

async function replayCommand(options: { source?: SourceName; id?: string[]; all?: boolean; dryRun?: boolean; dataDir?: string }): Promise<never> {
  return admin('replay-dlq', async ({ config, log }) => {
    const { replayDeadLetters, replayFilter } = await import('./admin/replay-dead-letters.ts');
    const { renderReplay } = await import('./admin/render.ts');
    const { openQueue } = await import('./admin/resources.ts');
    const request: ReplayRequest = { source: options.source, ids: options.id, all: options.all, dryRun: options.dryRun };
    replayFilter(request); // refuse a missing filter before opening anything
    await assertQueueThere(config); // a queue created here would hold no dead letters
    const queue = await openQueue(config, log);
    try {
      const result = await replayDeadLetters(queue, request);
      print(renderReplay(result));
      return result.missingIds.length > 0 ? EXIT.failed : EXIT.ok;
    } finally {
      await queue.close();
    }
  }, { dataDir: options.dataDir, readOnly: options.dryRun === true });
}

async function discardCommand(options: { source?: SourceName; id?: string[]; all?: boolean; dryRun?: boolean; yes?: boolean; dataDir?: string }): Promise<never> {
  return admin('discard-dlq', async ({ config, log }) => {
    const { discardDeadLetters } = await import('./admin/dead-letters.ts');
    const { replayFilter } = await import('./admin/replay-dead-letters.ts');
    const { renderDiscard } = await import('./admin/render.ts');
    const { openQueue } = await import('./admin/resources.ts');
    const { UsageError } = await import('./admin/usage-error.ts');
    const request: ReplayRequest = { source: options.source, ids: options.id, all: options.all, dryRun: options.dryRun };
    replayFilter(request, 'discard'); // refuse a missing filter before opening anything
    if (options.dryRun !== true && options.yes !== true) throw new UsageError('discarding deletes dead letters for good: add --yes to confirm (or --dry-run to only list them)');
    await assertQueueThere(config);
    const queue = await openQueue(config, log);
    try {
      const result = await discardDeadLetters(queue, request);
      if (!result.dryRun) log.info({ action: 'dead-letters.discard', count: result.discarded.length, ids: result.discarded.map((d) => d.event.id), missing: result.missingIds.length }, `discard-dlq: discarded ${result.discarded.length} dead letter(s)`);
      print(renderDiscard(result));
      return result.missingIds.length > 0 ? EXIT.failed : EXIT.ok;
    } finally {
      await queue.close();
    }
  }, { dataDir: options.dataDir, readOnly: options.dryRun === true });
}

async function registerWebhooksCommand(options: { url?: string; source?: SourceName; list?: boolean; remove?: boolean }): Promise<never> {
  return admin('register-webhooks', async ({ config, log }) => {
    const { MissiveHooksApi } = await import('./sources/missive/webhooks-admin.ts');
    const { checkPublicUrl, manageWebhooks } = await import('./admin/register-webhooks.ts');
    const { renderWebhookReports } = await import('./admin/render.ts');
    const { TeamworkClient } = await import('./sources/teamwork/client.ts');
    const action: WebhookAction = options.list === true ? 'list' : options.remove === true ? 'remove' : 'register';
    const publicUrl = checkPublicUrl(options.url ?? config.PUBLIC_URL);
    const teamwork =
      config.TEAMWORK_API_KEY !== undefined && config.teamworkBaseUrl !== null
        ? new TeamworkClient({ baseUrl: config.teamworkBaseUrl, apiKey: config.TEAMWORK_API_KEY, requestsPerMinute: config.TEAMWORK_REQUESTS_PER_MINUTE, log })
        : null;
    const missive = config.MISSIVE_API_TOKEN !== undefined ? new MissiveHooksApi({ token: config.MISSIVE_API_TOKEN, baseUrl: config.MISSIVE_BASE_URL, log }) : null;
    const reports = await manageWebhooks(action, {
      publicUrl,
      teamwork: { client: teamwork, ...(config.TEAMWORK_WEBHOOK_TOKEN !== undefined ? { token: config.TEAMWORK_WEBHOOK_TOKEN } : {}) },
      missive: { api: missive, ...(config.MISSIVE_WEBHOOK_SECRET !== undefined ? { secret: config.MISSIVE_WEBHOOK_SECRET } : {}) },
      ...(options.source !== undefined ? { sources: [options.source] } : {}),
    });
    print(renderWebhookReports(action, reports));
    return reports.some((r) => r.status === 'failed') ? EXIT.failed : EXIT.ok;
  });
}

async function airtableSetupCommand(): Promise<never> {
  return admin('airtable-setup', async ({ config, log }) => {
    const { airtableSetup } = await import('./db/airtable/setup.ts');
    const { renderAirtableSetup } = await import('./admin/render.ts');
    const report = await airtableSetup(config, { log });
    print(renderAirtableSetup(report));
    return report.problems.length > 0 ? EXIT.failed : EXIT.ok;
  });
}

/** Not through `admin`: a bad setting is something doctor reports, not a reason to stop. */
async function doctorCommand(options: { json?: boolean; dataDir?: string }): Promise<never> {
  const env = { ...readEnv(), ...dataDirOverride(options.dataDir) };
  let log: Logger;
  try {
    const config = parseConfig(env);
    log = createLoggerFromConfig(config, logDestination(config, true)).child({ command: 'doctor' });
  } catch {
    log = createLogger({ level: 'silent', console: false });
  }
  const { runDoctor } = await import('./admin/doctor.ts');
  const { renderDoctor } = await import('./admin/render.ts');
  try {
    const report = await runDoctor({ env, log });
    print(options.json === true ? JSON.stringify(report, null, 2) : renderDoctor(report));
    return exit(report.ok ? EXIT.ok : EXIT.failed);
  } catch (err) {
    return exit(failure('doctor', err, false, log));
  }
}


export function buildProgram(): Command {
  const program = new Command('connector')
    .description('Teamwork & Missive Connector: keeps a database in sync with Teamwork tasks and Missive emails.')
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .showHelpAfterError()
    .exitOverride();

  program.command('start').description('receive webhooks and process events in one process (the default way to run)').action(() => run({ serve: true, work: true }));
  program.command('serve').description('receive webhooks only (run `work` in another process)').action(() => run({ serve: true, work: false }));
  program.command('work').description('process queued events only (run `serve` in another process)').action(() => run({ serve: false, work: true }));

  program
    .command('check-queue')
    .description('show the queue: pending, in flight, delayed, dead letters, the oldest age and the newest events (safe while the connector runs)')
    .option('--last <n>', 'list this many of the newest waiting events (0: none)', wholeNumber, 10)
    .option('--json', 'print JSON instead of text')
    .addOption(dataDirOption())
    .action(checkQueueCommand);

  program
    .command('migrate-queue')
    .description("move the events waiting in this host's file queue into the shared engine of QUEUE_BACKEND (redis or postgres); stop the connector on this DATA_DIR first")
    .option('--dry-run', 'count what would move; change nothing')
    .addOption(dataDirOption())
    .action(migrateQueueCommand);

  program
    .command('backfill')
    .description('enqueue everything changed since the checkpoint (minus the overlap); the worker of `start` processes it')
    .addOption(sourceOption('only this source (default: every source whose API is configured)'))
    .option('--since <time>', 'start at this ISO 8601 time instead of the checkpoint', isoTime)
    .addOption(new Option('--full', 'everything the vendors have, ignoring the checkpoint').conflicts('since'))
    .action(backfillCommand);

  program
    .command('replay-dlq')
    .description('move dead letters back to the queue (attempts reset) once their cause is fixed; needs a filter')
    .addOption(sourceOption('only dead letters of this source'))
    .option('--id <id...>', 'only these event ids')
    .option('--all', 'every dead letter (alone: not with --source or --id)')
    .option('--dry-run', 'list what would be replayed; change nothing')
    .addOption(dataDirOption())
    .action(replayCommand);

  program
    .command('discard-dlq')
    .description('delete dead letters for good (they are not processed); needs a filter and --yes')
    .addOption(sourceOption('only dead letters of this source'))
    .option('--id <id...>', 'only these event ids')
    .option('--all', 'every dead letter (alone: not with --source or --id)')
    .option('--dry-run', 'list what would be discarded; change nothing')
    .option('--yes', 'confirm: discard without asking (required unless --dry-run)')
    .addOption(dataDirOption())
    .action(discardCommand);

  program
    .command('register-webhooks')
    .description('create the Teamwork and Missive webhooks for PUBLIC_URL (idempotent), or list or remove them')
    .option('--url <url>', 'the public base URL vendors reach this connector at (default: PUBLIC_URL)')
    .addOption(sourceOption('only this vendor (default: both)'))
    .addOption(new Option('--list', 'list our webhooks at each vendor; change nothing').conflicts('remove'))
    .option('--remove', 'delete our webhooks at each vendor (hooks for other URLs are never touched)')
    .action(registerWebhooksCommand);

  program.command('airtable-setup').description('create the Airtable tables and fields in AIRTABLE_BASE_ID (idempotent; never deletes)').action(airtableSetupCommand);

  program
    .command('doctor')
    .description('check settings, database, queue, vendor credentials, webhook reachability and disk space; exit 1 if any check fails')
    .option('--json', 'print JSON instead of a table')
    .addOption(dataDirOption())
    .action(doctorCommand);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
    throw err;
  }
}

await main(process.argv);
