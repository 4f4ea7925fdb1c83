/**
 * Database write throughput: task upserts per second for each target of bench/db/backends.ts, one at a
 * time and in batches of 50, on the same machine in the same run, with each backend's ratio to its
 * baseline (PostgreSQL: the raw `pg` driver's multi-row upsert of the same rows into the same table).
 * Ratios are what to compare across machines; absolute figures depend on the machine.
 *
 * Each round opens every target on a fresh store, warms it up, then writes `--single` new tasks one by
 * one and the same tasks again with a newer update time (an insert and an update each), then the same
 * for `--batched` tasks in batches of `--batch-size`. The reported figure is the median over rounds.
 *
 *   npm run bench:db -- [--single 300] [--batched 5000] [--batch-size 50] [--rounds 3] [--json] [--check]
 *
 * A target held to a vendor's request budget (Airtable: 5 requests/s per base) writes fewer rows (its
 * own `rows`) and is reported as the requests per second it sustained over that budget, beside its
 * records per second and the number of 429 answers it drew.
 *
 * `--check` exits 1 when a backend is below its target ratio (PostgreSQL batched >= 0.5x raw), or a
 * budgeted one below its share of the budget (Airtable >= 90% of 5 requests/s) or refused with a 429.
 */
import { parseArgs } from 'node:util';
import type { Task } from '../../src/model.ts';
import { BASELINES, TARGETS, type BenchRows, type BenchTarget, type BenchWriter } from './backends.ts';

