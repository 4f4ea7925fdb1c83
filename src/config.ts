/**
 * Every setting, in one schema, parsed once at boot. A bad value stops start-up with one line naming the
 * variable and the rule (exit code 2). `.env` in the working directory is read when present; variables
 * already set in the environment win. An empty value counts as unset, so a copied `.env.example` with
 * blanks behaves like no file at all. `.env.example` documents every variable; a test keeps the two and
 * docs/configuration.md in step.
 *
 * A variable that looks like one of ours but is not (one of our prefixes, or a near miss of a known
 * name) is carried in `unknownSettings`: start-up warns about each, naming the closest known setting,
 * and `doctor` fails on it. Only names are reported, never values.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { ConnectorError } from './errors.ts';
import { parseAllowedHost } from './http/guarded-fetch.ts';

const LOG_LEVELS = { trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', warning: 'warn', error: 'error', fatal: 'fatal', silent: 'silent' } as const;

const int = (min: number, max: number) => z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);
/** A number that may have decimals (0.5 minutes = 30 s). */
const decimal = (min: number, max: number) => z.coerce.number({ error: 'must be a number' }).min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' }).transform((v) => v === 'true' || v === '1' || v === 'yes');
const url = z.url({ error: 'must be an http(s) URL' }).refine((v) => /^https?:\/\//i.test(v), 'must be an http(s) URL').transform((v) => v.replace(/\/+$/, ''));
const secret = z.string().min(1);
/**
 * A secret sent in an HTTP header (an API token, a bearer token): printable ASCII only. A control
 * character (often pasted along with the token) or a character beyond ASCII cannot go in a header:
 * every request would fail before leaving, and be retried as a network error forever. The message
 * says where, never what.
 */
const headerToken = (base: z.ZodString) =>
  base.superRefine((value, ctx) => {
    const at = value.search(/[^\x20-\x7e]/);
    if (at < 0) return;
    const code = value.charCodeAt(at);
    const kind = code < 0x20 || code === 0x7f ? 'a control character' : 'a non-ASCII character';
    ctx.addIssue({ code: 'custom', message: `must hold only printable ASCII characters (it goes in an HTTP header); found ${kind} at position ${at + 1}` });
  });
/** Comma-separated `host` or `host:port` entries (IPv6 in brackets), as a list. */
const hostList = z.string().transform((value, ctx) => {
  const entries = value.split(',').map((e) => e.trim()).filter((e) => e !== '');
  for (const entry of entries) {
    const problem = parseAllowedHost(entry);
    if (typeof problem === 'string') {
      ctx.addIssue({ code: 'custom', message: `must be comma-separated host or host:port entries (${problem})` });
      return z.NEVER;
    }
  }
  return entries;
});

/** The schema: environment variable name -> rule and default. */
export const ConfigSchema = z.object({
  PORT: int(0, 65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATA_DIR: z.string().min(1).default('./data'),
  LOG_DIR: z.string().min(1).default('./logs'),
  LOG_LEVEL: z
    .string()
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(Object.keys(LOG_LEVELS) as [keyof typeof LOG_LEVELS], { error: `must be one of ${Object.keys(LOG_LEVELS).join(', ')}` }))
    .transform((v) => LOG_LEVELS[v])
    .default('info'),
  LOG_FORMAT: z.enum(['pretty', 'json'], { error: 'must be pretty or json' }).default('pretty'),

  DB_BACKEND: z.enum(['sqlite', 'postgres', 'airtable'], { error: 'must be sqlite, postgres or airtable' }).default('sqlite'),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  AIRTABLE_TOKEN: headerToken(secret).optional(),
  AIRTABLE_BASE_ID: z.string().regex(/^app[A-Za-z0-9]+$/, 'must be an Airtable base id (app...)').optional(),
  AIRTABLE_BASE_URL: url.default('https://api.airtable.com'),

  QUEUE_BACKEND: z.enum(['file', 'redis', 'postgres'], { error: 'must be file, redis or postgres' }).default('file'),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').optional(),
  /** Whether to run on a Redis that answers before its writes are on disk (see src/queue/engine.ts). */
  REDIS_DURABILITY: z.enum(['strict', 'relaxed'], { error: 'must be strict or relaxed' }).default('strict'),
  QUEUE_DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  /** Names the shared queue's BullMQ queues (`<prefix>-teamwork`, ...): several connectors may share one engine. */
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be letters, digits, _ or - (at most 64)').default('connector'),
  /**
   * With a shared queue: how long the reconciler's lease lasts without renewal, seconds (src/sync/leases.ts).
   * A worker that dies is replaced as reconciler within this plus one try (at most 5 s). Default 30.
   */
  RECONCILE_LEASE_SECONDS: int(2, 3600).default(30),
  /**
   * Seconds an event claimed from the shared queue stays locked to its process without renewal (renewed
   * every third of it while in hand): a `work` process that dies gives its events back after about twice
   * this. Default 30.
   */
  QUEUE_LOCK_SECONDS: int(5, 3600).default(30),
  MAX_QUEUE_ATTEMPTS: int(1, 100).default(3),
  WORKER_CONCURRENCY: int(1, 64).default(1),
  WEBHOOK_MAX_BODY_BYTES: int(1024, 64 * 1024 * 1024).default(5 * 1024 * 1024),
  DELIVERY_REPLAY_WINDOW_HOURS: int(0, 24 * 30).default(24),
  DELIVERY_REPLAY_MAX_ENTRIES: int(1000, 10_000_000).default(500_000),
  WEBHOOK_BODIES_IN_FLIGHT_BYTES: int(1024, 4 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
  WEBHOOK_CLIENT_BODIES_IN_FLIGHT_BYTES: int(1024, 4 * 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  HTTP_HEADERS_TIMEOUT_MS: int(100, 60_000).default(3_000),
  HTTP_REQUEST_TIMEOUT_MS: int(100, 300_000).default(5_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(100, 300_000).default(5_000),
  HTTP_MAX_CONNECTIONS: int(1, 1_000_000).optional(),
  HTTP_MAX_CONNECTIONS_PER_CLIENT: int(0, 1_000_000).default(64),
  LOG_REFUSALS_PER_MINUTE: int(0, 1_000_000).default(10),

  BACKFILL_OVERLAP_SECONDS: int(0, 7 * 24 * 3600).default(120),
  BACKFILL_INITIAL_HOURS: int(0, 24 * 365 * 20).default(24),
  BACKFILL_INTERVAL_MINUTES: decimal(0, 7 * 24 * 60).default(15),
  BACKFILL_ON_START: bool.default(true),
  POLLING_ONLY: bool.default(false),
  PUBLIC_URL: url.optional(),
  /** A change younger than this is not judged for a missed webhook (src/sync/missed-webhooks.ts). */
  MISSED_WEBHOOKS_GRACE_SECONDS: int(0, 24 * 3600).default(120),

  TEAMWORK_SITE: z.string().regex(/^[a-z0-9-]+(\.eu)?$/i, 'must be your site name, as in https://<site>.teamwork.com (add .eu for EU sites)').optional(),
  TEAMWORK_BASE_URL: url.optional(),
  TEAMWORK_API_KEY: headerToken(secret).optional(),
  TEAMWORK_WEBHOOK_TOKEN: secret.optional(),
  TEAMWORK_REQUESTS_PER_MINUTE: int(1, 10_000).default(120),

  MISSIVE_API_TOKEN: headerToken(secret).optional(),
  MISSIVE_BASE_URL: url.default('https://public.missiveapp.com/v1'),
  MISSIVE_WEBHOOK_SECRET: secret.optional(),
  /** Accept deliveries without a signature for a source whose secret is unset (not recommended; doctor fails on it). */
  WEBHOOKS_ALLOW_UNSIGNED: bool.default(false),

  ATTACHMENTS_STORE: bool.default(false),
  ATTACHMENTS_DIR: z.string().min(1).optional(),
  ATTACHMENTS_MAX_BYTES: int(0, 2 * 1024 * 1024 * 1024).default(25 * 1024 * 1024),
  /** Hosts attachment downloads may reach although private or loopback, and over http (tests, the demo). */
  ATTACHMENTS_ALLOWED_HOSTS: hostList.optional(),

  NGROK_AUTHTOKEN: headerToken(secret).optional(),
  ADMIN_TOKEN: headerToken(z.string().min(16, 'must be at least 16 characters')).optional(),

  // Operator console (src/server/console/).
  /**
   * A proxy in front sets X-Forwarded-Proto and X-Forwarded-For: the console's cookie is Secure when the
   * proxy was reached over https, and failed logins are limited per the address the proxy saw. Default false.
   */
  TRUST_PROXY: bool.default(false),

  // ── Health and alerts (src/server/health.ts, src/alerts/) ──
  /** GET /health fails when events wait and the worker has claimed none for this long, seconds. Default 300. */
  HEALTH_WORKER_STALL_SECONDS: int(1, 7 * 24 * 3600).default(300),
  /** GET /health fails when the oldest event not yet done is older than this, seconds. Default 3600. */
  HEALTH_MAX_QUEUE_AGE_SECONDS: int(1, 30 * 24 * 3600).default(3600),
  /** GET /health fails when the database has been unavailable for longer than this, seconds (0: at once). Default 60. */
  HEALTH_DATABASE_DOWN_SECONDS: int(0, 7 * 24 * 3600).default(60),
  /** GET /health fails when the dead-letter store holds more than this many events. Default 100. */
  HEALTH_MAX_DEAD_LETTERS: int(0, 1_000_000_000).default(100),
  /** Where alert messages are POSTed (a Slack incoming webhook, or any receiver); unset: alerts only in /dashboard and /metrics. */
  ALERT_WEBHOOK_URL: url.optional(),
  /** `slack`: `{ text }` (Slack, Mattermost, Rocket.Chat, Teams workflows); `json`: the alert as structured JSON. */
  ALERT_WEBHOOK_FORMAT: z.enum(['slack', 'json'], { error: 'must be slack or json' }).default('slack'),
  /** Missed webhooks (changes only reconciliation found) in one hour that raise an alert for a source. Default 5. */
  MISSED_WEBHOOKS_ALERT_COUNT: int(1, 1_000_000).default(5),
  /** How often the webhook registrations at the vendors are checked, minutes (0: never). Default 60. */
  WEBHOOK_REGISTRATION_CHECK_MINUTES: int(0, 7 * 24 * 60).default(60),
});

type RawConfig = z.infer<typeof ConfigSchema>;

/** The parsed settings, with derived values filled in. */
export interface Config extends RawConfig {
  /** Teamwork's API root: TEAMWORK_BASE_URL, or https://<TEAMWORK_SITE>.teamwork.com, or null. */
  teamworkBaseUrl: string | null;
  /** `${DATA_DIR}/queue` */
  queueDir: string;
  /** `${DATA_DIR}/checkpoints` */
  checkpointDir: string;
  /** `${DATA_DIR}/connector.db` */
  sqlitePath: string;
  /** ATTACHMENTS_DIR or `${DATA_DIR}/attachments` */
  attachmentsDir: string;
  /** Variables that look like settings but are none (see unknownSettings). */
  unknownSettings: UnknownSetting[];
}

/** Names of settings whose values are secrets: never logged, redacted wherever they appear. */
export const SECRET_SETTINGS = ['TEAMWORK_API_KEY', 'TEAMWORK_WEBHOOK_TOKEN', 'MISSIVE_API_TOKEN', 'MISSIVE_WEBHOOK_SECRET', 'AIRTABLE_TOKEN', 'NGROK_AUTHTOKEN', 'ADMIN_TOKEN', 'DATABASE_URL', 'REDIS_URL', 'QUEUE_DATABASE_URL', 'ALERT_WEBHOOK_URL'] as const;

export type Env = Record<string, string | undefined>;

/** Parses settings from `env`. Throws a CONN_ERR_CONFIG_INVALID ConnectorError naming the variable. */
export function parseConfig(env: Env): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') input[key] = value.trim();
  }
  try {
    return parseInput(input, env);
  } catch (err) {
    // A setting missing or wrong because the variable meant to set it is misspelled: say so in the same line.
    if (!(err instanceof ConnectorError)) throw err;
    const meant = unknownSettings(env).filter((u) => u.suggestion !== null && u.suggestion === err.details?.variable);
    if (meant.length === 0) throw err;
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `${err.message} (${meant.map(unknownSettingText).join('; ')})`, { details: err.details });
  }
}

/** The schema's parse of the known variables, the combinations checked, derived values filled in. */
function parseInput(input: Record<string, string>, env: Env): Config {
  const result = ConfigSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = String(issue?.path[0] ?? 'configuration');
    const rule = issue?.message ?? 'is invalid';
    const shown = name in input && !(SECRET_SETTINGS as readonly string[]).includes(name) ? ` (got "${input[name]}")` : '';
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Invalid setting ${name}: ${rule}${shown}`, { details: { variable: name } });
  }
  const raw = result.data;
  assertCombinations(raw);
  const dataDir = path.resolve(raw.DATA_DIR);
  return {
    ...raw,
    DATA_DIR: dataDir,
    LOG_DIR: path.resolve(raw.LOG_DIR),
    teamworkBaseUrl: raw.TEAMWORK_BASE_URL ?? (raw.TEAMWORK_SITE ? `https://${raw.TEAMWORK_SITE.toLowerCase()}.teamwork.com` : null),
    queueDir: path.join(dataDir, 'queue'),
    checkpointDir: path.join(dataDir, 'checkpoints'),
    sqlitePath: path.join(dataDir, 'connector.db'),
    attachmentsDir: path.resolve(raw.ATTACHMENTS_DIR ?? path.join(dataDir, 'attachments')),
    unknownSettings: unknownSettings(env),
  };
}

