/**
 * Plain-text renderings of admin results, for the CLI (the console renders the same objects
 * in the browser from its JSON API). Pure functions: a result in, lines out, no colour, no terminal codes.
 */
import type { SchemaReport } from '../db/airtable/setup.ts';
import type { BackfillReport } from './backfill.ts';
import type { QueueReport } from './check-queue.ts';
import type { DiscardResult } from './dead-letters.ts';
import type { DoctorReport } from './doctor.ts';
import type { HookInfo, VendorWebhookReport, WebhookAction } from './register-webhooks.ts';
import type { ReplayResult } from './replay-dead-letters.ts';
import type { WorkerStatus } from './worker-status.ts';

/** `1234567` -> `1,234,567`. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** `1 page`, `2 pages`, `1,200 events`. */
export function plural(n: number, noun: string): string {
  return `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`;
}

/** Milliseconds as `850 ms`, `12.3 s`, `4m 05s`, `3h 12m`, `2d 4h`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  const total = Math.floor(s);
  if (total < 3600) return `${Math.floor(total / 60)}m ${pad(total % 60)}s`;
  if (total < 86_400) return `${Math.floor(total / 3600)}h ${pad(Math.floor((total % 3600) / 60))}m`;
  return `${Math.floor(total / 86_400)}d ${Math.floor((total % 86_400) / 3600)}h`;
}

/** Rows as left-aligned columns separated by two spaces (the last column is not padded). */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

export function describeWorker(worker: WorkerStatus): string {
  switch (worker.state) {
    case 'running':
      return `running (pid ${worker.pid}${worker.since !== null ? `, since ${worker.since}` : ''})`;
    case 'stopped':
      return 'not running: events wait until `npm start` (or `npm run work`) runs';
    case 'unknown':
      return `unknown (${worker.reason})`;
    default: {
      const never: never = worker;
      return String(never);
    }
  }
}

export function renderQueueReport(report: QueueReport, where: string): string[] {
  const { stats } = report;
  const lines = [`${report.backend} queue at ${where}`, `worker: ${describeWorker(report.worker)}`, ''];
  lines.push(
    ...table([
      ['pending', formatCount(stats.pending)],
      ['in flight', report.inFlightCountedAsPending ? 'counted as pending (claims live in the worker process)' : formatCount(stats.inFlight)],
      ['delayed', formatCount(stats.delayed)],
      ['dead letters', stats.deadLettered > 0 ? `${formatCount(stats.deadLettered)}  (see them: npm run replay-dlq -- --all --dry-run)` : '0'],
      ['oldest', stats.oldestPendingAgeMs === null ? '-' : formatDuration(stats.oldestPendingAgeMs)],
    ]),
  );
  if (report.recent.length > 0) {
    lines.push('', `newest ${report.recent.length} waiting (newest first):`);
    lines.push(...table([['received', 'source', 'origin', 'type', 'entity', 'event id'], ...report.recent.map((e) => [e.receivedAt, e.source, e.origin, e.type, e.entityKey ?? '-', e.id])]).map((l) => `  ${l}`));
  }
  return lines;
}

export function renderReplay(result: ReplayResult): string[] {
  const n = result.replayed.length;
  const lines: string[] = [];
  if (n === 0) lines.push('no dead letter matches');
  else {
    lines.push(result.dryRun ? `${n} dead letter(s) would be replayed (dry run; nothing changed):` : `replayed ${n} dead letter(s) to the queue:`);
    lines.push(
      ...table([
        ['event id', 'source', 'type', 'attempts', 'dead since', 'error'],
        ...result.replayed.map((d) => [d.event.id, d.event.source, d.event.type, String(d.attempts), d.deadLetteredAt, `${d.error.code}: ${oneLine(d.error.message, 80)}`]),
      ]).map((l) => `  ${l}`),
    );
  }
  if (result.missingIds.length > 0) lines.push(`not among the dead letters: ${result.missingIds.join(', ')}`);
  if (!result.dryRun && n > 0) lines.push('the worker (a running `npm start`, or the next one) processes them again from attempt 1');
  return lines;
}

export function renderDiscard(result: DiscardResult): string[] {
  const n = result.discarded.length;
  const lines: string[] = [];
  if (n === 0) lines.push('no dead letter matches');
  else {
    lines.push(result.dryRun ? `${n} dead letter(s) would be discarded (dry run; nothing changed):` : `discarded ${n} dead letter(s) for good:`);
    lines.push(
      ...table([
        ['event id', 'source', 'type', 'attempts', 'dead since', 'error'],
        ...result.discarded.map((d) => [d.event.id, d.event.source, d.event.type, String(d.attempts), d.deadLetteredAt, `${d.error.code}: ${oneLine(d.error.message, 80)}`]),
      ]).map((l) => `  ${l}`),
    );
  }
  if (result.missingIds.length > 0) lines.push(`not among the dead letters: ${result.missingIds.join(', ')}`);
  return lines;
}

