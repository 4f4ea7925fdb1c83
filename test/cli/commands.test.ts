/**
 * The operator commands against a running system, as an operator runs them: the Teamwork, Missive
 * and Airtable simulators, `connector start` as a child process on a temp DATA_DIR (SQLite, file
 * queue), and each command as another child process on the same DATA_DIR while `start` runs.
 * Assertions are on what the commands print and exit with, and on the system: rows in SQLite, queue
 * counts from /health, hooks registered in the simulators, tables in the Airtable base.
 *
 * The tests run in order and share the running connector; each says what it leaves behind.
 */
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirtableSimulator, type AirtableSimulator } from '../../simulators/airtable/index.ts';
import { startMissiveSimulator, startTeamworkSimulator, type MissiveSimulator, type TeamworkSimulator } from '../../simulators/index.ts';
import { spawnConnector, type ConnectorProcess } from '../helpers/connector-process.ts';
import { runCli } from './run-cli.ts';

const TEAMWORK_TOKEN = 'cli-test-teamwork-token';
const MISSIVE_SECRET = 'cli-test-missive-secret';

let teamwork: TeamworkSimulator;
let missive: MissiveSimulator;
let airtable: AirtableSimulator;
let cwd: string;
let connector: ConnectorProcess | null = null;

/** Settings with both vendors' APIs and secrets; no start-up backfill, so what lands is what a test caused. */
function settings(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    TEAMWORK_BASE_URL: teamwork.credentials.baseUrl,
    TEAMWORK_API_KEY: teamwork.credentials.apiKey,
    TEAMWORK_WEBHOOK_TOKEN: TEAMWORK_TOKEN,
    MISSIVE_BASE_URL: missive.credentials.baseUrl,
    MISSIVE_API_TOKEN: missive.credentials.token,
    MISSIVE_WEBHOOK_SECRET: MISSIVE_SECRET,
    BACKFILL_ON_START: 'false',
    // The simulators' data spans 30 days; the first backfill reaches back past all of it.
    BACKFILL_INITIAL_HOURS: String(40 * 24),
    ...overrides,
  };
}

const cli = (args: string[], env: Record<string, string> = settings()) => runCli(args, { cwd, env });

interface Health {
  queue: { pending: number; inFlight: number; delayed: number; deadLettered: number };
}
async function health(): Promise<Health> {
  return (await (await fetch(`${connector?.url}/health`)).json()) as Health;
}