function assertCombinations(raw: RawConfig): void {
  const need = (name: keyof RawConfig, when: string) => {
    if (raw[name] === undefined) {
      throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Invalid setting ${name}: required when ${when}`, { details: { variable: name } });
    }
  };
  if (raw.DB_BACKEND === 'postgres') need('DATABASE_URL', 'DB_BACKEND=postgres');
  if (raw.DB_BACKEND === 'airtable') {
    need('AIRTABLE_TOKEN', 'DB_BACKEND=airtable');
    need('AIRTABLE_BASE_ID', 'DB_BACKEND=airtable');
  }
  if (raw.QUEUE_BACKEND === 'redis') need('REDIS_URL', 'QUEUE_BACKEND=redis');
  if (raw.QUEUE_BACKEND === 'postgres' && raw.QUEUE_DATABASE_URL === undefined && raw.DATABASE_URL === undefined) {
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', 'Invalid setting QUEUE_DATABASE_URL: required when QUEUE_BACKEND=postgres (or set DATABASE_URL)', { details: { variable: 'QUEUE_DATABASE_URL' } });
  }
  if (raw.HTTP_HEADERS_TIMEOUT_MS > raw.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Invalid setting HTTP_HEADERS_TIMEOUT_MS: must be at most HTTP_REQUEST_TIMEOUT_MS (${raw.HTTP_REQUEST_TIMEOUT_MS})`, { details: { variable: 'HTTP_HEADERS_TIMEOUT_MS' } });
  }
}

