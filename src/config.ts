/**
 * Every setting, in one schema, parsed once at boot. A bad value stops start-up with one line naming the
 * variable and the rule (exit code 2). `.env` in the working directory is read when present; variables
 * already set in the environment win. An empty value counts as unset, so a copied `.env.example` with
 * blanks behaves like no file at all. `.env.example` documents every variable; a test keeps the two and
 * docs/configuration.md in step.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { ConnectorError } from './errors.ts';
import { parseAllowedHost } from './http/guarded-fetch.ts';

const LOG_LEVELS = { trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', warning: 'warn', error: 'error', fatal: 'fatal', silent: 'silent' } as const;

const int = (min: number, max: number) => z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);
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

  DB_BACKEND: z.enum(['sqlite', 'postgres', 'airtable'], { error: 'must be sqlite, postgres or airtable' }).default('sqlite'),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  AIRTABLE_TOKEN: headerToken(secret).optional(),
  AIRTABLE_BASE_ID: z.string().regex(/^app[A-Za-z0-9]+$/, 'must be an Airtable base id (app...)').optional(),
  AIRTABLE_BASE_URL: url.default('https://api.airtable.com'),

  QUEUE_BACKEND: z.enum(['file', 'redis'], { error: 'must be file or redis' }).default('file'),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').optional(),
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
  BACKFILL_INTERVAL_MINUTES: int(0, 7 * 24 * 60).default(15),
  BACKFILL_ON_START: bool.default(true),
  POLLING_ONLY: bool.default(false),
  PUBLIC_URL: url.optional(),

  TEAMWORK_SITE: z.string().regex(/^[a-z0-9-]+(\.eu)?$/i, 'must be your site name, as in https://<site>.teamwork.com (add .eu for EU sites)').optional(),
  TEAMWORK_BASE_URL: url.optional(),
  TEAMWORK_API_KEY: headerToken(secret).optional(),
  TEAMWORK_WEBHOOK_TOKEN: secret.optional(),
  TEAMWORK_REQUESTS_PER_MINUTE: int(1, 10_000).default(120),

  MISSIVE_API_TOKEN: headerToken(secret).optional(),
  MISSIVE_BASE_URL: url.default('https://public.missiveapp.com/v1'),
  MISSIVE_WEBHOOK_SECRET: secret.optional(),

  ATTACHMENTS_STORE: bool.default(false),
  ATTACHMENTS_DIR: z.string().min(1).optional(),
  ATTACHMENTS_MAX_BYTES: int(0, 2 * 1024 * 1024 * 1024).default(25 * 1024 * 1024),
  /** Hosts attachment downloads may reach although private or loopback, and over http (tests, the demo). */
  ATTACHMENTS_ALLOWED_HOSTS: hostList.optional(),

  NGROK_AUTHTOKEN: headerToken(secret).optional(),
  ADMIN_TOKEN: headerToken(z.string().min(16, 'must be at least 16 characters')).optional(),
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
}

/** Names of settings whose values are secrets: never logged, redacted wherever they appear. */
export const SECRET_SETTINGS = ['TEAMWORK_API_KEY', 'TEAMWORK_WEBHOOK_TOKEN', 'MISSIVE_API_TOKEN', 'MISSIVE_WEBHOOK_SECRET', 'AIRTABLE_TOKEN', 'NGROK_AUTHTOKEN', 'ADMIN_TOKEN', 'DATABASE_URL', 'REDIS_URL'] as const;

export type Env = Record<string, string | undefined>;

/** Parses settings from `env`. Throws a CONN_ERR_CONFIG_INVALID ConnectorError naming the variable. */
export function parseConfig(env: Env): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') input[key] = value.trim();
  }
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
  // QUEUE_BACKEND=redis is refused by createQueue (not built yet), so REDIS_URL is not asked for first.
  if (raw.HTTP_HEADERS_TIMEOUT_MS > raw.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Invalid setting HTTP_HEADERS_TIMEOUT_MS: must be at most HTTP_REQUEST_TIMEOUT_MS (${raw.HTTP_REQUEST_TIMEOUT_MS})`, { details: { variable: 'HTTP_HEADERS_TIMEOUT_MS' } });
  }
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
