/**
 * The crash harness: a child process (harness-child.ts: the whole connector, SQLite + file queue)
 * receives a steady stream of signed Teamwork deliveries over several connections while it is
 * SIGKILLed again and again, and restarted on the same data directory. The kills land:
 * - at named moments inside the file queue (the child kills itself there): after a batch is written
 *   and before its fsync (and before any 200), after the fsync and before the 200, at each step of a
 *   compaction (the threshold is 16 KiB, so it compacts every few dozen events), at each step of the
 *   offset.json checkpoint; and
 * - at random times chosen by this process.
 * At the end a last run drains the queue and is stopped with SIGTERM (exit 0). Then:
 * - every acknowledged delivery is in SQLite: each task holds the newest acknowledged version or a
 *   newer one that was stored (versions of one task have increasing `dateUpdated`, so an older
 *   version overwriting a newer one would show);
 * - no row is duplicated; dlq.jsonl is empty; the queue is drained (read back with the real queue).
 *
 * CRASH_KILLS sets the number of kills (default 5, the CI form, well under a minute; `npm run
 * test:crash` runs 50). CRASH_SEED replays a run: the seed is printed with the tally.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { FileQueue, type CrashPoint } from '../../src/queue/file-queue.ts';
import { postTeamwork, signTeamwork, teamworkTaskPayload } from '../helpers/deliveries.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'harness-child.ts');
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const KILLS = Math.max(1, Math.floor(Number(process.env.CRASH_KILLS ?? 5)));
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const TOKEN = 'storm-token';
/** Concurrent delivery streams. */
const CONNECTIONS = 4;
/**
 * Pause between one stream's deliveries, ms. A steady stream, not a flood: flat out, four streams
 * saturate the child's event loop, its worker steps back ("deliveries first", IngestPressure), hardly
 * anything is acknowledged, and compaction (which needs done records) is never reached to be crashed.
 */
const PACE_MS = 2;
/** Distinct task ids; each is updated many times over the run. */
const TASKS = 30;
const BASE_TIME = Date.UTC(2026, 10, 1);

/** How one run ends: at the Nth time a crash point is reached, or (always, as a fallback) after `timerMs`. */
interface Plan {
  point: CrashPoint | null;
  after: number;
  timerMs: number;
}

/** The runs cycle through these; the CI form (5 kills) covers an fsync, a compaction and a random moment. */
const PLANS: Array<(rand: () => number) => Plan> = [
  (r) => ({ point: 'append:written', after: 1 + Math.floor(r() * 300), timerMs: 6_000 }),
  (r) => ({ point: 'compact:synced', after: 1 + Math.floor(r() * 3), timerMs: 6_000 }),
  (r) => ({ point: null, after: 0, timerMs: 200 + Math.floor(r() * 1_500) }),
  (r) => ({ point: 'append:synced', after: 1 + Math.floor(r() * 60), timerMs: 6_000 }),
  (r) => ({ point: 'compact:renamed', after: 1 + Math.floor(r() * 3), timerMs: 6_000 }),
  (r) => ({ point: 'compact:copied', after: 1 + Math.floor(r() * 3), timerMs: 6_000 }),
  (r) => ({ point: 'checkpoint:tmp-synced', after: 1 + Math.floor(r() * 3), timerMs: 6_000 }),
  (r) => ({ point: null, after: 0, timerMs: 50 + Math.floor(r() * 800) }),
  (r) => ({ point: 'compact:dir-synced', after: 1 + Math.floor(r() * 3), timerMs: 6_000 }),
  (r) => ({ point: 'checkpoint:renamed', after: 1 + Math.floor(r() * 3), timerMs: 6_000 }),
];

/** mulberry32: a small seeded generator, so that a failing run can be replayed with CRASH_SEED. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Child {
  /** The URL once READY, or null if the process died first. */
  ready: Promise<string | null>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  kill(signal: NodeJS.Signals): void;
}

const children: Child[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await c.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function spawnChild(dir: string, plan: Plan | null): Child {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HARNESS_DIR: dir, HARNESS_TOKEN: TOKEN };
  if (plan?.point) {
    env.HARNESS_CRASH_POINT = plan.point;
    env.HARNESS_CRASH_AFTER = String(plan.after);
  }
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CHILD], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let onReady: (url: string | null) => void = () => {};
  const ready = new Promise<string | null>((resolve) => (onReady = resolve));
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    const match = /READY (http:\/\/\S+)/.exec(output);
    if (match) onReady(match[1] as string);
  });
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => {
    onReady(null);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  const handle: Child = { ready, exited, output: () => output, kill: (signal) => child.kill(signal) };
  children.push(handle);
  return handle;
}

/** Acknowledged versions per task id. */
type Acked = Map<number, number[]>;

let nextVersion = 1;
const titleOf = (id: number, version: number) => `Task ${id} v${version}`;
const updatedAtOf = (version: number) => new Date(BASE_TIME + version * 1000).toISOString();

/** Sends deliveries one after another until `over()`; records each 200. Other 4xx/5xx are collected. */
async function stream(url: string, acked: Acked, unexpected: string[], over: () => boolean): Promise<void> {
  while (!over()) {
    const version = nextVersion++;
    const id = 1 + (version % TASKS);
    const body = JSON.stringify(teamworkTaskPayload(id, { name: titleOf(id, version), dateUpdated: updatedAtOf(version), description: `version ${version} `.repeat(20) }));
    try {
      const res = await postTeamwork(url, body, { 'x-projects-signature': signTeamwork(TOKEN, body), 'x-projects-event': 'TASK.UPDATED' });
      const text = await res.text();
      if (res.status === 200) {
        const list = acked.get(id) ?? [];
        list.push(version);
        acked.set(id, list);
      } else if (res.status !== 503) {
        unexpected.push(`${res.status} ${text}`);
      }
    } catch {
      // The kill cut the request off: no answer, no promise made.
      if (over()) return;
    }
    await new Promise((resolve) => setTimeout(resolve, PACE_MS));
  }
}