/**
 * The warning for DB_BACKEND=sqlite with a shared queue (null otherwise). Every worker writes the SQLite
 * file of its own DATA_DIR: on one host, sharing one DATA_DIR, that is one database; on several hosts it
 * is several, each with only the events its host happened to claim. Warned at every start and by
 * doctor rather than refused, because several workers on one host are a sound use of a shared queue.
 */
export function sharedQueueSqliteWarning(config: Pick<Config, 'DB_BACKEND' | 'QUEUE_BACKEND' | 'sqlitePath'>): string | null {
  if (config.DB_BACKEND !== 'sqlite' || config.QUEUE_BACKEND === 'file') return null;
  return `DB_BACKEND=sqlite with QUEUE_BACKEND=${config.QUEUE_BACKEND}: this worker writes ${config.sqlitePath}; workers on other hosts write their own file and each holds only the events it claimed. Run every worker on this host with this DATA_DIR, or use DB_BACKEND=postgres (docs/operations.md)`;
}

/**
 * The environment with `.env` (from `dir`) merged under it: a variable already set in the environment
 * wins over the file.
 */
export function readEnv(dir: string = process.cwd(), env: Env = process.env): Env {
  const file = path.join(dir, '.env');
  if (!existsSync(file)) return env;
  const fromFile = parseEnv(readFileSync(file, 'utf8'));
  return { ...fromFile, ...Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) };
}

