/**
 * `doctor`: checks that this installation can work, one line each, with the fix for what fails:
 *
 *   config       the settings parse (everything else is skipped when they do not), and no variable
 *                looks like a setting without being one (a misspelled name fails here, naming the
 *                setting it is closest to; the other checks still run)
 *   database     it is there (SQLite), opens and reports healthy; its row counts once `start` created the tables.
 *                WARN for SQLite with a shared queue: each host's workers write their own file
 *   queue        it is there and opens; what waits in it; whether a worker consumes it (with a shared
 *                queue: which worker holds the reconciler lease, i.e. runs the backfills)
 *   teamwork-api / missive-api
 *                one cheap authenticated call each (a one-task page; a one-conversation page)
 *   webhook-signatures
 *                every source has its webhook secret: FAIL for a source without one, whose endpoint
 *                refuses every delivery (unless POLLING_ONLY), and FAIL, louder, with
 *                WEBHOOKS_ALLOW_UNSIGNED=true, under which anyone who can reach it writes to the database
 *   teamwork-webhook / missive-webhook
 *                an empty, unsigned POST to PUBLIC_URL's /webhooks/<source>: this connector answers
 *                401 CONN_ERR_WEBHOOK_SIGNATURE (with a secret set, or without one: it then refuses
 *                everything), or 200 or 4xx with our JSON under WEBHOOKS_ALLOW_UNSIGNED; anything else
 *                answered, it is not us
 *   tunnel       with NGROK_AUTHTOKEN: the optional ngrok module loads
 *   disk         free space where DATA_DIR lives (statfs)
 *
 * A check is OK, FAIL (the fix is printed, and doctor exits 1), SKIP (not applicable), or WARN: it works,
 * but in a way that is often a mistake (the note is printed; doctor still passes).
 *
 * Every check runs on its own, under a time limit, and closes what it opened. Nothing is changed: no
 * directory or database file is created and nothing is migrated (run where there is no queue or SQLite
 * file, the `queue` and `database` checks fail saying where they looked and how to point elsewhere:
 * `--data-dir` or DATA_DIR). Safe while the connector runs.
 */
import { existsSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { parseConfig, sharedQueueSqliteWarning, unknownSettingText, type Config, type Env } from '../config.ts';
import { ConnectorError } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';
import { MissiveClient } from '../sources/missive/client.ts';
import { TeamworkClient } from '../sources/teamwork/client.ts';
import type { SourceName } from '../model.ts';
import { SECOND } from '../retry-policy.ts';
import { loadNgrok, type NgrokLoader } from '../tunnel.ts';
import { createDatabase } from '../db/create-database.ts';
import { noQueueAt } from './check-queue.ts';
import { openQueue, queueWorker } from './resources.ts';
import type { EngineSettings } from '../queue/bull-queue.ts';
import { engineSettings, engineUrlSetting, judgeDurability, probeEngine, unreachableEngine, type EngineReport } from '../queue/engine.ts';
import { createLeases, RECONCILER_LEASE } from '../sync/leases.ts';
import { SOURCE_API_SETTINGS, SOURCE_SECRET_SETTINGS } from './source-settings.ts';

export const CHECK_STATUSES = ['OK', 'WARN', 'FAIL', 'SKIP'] as const;
export type CheckStatus = (typeof CHECK_STATUSES)[number];

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** What to do, for a FAIL; what to consider, for a WARN. */
  fix?: string;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  /** No check failed. */
  ok: boolean;
}

export interface DoctorOptions {
  /** The environment to check (`.env` merged in; see readEnv). */
  env: Env;
  /** Where the checks log (the opened database and queue log through it). Default silent. */
  log?: Logger;
  fetch?: typeof fetch;
  /** Time limit of each check, ms. Default 15 s. */
  timeoutMs?: number;
  /** The disk check fails below this many free bytes. Default 1 GiB. */
  minFreeBytes?: number;
  /** ...or below this share of the file system free. Default 0.05 (5%). */
  minFreeRatio?: number;
  /** Default: import('@ngrok/ngrok'). */
  loadNgrok?: NgrokLoader;
}

