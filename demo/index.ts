/**
 * `npm run demo`: the connector at work on a fresh clone, with no credentials and no servers. In this
 * one process: the Teamwork, Missive and Airtable simulators, the connector (SQLite + file queue, or
 * `--airtable`) pointed at them, webhooks registered, a scripted tour of every behaviour followed by
 * random activity, and a running summary. Ctrl-C (or SIGTERM, or `--duration`) stops everything in
 * order and exits 0; a second Ctrl-C exits at once.
 *
 * Lifecycle: parse flags -> prepare the demo folders -> start the stack -> banner -> run (scenario,
 * status every 2 s) -> stop requested -> scenario stopped -> stack stopped -> final summary -> the
 * process exits by itself because nothing is left open. Should anything still hold it open, a guard
 * names what and exits anyway after a few seconds.
 */
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Config } from '../src/config.ts';
import { createLogger, secretValues } from '../src/log.ts';
import { DemoDirError, prepareDemoDir, releaseDemoDir } from './data-dir.ts';
import { Display, duration, statusBlock, type StatusData } from './display.ts';
import { forwardWarnings } from './log-forwarder.ts';
import { parseDemoOptions, type DemoOptions } from './options.ts';
import { Scenario } from './scenario.ts';
import { StopRequest } from './stop-request.ts';
import { shownPath, startStack, type DemoStack, type RowCounts } from './stack.ts';
import { Feed, Tally } from './tally.ts';

/** How often the status is refreshed, ms. */
const STATUS_EVERY_MS = 2_000;
/** Between two reconciliations, ms. */
const RECONCILE_EVERY_MS = 15_000;
/** After a clean stop, how long the process may take to exit by itself before the guard steps in, ms. */
const EXIT_GUARD_MS = 3_000;

async function main(): Promise<number> {
  const parsed = parseDemoOptions(process.argv.slice(2));
  if ('exitCode' in parsed) return parsed.exitCode;
  const options = parsed;
  // Listening first, so that Ctrl-C during start-up also stops cleanly once start-up is through.
  const stop = new StopRequest().listen();

  let kept: boolean;
  try {
    kept = prepareDemoDir(options.dataDir, { keep: options.keep }).kept;
    prepareDemoDir(options.logDir, { keep: options.keep });
  } catch (err) {
    if (!(err instanceof DemoDirError)) throw err;
    process.stderr.write(`demo: ${err.message}\n`);
    return 2;
  }
  try {
    return await run(options, stop, kept);
  } finally {
    releaseDemoDir(options.dataDir);
    releaseDemoDir(options.logDir);
  }
}