function hookRows(hooks: readonly HookInfo[], mark: string): string[][] {
  return hooks.map((h) => [`  ${mark}`, h.event, h.id]);
}

export function renderWebhookReports(action: WebhookAction, reports: readonly VendorWebhookReport[]): string[] {
  const lines: string[] = [];
  for (const r of reports) {
    if (lines.length > 0) lines.push('');
    const summary =
      r.status !== 'ok'
        ? r.status.toUpperCase()
        : action === 'register'
          ? `${r.created.length} created, ${r.existing.length} already there`
          : action === 'remove'
            ? `${r.removed.length} removed`
            : `${r.existing.length} hook(s)`;
    lines.push(`${r.source} (${r.endpoint}): ${summary}`);
    lines.push(...table([...hookRows(r.created, 'created'), ...hookRows(r.existing, action === 'list' ? 'hook' : 'exists'), ...hookRows(r.removed, 'removed')]));
    if (r.error !== undefined) lines.push(`  error: ${r.error}`);
    if (r.fix !== undefined) lines.push(`  fix: ${r.fix}`);
    for (const note of r.notes) lines.push(`  note: ${note}`);
    if (r.manualSteps !== undefined) {
      lines.push('  by hand:');
      r.manualSteps.forEach((step, i) => lines.push(`    ${i + 1}. ${step}`));
    }
  }
  return lines;
}

export function renderDoctor(report: DoctorReport): string[] {
  const lines = table([['CHECK', 'STATUS', 'DETAIL'], ...report.checks.map((c) => [c.name, c.status, c.detail])]);
  const failed = report.checks.filter((c) => c.status === 'FAIL');
  const warned = report.checks.filter((c) => c.status === 'WARN');
  if (failed.length > 0) {
    lines.push('', 'to fix:');
    for (const c of failed) lines.push(`  ${c.name}: ${c.fix ?? 'see the detail above'}`);
  }
  if (warned.length > 0) {
    lines.push('', 'worth a look:');
    for (const c of warned) lines.push(`  ${c.name}: ${c.fix ?? c.detail}`);
  }
  lines.push('', failed.length > 0 ? `${failed.length} check(s) failed` : warned.length > 0 ? `all checks passed (${warned.length} warning${warned.length === 1 ? '' : 's'})` : 'all checks passed');
  return lines;
}

export function renderBackfillSummary(report: BackfillReport, worker: WorkerStatus): string[] {
  const lines: string[] = [];
  for (const o of report.outcomes) {
    switch (o.status) {
      case 'done':
        lines.push(`${o.source}: ${plural(o.result.events, 'event')} in ${plural(o.result.pages, 'page')}, ${formatDuration(o.result.durationMs)} (since ${o.result.since.toISOString()})`);
        if (o.result.missed !== null && o.result.missed > 0) lines.push(`  ${plural(o.result.missed, 'change')} no webhook had delivered (see the log line naming them; check the webhook registrations at the vendor)`);
        break;
      case 'failed':
        lines.push(`${o.source}: FAILED after ${plural(o.progress?.events ?? 0, 'event')}: ${o.error.code}: ${o.error.message}`);
        lines.push(`  its checkpoint stays at the last completed page; run the backfill again to continue`);
        break;
      case 'skipped':
        lines.push(`${o.source}: skipped (${o.reason})`);
        break;
      default: {
        const never: never = o;
        lines.push(String(never));
      }
    }
  }
  const queued = `${plural(report.events, 'event')} enqueued`;
  if (worker.state === 'running') lines.push(`${queued}; the running worker (pid ${worker.pid}) processes them: watch with \`npm run check-queue\``);
  else if (worker.state === 'stopped') lines.push(`${queued}; no worker is running on this queue: \`npm start\` (or \`npm run work\`) processes them`);
  else lines.push(`${queued}; the worker (\`npm start\` or \`npm run work\`) processes them`);
  return lines;
}

export function renderAirtableSetup(report: SchemaReport): string[] {
  const lines = [`Airtable base ${report.baseId}`];
  lines.push(...table(Object.entries(report.tableIds).map(([name, id]) => [`  table ${name}`, id, report.createdTables.includes(name) ? 'created' : 'present'])));
  if (report.createdFields.length > 0) lines.push(`  fields added: ${report.createdFields.map((f) => `${f.table}.${f.field}`).join(', ')}`);
  if (report.createdTables.length === 0 && report.createdFields.length === 0) lines.push('  every table and field was already there');
  if (report.problems.length > 0) {
    lines.push('  to fix in Airtable (the connector never changes or deletes existing fields):');
    for (const p of report.problems) lines.push(`    - ${p}`);
  }
  return lines;
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