/** Settings for this process: `.env` + environment, parsed. */
export function loadConfig(env: Env = readEnv()): Config {
  return parseConfig(env);
}

// ───────────────────────────── unknown settings ─────────────────────────────

/** A variable that looks like a setting but is none; `suggestion`: the closest known name, if close. */
export interface UnknownSetting {
  name: string;
  suggestion: string | null;
}

const KNOWN = Object.keys(ConfigSchema.shape);
/** Our prefixes: the first word of every two-word name (TEAMWORK_, DB_, HTTP_, ...). */
const PREFIXES = [...new Set(KNOWN.filter((n) => n.includes('_')).map((n) => `${n.slice(0, n.indexOf('_'))}_`))];
/** Variables of the system and its tools that share a prefix or nearly a name with ours. */
const SYSTEM_NAMES = new Set(['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'FTP_PROXY', 'HOSTNAME', 'HOSTTYPE', 'LOGNAME', 'TEST_DATABASE_URL', 'TEST_REDIS_URL']);
const SYSTEM_PREFIXES = ['NODE_', 'NPM_', 'VITEST', 'GITHUB_', 'RUNNER_', 'XDG_', 'LC_', 'SSH_', 'BENCH_', 'PG', 'TEST_'];

/**
 * The variables of `env` that look like ours but are not: a name with one of our prefixes
 * (case-insensitive), or within a small edit distance of a known name (1 for short names, 2 from 8
 * characters, 3 from 16; transpositions count once). The system's own variables are never flagged.
 */
export function unknownSettings(env: Env): UnknownSetting[] {
  const found: UnknownSetting[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || KNOWN.includes(name)) continue;
    const upper = name.toUpperCase();
    if (SYSTEM_NAMES.has(upper) || SYSTEM_PREFIXES.some((p) => upper.startsWith(p))) continue;
    let best: string | null = null;
    let bestDistance = Infinity;
    for (const known of KNOWN) {
      const d = editDistance(upper, known);
      if (d < bestDistance) [best, bestDistance] = [known, d];
    }
    const near = best !== null && bestDistance <= allowedDistance(best);
    if (!near && !PREFIXES.some((p) => upper.startsWith(p))) continue;
    found.push({ name, suggestion: near ? best : closeEnough(upper, best, bestDistance) });
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

/** One line for an unknown setting (its name and the suggestion; never its value). */
export function unknownSettingText(unknown: UnknownSetting): string {
  return unknown.suggestion !== null
    ? `unknown setting ${unknown.name}: did you mean ${unknown.suggestion}?`
    : `unknown setting ${unknown.name}: not a setting of this connector, so it is ignored (every setting: docs/configuration.md)`;
}

function allowedDistance(known: string): number {
  return known.length >= 16 ? 3 : known.length >= 8 ? 2 : 1;
}

/** For a name with our prefix: the closest known name when it is not far off (a third of its length). */
function closeEnough(name: string, best: string | null, distance: number): string | null {
  return best !== null && distance <= Math.floor(Math.max(name.length, best.length) / 3) ? best : null;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent transpositions. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const row = rows[i] as number[];
      const above = rows[i - 1] as number[];
      row[j] = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j] as number, ((rows[i - 2] as number[])[j - 2] as number) + 1);
    }
  }
  return (rows[a.length] as number[])[b.length] as number;
}