async function run(options: DemoOptions, stop: StopRequest, kept: boolean): Promise<number> {
  const display = new Display({ mode: options.quiet ? 'quiet' : process.stdout.isTTY ? 'live' : 'plain' });
  display.text('Starting the Teamwork, Missive and Airtable simulators and the connector…');
  let shuttingDown = false;
  const makeLogger = (config: Config) =>
    createLogger({
      level: 'info',
      logDir: config.LOG_DIR,
      console: false,
      secrets: secretValues(config),
      destination: forwardWarnings((text) => display.warn(text), () => (shuttingDown ? 'error' : 'warn')),
    });
  let stack: DemoStack;
  try {
    stack = await startStack({ options, makeLogger, note: (line) => display.text(`  ${line}`) });
  } catch (err) {
    process.stderr.write(`demo: could not start: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  if (stop.reason !== null) {
    await stack.stop();
    process.stdout.write(`${stop.reason} during start-up: stopped.\n`);
    return 0;
  }
  const startedAt = Date.now();
  for (const line of banner(stack, options, kept)) display.text(line);

  const feed = new Feed();
  feed.onAdd((item) => display.event(item.text, item.at));
  const tally = new Tally(stack.connector.lifecycle, feed);
  const scenario = new Scenario(stack, feed, { reconcileEveryMs: RECONCILE_EVERY_MS });
  scenario.start();

  const gather = async (rows: () => Promise<RowCounts>): Promise<StatusData> => ({
    elapsedMs: Date.now() - startedAt,
    counts: tally.counts,
    rows: await rows().catch(() => null),
    queue: await stack.connector.queue.stats().catch(() => null),
    reconciliation: { runs: scenario.reconciliations, everyMs: RECONCILE_EVERY_MS, nextAt: scenario.nextReconcileAt },
  });
  let refreshing: Promise<void> | null = null;
  const refresh = (): void => {
    if (refreshing !== null || shuttingDown) return;
    refreshing = gather(stack.countRows)
      .then((data) => {
        if (!shuttingDown) display.status(data);
      })
      .finally(() => (refreshing = null));
  };
  refresh();
  const statusTimer = setInterval(refresh, STATUS_EVERY_MS);
  if (options.durationSeconds !== null) stop.after(options.durationSeconds);

  const reason = await stop.stopped;
  shuttingDown = true;
  clearInterval(statusTimer);
  await refreshing;
  display.close();
  const why = reason === 'duration' ? `${options.durationSeconds} s are up` : reason;
  process.stdout.write(`\nStopping (${why}): the activity, then the connector (it finishes the events in hand), then the simulators…\n`);
  if (reason !== 'duration') process.stdout.write(`${reason} again exits at once.\n`);
  await scenario.stop();
  await stack.stop();
  tally.detach();

  const final = await gather(() => countRowsAfterStop(stack, options));
  const lines = statusBlock(final, { title: `── stopped after ${duration(final.elapsedMs)}; nothing is left running ──`, final: true });
  process.stdout.write(`${lines.join('\n')}\n`);
  process.stdout.write(`The data stays in ${shownPath(stack.config.DATA_DIR)} until the next demo run starts fresh (--keep continues it instead).\n`);
  return 0;
}

/** The start-up lines: what runs where, and where to look. */
function banner(stack: DemoStack, options: DemoOptions, kept: boolean): string[] {
  const { config, url, teamwork, missive, airtable, registrations } = stack;
  const db = shownPath(config.sqlitePath);
  const freshness = kept ? 'with the data of the last demo run: --keep' : 'fresh';
  const lines = [
    '',
    'Teamwork & Missive Connector · demo',
    'Everything runs in this one process, against simulated Teamwork, Missive and Airtable.',
    '',
    `  connector   ${url}   webhooks in, /health, /metrics`,
    `  console     ${url}/dashboard   log in with the token ${config.ADMIN_TOKEN ?? ''}`,
    `  Teamwork    ${teamwork.url}   simulator · ${registrations.teamworkWebhooks} signed webhooks registered → ${url}/webhooks/teamwork`,
    `  Missive     ${missive.url}   simulator · ${registrations.missiveRules} signed rules created → ${url}/webhooks/missive`,
    `  Airtable    ${airtable.url}   simulator · ${options.airtable ? `the database (base ${airtable.baseId})` : 'idle (run with --airtable to store the records there)'}`,
    `  database    ${options.airtable ? `Airtable simulator, tables Tasks and Emails (${freshness})` : `SQLite ${db} (${freshness})`}`,
    `  files       queue ${shownPath(config.queueDir)} · attachments ${shownPath(config.attachmentsDir)} · log ${shownPath(path.join(config.LOG_DIR, 'app.log'))}`,
    '',
    'Look while it runs, from another terminal:',
  ];
  if (options.airtable) {
    lines.push(`  curl -s -H "Authorization: Bearer ${airtable.token}" "${airtable.url}/v0/${airtable.baseId}/Tasks?maxRecords=10"`);
  } else {
    lines.push(
      `  sqlite3 ${db} "select id,title,status,deleted from tasks order by updated_at desc limit 10"`,
      `  sqlite3 ${db} "select subject,from_address,deleted from emails order by updated_at desc limit 10"`,
    );
  }
  lines.push(`  curl -s ${url}/health`, `  curl -s ${url}/metrics`, `  tail -f ${shownPath(path.join(config.LOG_DIR, 'app.log'))}`, '');
  return lines;
}

/** Row counts once the connector has closed its database: read from the file (SQLite) or the simulator. */
async function countRowsAfterStop(stack: DemoStack, options: DemoOptions): Promise<RowCounts> {
  if (options.airtable) return stack.countRows();
  const db = new BetterSqlite3(stack.config.sqlitePath, { readonly: true, fileMustExist: true });
  try {
    const count = (table: string): number => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { tasks: count('tasks'), emails: count('emails'), attachments: count('attachments') };
  } finally {
    db.close();
  }
}

/** After a clean stop the process should exit by itself; if something still holds it open, say what. */
function guardExit(code: number): void {
  process.exitCode = code;
  const guard = setTimeout(() => {
    // Unref'd timers (this guard) are not listed.
    const open = process.getActiveResourcesInfo();
    process.stderr.write(`demo: something still held the process open after the stop (${open.join(', ') || 'unknown'}); exiting anyway\n`);
    process.exit(code);
  }, EXIT_GUARD_MS);
  guard.unref();
}

main().then(guardExit, (err: unknown) => {
  process.stderr.write(`demo: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  guardExit(1);
});