const GIB = 1024 ** 3;
const DEFAULT_TIMEOUT_MS = 15 * SECOND;

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const log = options.log ?? createLogger({ level: 'silent', console: false });
  const checks: DoctorCheck[] = [];
  let config: Config;
  try {
    config = parseConfig(options.env);
    if (config.unknownSettings.length === 0) {
      checks.push({ name: 'config', status: 'OK', detail: describeConfig(config) });
    } else {
      const names = config.unknownSettings.map((u) => u.name).join(', ');
      checks.push({
        name: 'config',
        status: 'FAIL',
        detail: `${config.unknownSettings.map(unknownSettingText).join('; ')} (${describeConfig(config)})`,
        fix: `rename or remove ${names} in .env or the environment: the connector ignores it (every setting: docs/configuration.md)`,
      });
    }
  } catch (err) {
    checks.push({ name: 'config', status: 'FAIL', detail: err instanceof Error ? err.message : String(err), fix: 'fix that variable in .env or the environment (every setting: docs/configuration.md)' });
    for (const name of ['webhook-signatures', 'database', 'queue', 'teamwork-api', 'missive-api', 'teamwork-webhook', 'missive-webhook', 'disk']) checks.push({ name, status: 'SKIP', detail: 'the settings do not parse' });
    return { checks, ok: false };
  }

  checks.push({ name: 'webhook-signatures', ...checkSignatures(config) });

  const limit = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const run = async (name: string, check: (signal: AbortSignal) => Promise<Omit<DoctorCheck, 'name'>>, fix: string): Promise<void> => {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        check(controller.signal),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => {
            controller.abort();
            reject(new Error(`no answer within ${Math.round(limit / SECOND)} s`));
          }, limit);
        }),
      ]);
      checks.push({ name, ...result });
    } catch (err) {
      checks.push({ name, status: 'FAIL', detail: errorText(err), fix: rateLimitedFix(err) ?? fix });
    } finally {
      clearTimeout(timer);
    }
  };

  await run('database', () => checkDatabase(config, log), databaseFix(config));
  await run('queue', () => checkQueueOpens(config, log), `check that ${config.queueDir} is writable by this user and on a local disk`);
  await run('teamwork-api', (signal) => checkTeamworkApi(config, options, signal, limit), teamworkApiFix);
  await run('missive-api', (signal) => checkMissiveApi(config, options, signal, limit), missiveApiFix);
  for (const source of ['teamwork', 'missive'] as const) {
    await run(`${source}-webhook`, (signal) => checkWebhook(config, source, options, signal), reachFix(config, source));
  }
  if (config.NGROK_AUTHTOKEN !== undefined) await run('tunnel', () => checkTunnelModule(config, options), 'install the optional package (`npm install @ngrok/ngrok`), or unset NGROK_AUTHTOKEN');
  await run('disk', () => checkDisk(config, options), `free space on the disk of ${config.DATA_DIR}, or move DATA_DIR to a larger one`);
  return { checks, ok: checks.every((c) => c.status !== 'FAIL') };
}

function describeConfig(config: Config): string {
  const sources = (['teamwork', 'missive'] as const).map((s) => `${s} API ${apiConfigured(config, s) ? 'on' : 'off'}`).join(', ');
  return `DB_BACKEND=${config.DB_BACKEND}, QUEUE_BACKEND=${config.QUEUE_BACKEND}, DATA_DIR=${config.DATA_DIR}; ${sources}${config.POLLING_ONLY ? '; POLLING_ONLY' : ''}`;
}

function apiConfigured(config: Config, source: SourceName): boolean {
  return source === 'teamwork' ? config.TEAMWORK_API_KEY !== undefined && config.teamworkBaseUrl !== null : config.MISSIVE_API_TOKEN !== undefined;
}

// ───────────────────────────── database and queue ─────────────────────────────

function databaseFix(config: Config): string {
  switch (config.DB_BACKEND) {
    case 'sqlite':
      return `check that ${config.DATA_DIR} is writable by this user and the disk is not full`;
    case 'postgres':
      return 'check DATABASE_URL (host, port, user, password, database), that the server runs, and that the user may create tables (docs/postgres.md)';
    case 'airtable':
      return 'check AIRTABLE_TOKEN (scopes data.records:read/write, schema.bases:read, access to the base) and AIRTABLE_BASE_ID; run `npm run airtable-setup` (docs/airtable.md)';
    default: {
      const never: never = config.DB_BACKEND;
      return String(never);
    }
  }
}