function query<T>(sql: string, ...params: unknown[]): T | undefined {
  const db = new BetterSqlite3(path.join(cwd, 'data', 'connector.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).get(...params) as T | undefined;
  } finally {
    db.close();
  }
}

async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch {
      // not there yet (the database file may not exist)
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopConnector(): Promise<void> {
  if (connector === null) return;
  connector.kill('SIGTERM');
  expect(await connector.exited).toBe(0);
  connector = null;
}

beforeAll(async () => {
  [teamwork, missive, airtable] = await Promise.all([startTeamworkSimulator({ seed: 'cli' }), startMissiveSimulator({ seed: 'cli' }), startAirtableSimulator()]);
  cwd = mkdtempSync(path.join(tmpdir(), 'conn-cli-'));
});

afterAll(async () => {
  if (connector !== null) {
    connector.kill('SIGKILL');
    await connector.exited;
  }
  await Promise.all([teamwork?.stop(), missive?.stop(), airtable?.stop()]);
  if (cwd !== undefined) rmSync(cwd, { recursive: true, force: true });
});

// Each test spawns several processes (about a second each on a busy two-core machine): generous limits.
describe('operator commands against a running connector', { timeout: 90_000 }, () => {
  it('replay-dlq: refuses without a filter, lists with --dry-run, and replays a dead letter once its cause is fixed', async () => {
    // 1. Without the Teamwork API, a legacy v1 webhook (an id and nothing else) cannot be stored: it is
    //    dead-lettered at once (CONN_ERR_SOURCE_UNCONFIGURED).
    const task = teamwork.data().tasks.find((t) => t.status !== 'deleted');
    if (task === undefined) throw new Error('the simulator has no live task');
    connector = await spawnConnector({ cwd, env: settings({ TEAMWORK_API_KEY: '' }) });
    expect(connector.output()).toContain('teamwork: API credentials are not set (TEAMWORK_API_KEY and TEAMWORK_SITE (or TEAMWORK_BASE_URL))');
    const v1 = `accountId=1&event=TASK.UPDATED&objectId=${task.id}&userId=1`;
    const delivered = await fetch(`${connector.url}/webhooks/teamwork`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-projects-signature': createHmac('sha256', TEAMWORK_TOKEN).update(v1).digest('hex') },
      body: v1,
    });
    expect(delivered.status).toBe(200);
    await waitFor(async () => (await health()).queue.deadLettered === 1, 'the dead letter');
    await stopConnector();

    // 2. The fix: start again with the API configured. The dead letter waits for a replay.
    connector = await spawnConnector({ cwd, env: settings() });
    const refused = await cli(['replay-dlq']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('say which dead letters to replay: --source <name>, --id <id...>, or --all');

    const dry = await cli(['replay-dlq', '--all', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('1 dead letter(s) would be replayed (dry run; nothing changed)');
    expect(dry.stdout).toMatch(/teamwork\s+TASK\.UPDATED\s+1\s+\S+\s+CONN_ERR_SOURCE_UNCONFIGURED/);
    expect((await health()).queue.deadLettered).toBe(1);
    expect(query('SELECT id FROM tasks WHERE id = ?', String(task.id))).toBeUndefined();

    const missing = await cli(['replay-dlq', '--id', 'no-such-event']);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('not among the dead letters: no-such-event');

    const replayed = await cli(['replay-dlq', '--source', 'teamwork']);
    expect(replayed.code).toBe(0);
    expect(replayed.stdout).toContain('replayed 1 dead letter(s) to the queue');
    // The running worker picks it up and, with the API now configured, fetches and stores the task.
    const row = await waitFor(() => query<{ title: string }>('SELECT title FROM tasks WHERE id = ?', String(task.id)), 'the replayed task row');
    expect(row.title).toBe(task.name);
    expect((await health()).queue.deadLettered).toBe(0);
  });

  it('check-queue: reads the queue of the running connector, as text and as JSON', async () => {
    const [text, json] = await Promise.all([cli(['check-queue']), cli(['check-queue', '--json', '--last', '3'])]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`file queue at ${path.join(cwd, 'data', 'queue')}`);
    expect(text.stdout).toMatch(new RegExp(`worker: running \\(pid ${connector?.child.pid}`));
    expect(text.stdout).toMatch(/dead letters\s+0/);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { backend: string; stats: Health['queue']; worker: { state: string; pid: number }; recent: unknown[] };
    expect(report.backend).toBe('file');
    expect(report.worker).toMatchObject({ state: 'running', pid: connector?.child.pid });
    const { pending, inFlight, delayed, deadLettered } = (await health()).queue;
    expect(report.stats).toMatchObject({ pending, inFlight, delayed, deadLettered });
  });

  it('backfill: enqueues what changed, says that the running worker processes it, and the rows arrive', async () => {
    const future = await cli(['backfill', '--since', '2999-01-01']);
    expect(future.code).toBe(2);
    expect(future.stderr).toContain('is in the future');

    const result = await cli(['backfill']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('teamwork: backfill from ');
    const teamworkEvents = Number(/^teamwork: ([\d,]+) events? in/m.exec(result.stdout)?.[1]?.replace(/,/g, ''));
    const missiveEvents = Number(/^missive: ([\d,]+) events? in/m.exec(result.stdout)?.[1]?.replace(/,/g, ''));
    expect(teamworkEvents).toBeGreaterThan(50);
    expect(missiveEvents).toBeGreaterThan(10);
    expect(result.stdout).toContain(`the running worker (pid ${connector?.child.pid}) processes them`);

    // One snapshot event per task: the tasks table ends with one row per event (the replayed task is among them).
    await waitFor(() => query<{ n: number }>('SELECT count(*) AS n FROM tasks')?.n === teamworkEvents, `${teamworkEvents} task rows`, 20_000);
    await waitFor(() => (query<{ n: number }>('SELECT count(*) AS n FROM emails')?.n ?? 0) >= missiveEvents, 'the email rows', 20_000);
    const mirror = JSON.parse(readFileSync(path.join(cwd, 'data', 'checkpoints', 'teamwork.json'), 'utf8')) as { last_event_time: string };
    expect(Date.parse(mirror.last_event_time)).toBeGreaterThan(0);
  });

  it('register-webhooks: needs a URL; registers at both vendors; deliveries arrive signed; lists; removes', async () => {
    const noUrl = await cli(['register-webhooks']);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toContain('set PUBLIC_URL');

    const url = connector?.url as string;
    const registered = await cli(['register-webhooks', '--url', url]);
    expect(registered.code).toBe(0);
    expect(registered.stdout).toContain(`teamwork (${url}/webhooks/teamwork): 8 created, 0 already there`);
    expect(registered.stdout).toContain(`missive (${url}/webhooks/missive): 6 created, 0 already there`);
    const twHooks = teamwork.listWebhooks().filter((h) => h.url === `${url}/webhooks/teamwork`);
    expect(twHooks.map((h) => h.event).sort()).toEqual(['TASK.COMPLETED', 'TASK.CREATED', 'TASK.DELETED', 'TASK.MOVED', 'TASK.REOPENED', 'TASK.TAGGED', 'TASK.UNTAGGED', 'TASK.UPDATED']);
    expect(twHooks.every((h) => h.token === TEAMWORK_TOKEN && h.version === 2)).toBe(true);
    const rules = missive.listRules().filter((r) => r.url === `${url}/webhooks/missive`);
    expect(rules).toHaveLength(6);
    expect(rules.every((r) => r.secret === MISSIVE_SECRET)).toBe(true);

    // A change in Teamwork now reaches the connector through the hooks, signed with the token.
    const task = teamwork.data().tasks.find((t) => t.status !== 'deleted');
    if (task === undefined) throw new Error('no live task');
    await teamwork.updateTask(task.id, { name: 'Renamed through a registered webhook' });
    await waitFor(() => query<{ title: string }>('SELECT title FROM tasks WHERE id = ?', String(task.id))?.title === 'Renamed through a registered webhook', 'the webhook-delivered change');

    const listed = await cli(['register-webhooks', '--list', '--url', url]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('teamwork (');
    expect(listed.stdout.match(/^ {2}hook /gm)).toHaveLength(14);

    const removed = await cli(['register-webhooks', '--remove', '--url', url]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('8 removed');
    expect(removed.stdout).toContain('6 removed');
    expect(teamwork.listWebhooks()).toHaveLength(0);
    expect(missive.listRules()).toHaveLength(0);
  });

  it('register-webhooks: without the Missive API, prints the steps to create the rule by hand', async () => {
    const result = await cli(['register-webhooks', '--source', 'missive', '--url', 'https://connector.example.com'], settings({ MISSIVE_API_TOKEN: '' }));
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('missive (https://connector.example.com/webhooks/missive): MANUAL');
    expect(result.stdout).toContain('Settings > Rules > New rule');
    expect(result.stdout).toContain('Action: Webhook, URL https://connector.example.com/webhooks/missive');
    expect(result.stdout).toContain('paste the value of MISSIVE_WEBHOOK_SECRET');
  });

  it('airtable-setup: creates the tables in the base, then finds them there', async () => {
    const env = settings({ AIRTABLE_TOKEN: airtable.token, AIRTABLE_BASE_ID: airtable.baseId, AIRTABLE_BASE_URL: airtable.url });
    const first = await cli(['airtable-setup'], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/table Tasks\s+tbl\w+\s+created/);
    expect(airtable.tables.schema().map((t) => t.name).sort()).toEqual(['Emails', 'Tasks']);
    // Airtable allows a base 5 requests a second, across processes, and answers more with a 30 s
    // penalty: the second run (which also reads both tables for duplicate ids) starts a second later.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const second = await cli(['airtable-setup'], env);
    expect(second.stdout).toContain('every table and field was already there');

    const missing = await cli(['airtable-setup']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('Invalid setting AIRTABLE_TOKEN: required for airtable-setup');
  });

  it('doctor: all checks pass against the running system; a wrong key fails with its fix; bad settings are reported, not fatal', async () => {
    const ok = await cli(['doctor'], settings({ PUBLIC_URL: connector?.url as string }));
    expect(ok.stdout).toContain('all checks passed');
    expect(ok.code).toBe(0);
    for (const check of ['config', 'webhook-signatures', 'database', 'queue', 'teamwork-api', 'missive-api', 'teamwork-webhook', 'missive-webhook', 'disk']) {
      expect(ok.stdout).toMatch(new RegExp(`^${check}\\s+OK\\s`, 'm'));
    }
    expect(ok.stdout).toMatch(/teamwork-webhook\s+OK\s+.*answered 401 CONN_ERR_WEBHOOK_SIGNATURE/);

    const wrongKey = await cli(['doctor'], settings({ TEAMWORK_API_KEY: 'not-the-key' }));
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stdout).toMatch(/^teamwork-api\s+FAIL\s+CONN_ERR_HTTP_AUTH/m);
    expect(wrongKey.stdout).toMatch(/^teamwork-webhook\s+SKIP\s+no PUBLIC_URL/m);
    expect(wrongKey.stdout).toContain('to fix:\n  teamwork-api: check TEAMWORK_API_KEY');

    const badSetting = await cli(['doctor'], settings({ MAX_QUEUE_ATTEMPTS: 'abc' }));
    expect(badSetting.code).toBe(1);
    expect(badSetting.stdout).toMatch(/^config\s+FAIL\s+Invalid setting MAX_QUEUE_ATTEMPTS: must be a number/m);
    expect(badSetting.stdout).toMatch(/^database\s+SKIP/m);
  });

  it('check-queue: lists the newest waiting events (without payloads) where no worker runs', async () => {
    await stopConnector();
    // Enqueue through a webhook-only process, so that events wait and no worker claims them.
    const server = await spawnConnector({ cwd, command: 'serve', env: settings() });
    connector = server;
    const body = JSON.stringify({ task: { id: 424242, name: 'Waiting task', dateUpdated: '2026-01-01T00:00:00Z', dateCreated: '2026-01-01T00:00:00Z' } });
    const { createHmac } = await import('node:crypto');
    const sent = await fetch(`${server.url}/webhooks/teamwork`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-projects-event': 'TASK.CREATED', 'x-projects-signature': createHmac('sha256', TEAMWORK_TOKEN).update(body).digest('hex') },
      body,
    });
    expect(sent.status).toBe(200);
    const result = await cli(['check-queue', '--last', '5']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('worker: not running: events wait until `npm start` (or `npm run work`) runs');
    expect(result.stdout).toMatch(/^pending\s+1$/m);
    expect(result.stdout).toMatch(/teamwork\s+webhook\s+TASK\.CREATED\s+task:424242/);
    expect(result.stdout).not.toContain('Waiting task');
    await stopConnector();
    expect(existsSync(path.join(cwd, 'data', 'queue', 'consumer.lock'))).toBe(false);
  });
});
