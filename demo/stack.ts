/**
 * Everything the demo runs, in this one process: the Teamwork, Missive and Airtable simulators and the
 * connector (webhook server + worker + reconciliation) pointed at them, with webhooks registered the
 * way an operator registers them. Start-up order: simulators (the connector's APIs), then the
 * connector (Missive validates a rule's URL when it is created, so the connector must be listening),
 * then the registrations. Stop order is the reverse: the connector first, while the simulators still
 * answer the requests of the event in hand, then the simulators.
 *
 * Ports: each service tries its usual port and, when that port is busy, takes a free one and says so.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { parseConfig, type Config } from '../src/config.ts';
import { airtableSetup } from '../src/db/airtable/setup.ts';
import type { Logger } from '../src/log.ts';
import { startConnector, type RunningConnector } from '../src/main.ts';
import { createMissiveSource } from '../src/sources/missive/index.ts';
import { createTeamworkSource, registerWebhooks } from '../src/sources/teamwork/index.ts';
import { startAirtableSimulator, type AirtableSimulator } from '../simulators/airtable/index.ts';
import { startMissiveSimulator, startTeamworkSimulator, type MissiveSimulator, type TeamworkSimulator } from '../simulators/index.ts';
import { DEFAULT_PORTS, type DemoOptions } from './options.ts';

/** Secrets the demo's simulators sign webhooks with; demo-only values, not credentials. */
export const DEMO_SECRETS = {
  teamworkWebhookToken: 'demo-teamwork-webhook-token',
  missiveWebhookSecret: 'demo-missive-webhook-secret',
} as const;

/**
 * Backfill settings for the demo. The first backfill imports everything the simulated accounts hold
 * (their history spans 30 days), so rows appear at once. The overlap only needs to cover the time
 * between two reconciliations here (the simulators show changes at once), and a small one keeps each
 * reconciliation inside Missive's request budget (900 per 15 minutes).
 */
const BACKFILL_INITIAL_HOURS = 31 * 24;
const BACKFILL_OVERLAP_SECONDS = 60;

export interface RowCounts {
  tasks: number;
  emails: number;
  /** Null when the backend cannot count them cheaply. */
  attachments: number | null;
}

export interface DemoStack {
  teamwork: TeamworkSimulator;
  missive: MissiveSimulator;
  airtable: AirtableSimulator;
  connector: RunningConnector;
  config: Config;
  /** The connector's base URL. */
  url: string;
  registrations: { teamworkWebhooks: number; missiveRules: number };
  /** Rows in the database; for Airtable, counted in the simulator so no API request is spent. */
  countRows(): Promise<RowCounts>;
  /** Stops the connector, then the simulators. Safe to call more than once. */
  stop(): Promise<void>;
}

export interface StackDeps {
  options: DemoOptions;
  /** Made once the settings are known (its file goes to the log folder). */
  makeLogger: (config: Config) => Logger;
  /** One line for the person watching (a port that was busy, what was set up). */
  note: (line: string) => void;
}

/** Where a listen failed because the port is taken. */
function portBusy(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'EADDRINUSE';
}

/** Starts on `port`, or on a free port when `port` is taken (noted). */
async function onPortOrFree<T>(what: string, port: number, start: (port: number) => Promise<T>, note: (line: string) => void): Promise<T> {
  try {
    return await start(port);
  } catch (err) {
    if (port === 0 || !portBusy(err)) throw err;
    note(`Port ${port} is busy; the ${what} takes a free port instead.`);
    return start(0);
  }
}