const { values: args } = parseArgs({
  options: {
    single: { type: 'string', default: '300' },
    batched: { type: 'string', default: '5000' },
    'batch-size': { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    check: { type: 'boolean', default: false },
  },
});
const SINGLE = Number(args.single);
const BATCHED = Number(args.batched);
const BATCH_SIZE = Number(args['batch-size']);
const ROUNDS = Number(args.rounds);
/** The batched ratio each backend must reach against its baseline. */
const TARGET_RATIO = 0.5;

const MODES = ['single', 'batched'] as const;
type Mode = (typeof MODES)[number];
const MODE_LABEL: Record<Mode, string> = { single: 'one at a time', batched: `batched (${BATCH_SIZE})` };

const BASE_TIME = Date.parse('2026-11-01T00:00:00.000Z');
const DESCRIPTION = 'Numbers from finance, charts from design; review with the team before Friday. '.repeat(8);

/** A realistic task: the size and shape the Teamwork mapping produces. */
function task(id: string, version: number): Task {
  const updatedAt = new Date(BASE_TIME + version * 60_000);
  return {
    id,
    title: `Quarterly report part ${id}`,
    description: DESCRIPTION,
    status: version === 0 ? 'new' : 'active',
    priority: 'high',
    progress: version * 10,
    projectId: '77',
    projectName: 'Operations',
    tasklistId: '501',
    tasklistName: 'Q4',
    parentTaskId: null,
    assignees: [
      { id: '9', name: 'Ada Lovelace', email: 'ada@example.com' },
      { id: '10', name: 'Grace Hopper', email: 'grace@example.com' },
    ],
    tags: ['finance', 'urgent'],
    startDate: '2026-11-01',
    dueDate: '2026-11-30',
    estimateMinutes: 90,
    createdAt: new Date(BASE_TIME),
    updatedAt,
    completedAt: null,
    createdBy: { id: '9', name: 'Ada Lovelace', email: 'ada@example.com' },
    updatedBy: { id: '10', name: 'Grace Hopper', email: null },
    url: `https://example.teamwork.com/app/tasks/${id}`,
    deleted: false,
    deletedAt: null,
    raw: { id, name: `Quarterly report part ${id}`, description: DESCRIPTION, tags: [{ id: 1, name: 'finance' }], updatedAt: updatedAt.toISOString() },
  };
}

const tasks = (prefix: string, count: number, version: number) => Array.from({ length: count }, (_, i) => task(`${prefix}${i}`, version));

/** One measurement: upserts per second, and for a store behind an API its requests per second and 429s. */
interface Sample {
  upserts: number;
  requests: number | null;
  rateLimited: number;
}

/** Writes `count` tasks twice (insert, then update) in `mode`. */
async function measure(writer: BenchWriter, mode: Mode, prefix: string, count: number): Promise<Sample> {
  const passes = [tasks(prefix, count, 0), tasks(prefix, count, 1)];
  const before = writer.requests?.();
  const started = process.hrtime.bigint();
  for (const pass of passes) {
    if (mode === 'single') {
      for (const t of pass) await writer.upsertOne(t);
    } else {
      for (let i = 0; i < pass.length; i += BATCH_SIZE) await writer.upsertBatch(pass.slice(i, i + BATCH_SIZE));
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const after = writer.requests?.();
  return {
    upserts: (2 * count) / seconds,
    requests: before === undefined || after === undefined ? null : (after.total - before.total) / seconds,
    rateLimited: before === undefined || after === undefined ? 0 : after.rateLimited - before.rateLimited,
  };
}

const DEFAULT_ROWS: BenchRows = { single: SINGLE, batched: BATCHED, warmUp: 20 };

async function round(target: BenchTarget, n: number): Promise<Record<Mode, Sample>> {
  const rows = target.rows ?? DEFAULT_ROWS;
  const writer = await target.open();
  try {
    // Warm-up: connections, prepared statements, page cache.
    for (const t of tasks(`w${n}-`, rows.warmUp, 0)) await writer.upsertOne(t);
    await writer.upsertBatch(tasks(`wb${n}-`, target.rows === undefined ? BATCH_SIZE : rows.warmUp, 0));
    const single = await measure(writer, 'single', `s${n}-`, rows.single);
    const batched = await measure(writer, 'batched', `b${n}-`, rows.batched);
    return { single, batched };
  } finally {
    await writer.close();
  }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function main(): Promise<void> {
  const runnable: BenchTarget[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const target of TARGETS) {
    const reason = await target.unavailable();
    if (reason === null) runnable.push(target);
    else skipped.push({ name: target.name, reason });
  }

  // Rounds interleave the targets, so a noisy moment on a shared machine hits all of them alike.
  const samples = new Map<string, Record<Mode, Sample[]>>(runnable.map((t) => [t.name, { single: [], batched: [] }]));
  for (let n = 0; n < ROUNDS; n++) {
    for (const target of runnable) {
      const result = await round(target, n);
      for (const mode of MODES) samples.get(target.name)![mode].push(result[mode]);
    }
  }

  const upserts = (name: string, mode: Mode) => median(samples.get(name)![mode].map((s) => s.upserts));
  const results = runnable.map((t) => ({ target: t.name, single: upserts(t.name, 'single'), batched: upserts(t.name, 'batched') }));
  const budgets = runnable
    .filter((t) => t.budget !== undefined)
    .map((t) => {
      const budget = t.budget!;
      const of = (mode: Mode) => {
        const all = samples.get(t.name)![mode];
        const requestsPerSecond = median(all.map((s) => s.requests ?? 0));
        return { requestsPerSecond, share: requestsPerSecond / budget.requestsPerSecond, recordsPerSecond: median(all.map((s) => s.upserts)), rateLimited: all.reduce((n, s) => n + s.rateLimited, 0) };
      };
      const single = of('single');
      const batched = of('batched');
      const met = Math.min(single.share, batched.share) >= budget.targetShare && single.rateLimited + batched.rateLimited === 0;
      return { target: t.name, rows: t.rows, budgetRequestsPerSecond: budget.requestsPerSecond, targetShare: budget.targetShare, single, batched, met };
    });
  const byName = new Map(results.map((r) => [r.target, r]));
  const ratios = Object.entries(BASELINES)
    .filter(([name, baseline]) => byName.has(name) && byName.has(baseline))
    .map(([name, baseline]) => {
      const r = byName.get(name)!;
      const b = byName.get(baseline)!;
      const batched = r.batched / b.batched;
      return { target: name, baseline, single: r.single / b.single, batched, targetRatio: TARGET_RATIO, met: batched >= TARGET_RATIO };
    });

  if (args.json) {
    console.log(JSON.stringify({ rows: { single: SINGLE, batched: BATCHED }, batchSize: BATCH_SIZE, rounds: ROUNDS, results, ratios, budgets, skipped }, null, 2));
  } else {
    const fmt = (x: number) => Math.round(x).toLocaleString('en-US').padStart(14);
    console.log(`Database upserts/s (tasks; insert + update of each; median of ${ROUNDS} rounds; ${SINGLE} one at a time, ${BATCHED} batched)`);
    console.log(`${'target'.padEnd(18)}${MODE_LABEL.single.padStart(14)}${MODE_LABEL.batched.padStart(14)}`);
    for (const r of results) console.log(`${r.target.padEnd(18)}${fmt(r.single)}${fmt(r.batched)}`);
    for (const s of skipped) console.log(`${s.name.padEnd(18)}skipped: ${s.reason}`);
    if (ratios.length > 0) console.log('\nRatios (same rows, same table, same run):');
    for (const r of ratios) {
      const verdict = r.met ? 'met' : 'NOT MET';
      console.log(`${r.target} / ${r.baseline}: one at a time ${r.single.toFixed(2)}x, ${MODE_LABEL.batched} ${r.batched.toFixed(2)}x (target >= ${r.targetRatio}x: ${verdict})`);
    }
    if (budgets.length > 0) console.log('\nRequest budgets (vendor limit; rows per target: its own, see bench/db/backends.ts):');
    for (const b of budgets) {
      const line = (mode: Mode) => {
        const m = b[mode];
        return `${MODE_LABEL[mode]} ${m.requestsPerSecond.toFixed(2)} requests/s = ${(100 * m.share).toFixed(1)}% (${Math.round(m.recordsPerSecond)} records/s)`;
      };
      const rateLimited = b.single.rateLimited + b.batched.rateLimited;
      console.log(`${b.target}: ${line('single')}; ${line('batched')}; of ${b.budgetRequestsPerSecond} requests/s; 429s: ${rateLimited} (target >= ${100 * b.targetShare}% and no 429: ${b.met ? 'met' : 'NOT MET'})`);
    }
  }
  if (args.check && (ratios.some((r) => !r.met) || budgets.some((b) => !b.met))) process.exitCode = 1;
}

await main();