/** Where to point doctor when it looked in the wrong place. */
const elsewhereFix = 'run doctor where the connector runs, or point it at the connector\'s data directory with --data-dir <dir> or DATA_DIR (on a new installation, `npm start` creates it)';

/** Opens the database without migrating it (doctor changes nothing); a missing SQLite file is not created. */
async function checkDatabase(config: Config, log: Logger): Promise<Omit<DoctorCheck, 'name'>> {
  if (config.DB_BACKEND === 'sqlite' && !existsSync(config.sqlitePath)) {
    return { status: 'FAIL', detail: `no database at ${config.sqlitePath} (nothing was created)`, fix: elsewhereFix };
  }
  const db = await createDatabase(config, { log: log.child({ component: 'db' }) });
  try {
    const health = await db.health();
    if (!health.ok) return { status: 'FAIL', detail: `${db.backend}: ${health.detail ?? 'not healthy'}`, fix: databaseFix(config) };
    const where = config.DB_BACKEND === 'sqlite' ? ` at ${config.sqlitePath}` : '';
    const counts = await db.counts().catch(() => null);
    // PostgreSQL and Airtable count only once migrated, and doctor migrates nothing (`start` does).
    const detail = counts === null ? `${db.backend}${where}: reachable and healthy (rows not counted: doctor does not migrate; \`npm start\` creates and migrates the tables)` : `${db.backend}${where}: healthy; ${counts.tasks} tasks, ${counts.emails} emails, ${counts.attachments} attachments`;
    const shared = sharedQueueSqliteWarning(config);
    if (shared !== null) return { status: 'WARN', detail: `${detail}; with QUEUE_BACKEND=${config.QUEUE_BACKEND}, workers on other hosts would each write a SQLite file of their own`, fix: shared };
    return { status: 'OK', detail };
  } finally {
    await db.close().catch(() => {});
  }
}

/** The shared engine (QUEUE_BACKEND=redis|postgres): reachable, its version and durability, then the queue's counts. */
async function checkQueueEngine(config: Config, settings: EngineSettings, log: Logger): Promise<Omit<DoctorCheck, 'name'>> {
  const setting = engineUrlSetting(settings, config);
  let report: EngineReport;
  try {
    report = await probeEngine(settings);
  } catch (err) {
    return { status: 'FAIL', detail: unreachableEngine(settings, setting, err).message, fix: `check ${setting} and that ${settings.engine === 'redis' ? 'Redis' : 'PostgreSQL'} runs there and is reachable from this host` };
  }
  const engine = `${report.engine} ${report.version} at ${report.address} (${report.durability})`;
  let durabilityNote: string;
  try {
    durabilityNote = judgeDurability(report, config.REDIS_DURABILITY === 'relaxed').warning === null ? '' : ` [not durable, accepted: ${config.QUEUE_BACKEND === 'redis' ? 'REDIS_DURABILITY=relaxed' : 'a warning'}]`;
  } catch (err) {
    return { status: 'FAIL', detail: errorText(err), fix: 'in redis.conf: appendonly yes and appendfsync always (or CONFIG SET both and CONFIG REWRITE); or REDIS_DURABILITY=relaxed' };
  }
  const queue = await openQueue(config, log);
  try {
    const stats = await queue.stats();
    const dead = stats.deadLettered > 0 ? `; ${stats.deadLettered} dead letters (npm run replay-dlq -- --all --dry-run)` : '';
    const lag = stats.oldestPendingAgeMs === null ? 'nothing waiting' : `oldest waiting ${Math.round(stats.oldestPendingAgeMs / SECOND)} s`;
    return { status: 'OK', detail: `${engine}${durabilityNote}; queues ${config.QUEUE_PREFIX}-*: ${stats.pending} pending, ${stats.inFlight} in flight, ${stats.delayed} delayed, ${lag}${dead}; ${await reconcilerText(settings, log)}` };
  } finally {
    await queue.close().catch(() => {});
  }
}