async function health(url: string): Promise<{ queue: { size: number; deadLettered: number } }> {
  const res = await fetch(`${url}/health`);
  return (await res.json()) as { queue: { size: number; deadLettered: number } };
}

describe('SIGKILL storm', () => {
  it(
    `keeps every acknowledged delivery, exactly once and newest version, through ${KILLS} SIGKILLs (at crash points and random times)`,
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'conn-storm-'));
      dirs.push(dir);
      const rand = seeded(SEED);
      const acked: Acked = new Map();
      const unexpected: string[] = [];
      const tally = new Map<string, number>();
      const note = `seed ${SEED} (replay with CRASH_SEED=${SEED})`;

      for (let run = 0; run < KILLS; run++) {
        const plan = (PLANS[run % PLANS.length] as (r: () => number) => Plan)(rand);
        const child = spawnChild(dir, plan);
        let timerFired = false;
        let over = false;
        const timer = setTimeout(() => {
          timerFired = true;
          child.kill('SIGKILL');
        }, plan.timerMs);
        void child.exited.then(() => (over = true));
        const url = await child.ready;
        const senders = url === null ? [] : Array.from({ length: CONNECTIONS }, () => stream(url, acked, unexpected, () => over));
        const { code, signal } = await child.exited;
        clearTimeout(timer);
        await Promise.all(senders);
        children.splice(children.indexOf(child), 1);
        const crashed = /CRASH (\S+)/.exec(child.output())?.[1];
        if (signal !== 'SIGKILL' || (crashed === undefined && !timerFired)) {
          throw new Error(`run ${run} (${JSON.stringify(plan)}) ended by itself (code ${code}, signal ${signal}); ${note}\n${child.output()}`);
        }
        const reason = crashed ?? 'random time';
        tally.set(reason, (tally.get(reason) ?? 0) + 1);
      }

      // The last run: no crash point; drain, then a graceful stop.
      const final = spawnChild(dir, null);
      const url = await final.ready;
      if (url === null) throw new Error(`the final run did not start; ${note}\n${final.output()}`);
      const deadline = Date.now() + 30_000;
      let last = await health(url);
      while (last.queue.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        last = await health(url);
      }
      expect(last.queue, note).toMatchObject({ size: 0, deadLettered: 0 });
      final.kill('SIGTERM');
      expect(await final.exited, `${note}\n${final.output()}`).toEqual({ code: 0, signal: null });
      children.splice(children.indexOf(final), 1);

      const summary = [...tally].map(([k, v]) => `${k}: ${v}`).join(', ');
      const ackCount = [...acked.values()].reduce((n, l) => n + l.length, 0);
      console.log(`SIGKILL storm: ${KILLS} kills (${summary}); ${ackCount} deliveries acknowledged, ${nextVersion - 1} sent; ${note}`);
      expect(unexpected, note).toEqual([]);
      expect([...tally.values()].reduce((a, b) => a + b, 0)).toBe(KILLS);
      if (KILLS >= 5) {
        expect([...tally.keys()].some((k) => k.startsWith('compact:')), `a kill during compaction (${summary}); ${note}`).toBe(true);
        expect([...tally.keys()].some((k) => k.startsWith('append:')), `a kill around an fsync (${summary}); ${note}`).toBe(true);
      }
      expect(ackCount, 'deliveries were acknowledged').toBeGreaterThan(KILLS);

      // Every acknowledged delivery is stored, as its newest version; no row twice.
      const db = new BetterSqlite3(path.join(dir, 'data', 'connector.db'), { readonly: true, fileMustExist: true });
      let rows: Array<{ id: string; title: string; updated_at: string }>;
      let duplicates: unknown[];
      try {
        rows = db.prepare('SELECT id, title, updated_at FROM tasks').all() as typeof rows;
        duplicates = db.prepare('SELECT id, count(*) AS n FROM tasks GROUP BY id HAVING n > 1').all();
      } finally {
        db.close();
      }
      expect(duplicates).toEqual([]);
      const byId = new Map(rows.map((r) => [Number(r.id), r]));
      const wrong: string[] = [];
      for (const [id, versions] of acked) {
        const newestAcked = Math.max(...versions);
        const row = byId.get(id);
        const stored = Number(/ v(\d+)$/.exec(row?.title ?? '')?.[1] ?? -1);
        if (row === undefined) wrong.push(`task ${id}: missing (acknowledged v${newestAcked})`);
        else if (stored < newestAcked) wrong.push(`task ${id}: holds v${stored}, older than acknowledged v${newestAcked}`);
        else if (new Date(row.updated_at).toISOString() !== updatedAtOf(stored)) wrong.push(`task ${id}: title v${stored} with updated_at ${row.updated_at}`);
      }
      expect(wrong, note).toEqual([]);
      for (const id of byId.keys()) expect(id >= 1 && id <= TASKS, `unexpected task id ${id}`).toBe(true);

      // The queue, read back with the real queue: drained, nothing dead-lettered.
      const dlq = path.join(dir, 'data', 'queue', 'dlq.jsonl');
      expect(existsSync(dlq) ? readFileSync(dlq, 'utf8') : '').toBe('');
      const queue = await FileQueue.open({ dir: path.join(dir, 'data', 'queue'), log: createLogger({ level: 'silent', console: false }) });
      try {
        expect(await queue.stats()).toEqual({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0, oldestPendingAgeMs: null });
      } finally {
        await queue.close();
      }
    },
    60_000 + KILLS * 8_000,
  );
});