export async function startStack(deps: StackDeps): Promise<DemoStack> {
  const { options, note } = deps;
  const host = '127.0.0.1';
  const anyPort = options.port === 0;
  const started: Array<{ stop(): Promise<void> }> = [];
  const stopStarted = async (): Promise<void> => {
    for (const service of started.splice(0).reverse()) await service.stop().catch(() => {});
  };

  try {
    const teamwork = await onPortOrFree('Teamwork simulator', anyPort ? 0 : DEFAULT_PORTS.teamwork, (port) => startTeamworkSimulator({ host, port }), note);
    started.push(teamwork);
    const missive = await onPortOrFree('Missive simulator', anyPort ? 0 : DEFAULT_PORTS.missive, (port) => startMissiveSimulator({ host, port }), note);
    started.push(missive);
    const airtable = await onPortOrFree('Airtable simulator', anyPort ? 0 : DEFAULT_PORTS.airtable, (port) => startAirtableSimulator({ host, port }), note);
    started.push(airtable);

    const config = parseConfig({
      PORT: String(options.port),
      HOST: host,
      DATA_DIR: options.dataDir,
      LOG_DIR: options.logDir,
      LOG_LEVEL: 'info',
      DB_BACKEND: options.airtable ? 'airtable' : 'sqlite',
      ...(options.airtable ? { AIRTABLE_TOKEN: airtable.token, AIRTABLE_BASE_ID: airtable.baseId, AIRTABLE_BASE_URL: airtable.url } : {}),
      TEAMWORK_BASE_URL: teamwork.credentials.baseUrl,
      TEAMWORK_API_KEY: teamwork.credentials.apiKey,
      TEAMWORK_WEBHOOK_TOKEN: DEMO_SECRETS.teamworkWebhookToken,
      MISSIVE_BASE_URL: missive.credentials.baseUrl,
      MISSIVE_API_TOKEN: missive.credentials.token,
      MISSIVE_WEBHOOK_SECRET: DEMO_SECRETS.missiveWebhookSecret,
      // The demo runs the first backfill and each reconciliation itself (see scenario.ts): its
      // counters then see every event, and the setting's interval counts whole minutes.
      BACKFILL_INTERVAL_MINUTES: '0',
      BACKFILL_ON_START: 'false',
      BACKFILL_INITIAL_HOURS: String(BACKFILL_INITIAL_HOURS),
      BACKFILL_OVERLAP_SECONDS: String(BACKFILL_OVERLAP_SECONDS),
      ATTACHMENTS_STORE: 'true',
      // The console is on: the operator's ADMIN_TOKEN when set, else a fresh one the banner prints.
      ADMIN_TOKEN: process.env.ADMIN_TOKEN ?? randomBytes(16).toString('hex'),
      // The demo's webhooks arrive within milliseconds and it reconciles every few seconds: judge
      // changes after 5 s, so that the webhook it drops shows in the console as missed, with its alert.
      MISSED_WEBHOOKS_GRACE_SECONDS: '5',
      MISSED_WEBHOOKS_ALERT_COUNT: '1',
      // The simulator serves attachment content on this machine over http: downloads may reach it.
      ATTACHMENTS_ALLOWED_HOSTS: new URL(missive.credentials.baseUrl).host,
    });
    const log = deps.makeLogger(config);

    if (options.airtable) await airtableSetup(config, { log: log.child({ component: 'airtable-setup' }) });

    // Both vendors, as createSources makes them; the Teamwork source kept typed so that its API client
    // can register the webhooks.
    const teamworkSource = createTeamworkSource(config, { log: log.child({ source: 'teamwork' }) });
    const sources = [teamworkSource, createMissiveSource(config, { log })];
    let connectorConfig = config;
    const connector = await onPortOrFree(
      'connector',
      config.PORT,
      (port) => {
        connectorConfig = { ...config, PORT: port };
        return startConnector(connectorConfig, { roles: { serve: true, work: true }, log, sources });
      },
      note,
    );
    started.push(connector);
    const url = connector.url as string;

    const client = teamworkSource.client;
    if (client === null) throw new Error('the Teamwork source has no API client (the demo sets its credentials)');
    const hooks = await registerWebhooks({ client, publicUrl: url, token: DEMO_SECRETS.teamworkWebhookToken });
    // Missive rules are made in Missive's UI; the simulator does what the operator would do there.
    const rules = await missive.createAllRules(`${url}/webhooks/missive`, DEMO_SECRETS.missiveWebhookSecret);

    const db = connector.db;
    const countRows = async (): Promise<RowCounts> => {
      if (options.airtable) {
        const count = (table: string): number => {
          try {
            return airtable.tables.records(table).length;
          } catch {
            return 0; // not made yet
          }
        };
        return { tasks: count('Tasks'), emails: count('Emails'), attachments: null };
      }
      if (db === null) return { tasks: 0, emails: 0, attachments: 0 };
      return db.counts();
    };

    let stopping: Promise<void> | null = null;
    return {
      teamwork,
      missive,
      airtable,
      connector,
      config: connectorConfig,
      url,
      registrations: { teamworkWebhooks: hooks.created.length + hooks.existing.length, missiveRules: rules.length },
      countRows,
      stop: () => (stopping ??= stopStarted()),
    };
  } catch (err) {
    await stopStarted();
    throw err;
  }
}

/** `p` relative to the working directory when it is inside it (shorter to read and paste), else absolute. */
export function shownPath(p: string): string {
  const relative = path.relative(process.cwd(), p);
  const shown = relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : p;
  return /[\s"'$`\\]/.test(shown) ? `'${shown.replace(/'/g, `'\\''`)}'` : shown;
}