/** Who runs the backfills with a shared queue: the holder of the reconciler lease. */
async function reconcilerText(settings: EngineSettings, log: Logger): Promise<string> {
  const leases = await createLeases(settings, log);
  try {
    const holder = await leases.holder(RECONCILER_LEASE);
    return holder === null ? 'no worker holds the reconciler lease (none runs, or they are between two holders)' : `${holder.holder} reconciles (holds the reconciler lease)`;
  } catch (err) {
    return `the reconciler lease cannot be read: ${errorText(err)}`;
  } finally {
    await leases.close();
  }
}

async function checkQueueOpens(config: Config, log: Logger): Promise<Omit<DoctorCheck, 'name'>> {
  const settings = engineSettings(config);
  if (settings !== null) return checkQueueEngine(config, settings, log);
  const missing = noQueueAt(config);
  if (missing !== null) return { status: 'FAIL', detail: `no queue at ${config.queueDir} (nothing was created)`, fix: elsewhereFix };
  const queue = await openQueue(config, log);
  try {
    const stats = await queue.stats();
    const worker = await queueWorker(config);
    const workerText = worker.state === 'running' ? `a worker is running (pid ${worker.pid})` : worker.state === 'stopped' ? 'no worker is running' : `worker: ${worker.reason}`;
    const dead = stats.deadLettered > 0 ? `; ${stats.deadLettered} dead letters (npm run replay-dlq -- --all --dry-run)` : '';
    return { status: 'OK', detail: `${queue.backend} queue: ${stats.pending + stats.inFlight} pending, ${stats.delayed} delayed${dead}; ${workerText}` };
  } finally {
    await queue.close().catch(() => {});
  }
}

// ───────────────────────────── vendor APIs ─────────────────────────────

const teamworkApiFix = 'check TEAMWORK_API_KEY (Teamwork: Profile > Edit my details > API & Mobile) and TEAMWORK_SITE or TEAMWORK_BASE_URL (EU sites: <site>.eu)';
const missiveApiFix = 'check MISSIVE_API_TOKEN (Missive: Preferences > API > Create a new token) and MISSIVE_BASE_URL';

async function checkTeamworkApi(config: Config, options: DoctorOptions, signal: AbortSignal, timeoutMs: number): Promise<Omit<DoctorCheck, 'name'>> {
  if (!apiConfigured(config, 'teamwork')) return { status: 'SKIP', detail: `${SOURCE_API_SETTINGS.teamwork} not set: webhooks are stored as received; enrichment and backfill are off` };
  const client = new TeamworkClient({
    baseUrl: config.teamworkBaseUrl as string,
    apiKey: config.TEAMWORK_API_KEY as string,
    pageSize: 1,
    maxAttempts: 1,
    timeoutMs,
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
  });
  const started = Date.now();
  const pages = client.listTasksUpdatedSince(new Date(), { signal });
  try {
    await pages.next();
  } finally {
    await pages.return(undefined);
  }
  return { status: 'OK', detail: `${config.teamworkBaseUrl}: the API key reads tasks (${Date.now() - started} ms)` };
}

async function checkMissiveApi(config: Config, options: DoctorOptions, signal: AbortSignal, timeoutMs: number): Promise<Omit<DoctorCheck, 'name'>> {
  if (!apiConfigured(config, 'missive')) return { status: 'SKIP', detail: `${SOURCE_API_SETTINGS.missive} not set: webhooks are stored as received (no bodies); backfill is off` };
  const client = new MissiveClient({
    token: config.MISSIVE_API_TOKEN as string,
    baseUrl: config.MISSIVE_BASE_URL,
    maxAttempts: 1,
    timeoutMs,
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
  });
  const started = Date.now();
  await client.listConversations({ inbox: true }, { limit: 1, signal });
  return { status: 'OK', detail: `${config.MISSIVE_BASE_URL}: the token reads conversations (${Date.now() - started} ms)` };
}

// ───────────────────────────── webhook signatures ─────────────────────────────

/** Whether each source checks its deliveries' signatures (see the header). */
function checkSignatures(config: Config): Omit<DoctorCheck, 'name'> {
  const unset = (['teamwork', 'missive'] as const).filter((s) => config[SOURCE_SECRET_SETTINGS[s]] === undefined);
  if (unset.length === 0) return { status: 'OK', detail: 'TEAMWORK_WEBHOOK_TOKEN and MISSIVE_WEBHOOK_SECRET are set: every delivery must be signed' };
  const names = unset.map((s) => SOURCE_SECRET_SETTINGS[s]).join(' and ');
  const sources = unset.map((s) => `${s} (no ${SOURCE_SECRET_SETTINGS[s]})`).join(', ');
  if (config.WEBHOOKS_ALLOW_UNSIGNED) {
    return {
      status: 'FAIL',
      detail: `WEBHOOKS_ALLOW_UNSIGNED is on: ${sources} accept${unset.length === 1 ? 's' : ''} deliveries WITHOUT a signature, from anyone who can reach the endpoint`,
      fix: `set ${names} (the same value as in the vendor's webhook settings) and remove WEBHOOKS_ALLOW_UNSIGNED`,
    };
  }
  if (config.POLLING_ONLY) return { status: 'OK', detail: `${names} not set: the endpoints refuse every delivery, as POLLING_ONLY expects none` };
  return {
    status: 'FAIL',
    detail: `${names} not set: ${unset.join(' and ')} refuse${unset.length === 1 ? 's' : ''} every delivery (401), so changes arrive only by reconciliation`,
    fix: `set ${names} (the same value as in the vendor's webhook settings), or POLLING_ONLY=true to rely on reconciliation`,
  };
}

// ───────────────────────────── webhook reachability ─────────────────────────────

function reachFix(config: Config, source: SourceName): string {
  return `make ${config.PUBLIC_URL ?? 'PUBLIC_URL'}/webhooks/${source} reach this connector (is \`npm start\` running? DNS, firewall, reverse proxy or tunnel forwarding /webhooks/ to it?)`;
}

async function checkWebhook(config: Config, source: SourceName, options: DoctorOptions, signal: AbortSignal): Promise<Omit<DoctorCheck, 'name'>> {
  if (config.POLLING_ONLY) return { status: 'SKIP', detail: 'POLLING_ONLY: webhooks are not expected' };
  if (config.PUBLIC_URL === undefined) return { status: 'SKIP', detail: 'no PUBLIC_URL: vendors cannot reach this connector (set PUBLIC_URL, NGROK_AUTHTOKEN, or POLLING_ONLY=true)' };
  const url = `${config.PUBLIC_URL}/webhooks/${source}`;
  const response = await (options.fetch ?? fetch)(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '', redirect: 'manual', signal });
  const text = await response.text().catch(() => '');
  let code: string | null = null;
  let message = '';
  let ours = false;
  try {
    const body = JSON.parse(text) as { error?: unknown; ok?: unknown; message?: unknown };
    code = typeof body.error === 'string' ? body.error : null;
    message = typeof body.message === 'string' ? body.message : '';
    ours = (code !== null && code.startsWith('CONN_ERR_')) || body.ok === true;
  } catch {
    // not JSON: not us
  }
  const secretName = SOURCE_SECRET_SETTINGS[source];
  const secretSet = config[secretName] !== undefined;
  const answered = `${url} answered ${response.status}${code !== null ? ` ${code}` : ''}`;
  if (!ours) {
    return { status: 'FAIL', detail: `${url} answered ${response.status} ${excerpt(text)}: that is not this connector`, fix: reachFix(config, source) };
  }
  // The serving process without a secret refuses everything, saying so (src/sources/signature.ts).
  const servingUnset = response.status === 401 && message.startsWith(`no ${secretName} is set`);
  if (secretSet && servingUnset) {
    return { status: 'FAIL', detail: `${answered}: the connector serving PUBLIC_URL has no ${secretName} and refuses every delivery`, fix: `set ${secretName} for the process serving ${config.PUBLIC_URL} too (same value), and restart it` };
  }
  if (secretSet && response.status === 401) return { status: 'OK', detail: `${answered} to an unsigned delivery: this connector answers there and checks signatures` };
  if (secretSet) {
    return { status: 'FAIL', detail: `${answered} to an unsigned delivery: the connector serving PUBLIC_URL does not check signatures`, fix: `set ${secretName} for the process serving ${config.PUBLIC_URL} too (same value), and restart it` };
  }
  if (servingUnset) return { status: 'OK', detail: `${answered}: this connector answers there, and refuses every delivery until ${secretName} is set (see webhook-signatures)` };
  if (response.status === 401) {
    return { status: 'FAIL', detail: `${answered}: the connector serving PUBLIC_URL checks signatures, but ${secretName} is not set here`, fix: `set ${secretName} here to the same value as the serving process` };
  }
  if (!config.WEBHOOKS_ALLOW_UNSIGNED) {
    return { status: 'FAIL', detail: `${answered} to an unsigned delivery: the connector serving PUBLIC_URL accepts unsigned deliveries (WEBHOOKS_ALLOW_UNSIGNED is on there)`, fix: `set ${secretName} for the process serving ${config.PUBLIC_URL} and here, and remove WEBHOOKS_ALLOW_UNSIGNED there` };
  }
  return { status: 'OK', detail: `${answered}: this connector answers there (deliveries are not verified: set ${secretName})` };
}

function excerpt(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat === '') return '(empty body)';
  return JSON.stringify(flat.length > 80 ? `${flat.slice(0, 80)}…` : flat);
}

// ───────────────────────────── tunnel and disk ─────────────────────────────

async function checkTunnelModule(config: Config, options: DoctorOptions): Promise<Omit<DoctorCheck, 'name'>> {
  if (config.POLLING_ONLY) return { status: 'SKIP', detail: 'POLLING_ONLY: no tunnel is opened' };
  const module = await (options.loadNgrok ?? loadNgrok)();
  if (typeof module.forward !== 'function') return { status: 'FAIL', detail: '@ngrok/ngrok loaded but has no forward()', fix: 'install @ngrok/ngrok 1.7 (`npm install @ngrok/ngrok@1.7.0`)' };
  return { status: 'OK', detail: 'NGROK_AUTHTOKEN is set and @ngrok/ngrok loads: `npm start` opens a tunnel (not tried here)' };
}

async function checkDisk(config: Config, options: DoctorOptions): Promise<Omit<DoctorCheck, 'name'>> {
  // The nearest directory that exists: DATA_DIR itself once the connector ran (doctor creates nothing).
  let where = path.resolve(config.DATA_DIR);
  while (!existsSync(where) && path.dirname(where) !== where) where = path.dirname(where);
  const stats = await statfs(where);
  const free = stats.bavail * stats.bsize;
  const total = stats.blocks * stats.bsize;
  const ratio = total > 0 ? free / total : 0;
  const minBytes = options.minFreeBytes ?? GIB;
  const minRatio = options.minFreeRatio ?? 0.05;
  const detail = `${formatBytes(free)} free of ${formatBytes(total)} (${(ratio * 100).toFixed(1)}%) at ${config.DATA_DIR}`;
  if (free < minBytes || ratio < minRatio) {
    return { status: 'FAIL', detail: `${detail}; below ${formatBytes(minBytes)} or ${(minRatio * 100).toFixed(0)}%`, fix: `free space on the disk of ${config.DATA_DIR}, or move DATA_DIR to a larger one: the queue refuses deliveries (503) when the disk is full` };
  }
  return { status: 'OK', detail };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** A 429 (or a vendor paused or down) is not a bad credential: say until when the vendor cannot be asked. */
function rateLimitedFix(err: unknown): string | undefined {
  if (!(err instanceof ConnectorError) || (err.code !== 'CONN_ERR_HTTP_RATE_LIMITED' && err.code !== 'CONN_ERR_VENDOR_PAUSED')) return undefined;
  const what = err.code === 'CONN_ERR_HTTP_RATE_LIMITED' || err.status === 429 ? 'rate-limited' : 'paused';
  const until = err.retryAfterMs === undefined ? `${what} (the vendor did not say until when)` : `${what} until ${new Date(Date.now() + err.retryAfterMs).toISOString()} (${Math.ceil(err.retryAfterMs / SECOND)} s from now)`;
  return `${until}: the credentials were not refused; run doctor again after that (the connector waits and resumes on its own)`;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('CONN_ERR_')) return `${code}: ${err.message}`;
    // fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, a certificate) is its cause.
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    if (cause !== undefined && cause !== null) {
      const why = [cause.code, cause.message].filter((v): v is string => typeof v === 'string' && v !== '');
      if (why.length > 0) return `${err.message}: ${[...new Set(why)].join(' ')}`;
    }
    return err.message;
  }
  return String(err);
}
