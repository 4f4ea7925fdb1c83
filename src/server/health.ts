/**
 * Health that tells the truth: the checks behind `GET /health`, `GET /health/ready` and
 * `GET /health/live`, and their gauge `connector_health_check_ok{check}`.
 *
 * Words:
 * - check: one question with a yes or no (`ok`) and, when no, a `reason` in words naming the setting
 *   that drew the line. A check that cannot be judged now (the queue unreadable, the worker on
 *   standby, a vendor paused) is ok with a `detail` saying why.
 * - facts: what /health has always shown (the queue's counts, and in a worker process the database,
 *   the worker's state and the vendors'), kept as they were; `checks` is added beside them.
 *
 * The checks (every one in every process, except `worker` and `database`, which need a worker):
 * - `queue`: the queue can be read (its counts) and written. The file queue: a small file written,
 *   fsynced and removed in its directory (a full or read-only disk fails it). A shared engine:
 *   it answered (an engine away fails within its own timeout, 3 s).
 * - `queue_age`: the oldest event not yet done is no older than HEALTH_MAX_QUEUE_AGE_SECONDS.
 * - `dead_letters`: the dead-letter store holds no more than HEALTH_MAX_DEAD_LETTERS.
 * - `database`: the worker's database has not been unavailable for longer than
 *   HEALTH_DATABASE_DOWN_SECONDS. Unavailable counts from the first evaluation that saw it so
 *   (evaluations run on every request and on every tick of the alert monitor, 10 s).
 * - `worker`: while events wait (pending) and the worker runs, it has claimed some within
 *   HEALTH_WORKER_STALL_SECONDS (from its claims, `events:claimed`). Not judged while a vendor is
 *   paused or unavailable: the waiting events may be that vendor's, which wait by design (the
 *   queue's age still catches a stall then).
 *
 * `GET /health` answers 503 when any check fails; `GET /health/ready` answers 503 when the queue
 * cannot be written, or, in a worker process, the database is not reachable now (no grace time);
 * `GET /health/live` answers 200 while the process answers. Nothing here is on the data path: a
 * probe that hangs is given up after PROBE_TIMEOUT_MS and answered as failed.
 */
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Gauge, type Registry } from 'prom-client';
import type { Config } from '../config.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Queue, QueueStats } from '../queue/queue.ts';
import { SECOND } from '../retry-policy.ts';

/** The checks, in the order /health lists them. */
export const HEALTH_CHECKS = ['queue', 'queue_age', 'dead_letters', 'database', 'worker'] as const;
export type HealthCheckName = (typeof HEALTH_CHECKS)[number];

/** Longest a probe (queue counts, write, database) may take before it is answered as failed, ms. */
export const PROBE_TIMEOUT_MS = 5 * SECOND;
/** The gauge reuses an evaluation younger than this, ms (a scrape right after a request). */
const GAUGE_REUSE_MS = 2 * SECOND;

export interface HealthThresholds {
  /** HEALTH_WORKER_STALL_SECONDS, in ms. */
  workerStallMs: number;
  /** HEALTH_MAX_QUEUE_AGE_SECONDS, in ms. */
  maxQueueAgeMs: number;
  /** HEALTH_DATABASE_DOWN_SECONDS, in ms. */
  databaseDownMs: number;
  /** HEALTH_MAX_DEAD_LETTERS. */
  maxDeadLetters: number;
}

/** The defaults of the settings (src/config.ts). */
export const DEFAULT_HEALTH_THRESHOLDS: HealthThresholds = { workerStallMs: 300 * SECOND, maxQueueAgeMs: 3600 * SECOND, databaseDownMs: 60 * SECOND, maxDeadLetters: 100 };

/** The thresholds from the settings. */
export function healthThresholds(config: Pick<Config, 'HEALTH_WORKER_STALL_SECONDS' | 'HEALTH_MAX_QUEUE_AGE_SECONDS' | 'HEALTH_DATABASE_DOWN_SECONDS' | 'HEALTH_MAX_DEAD_LETTERS'>): HealthThresholds {
  return {
    workerStallMs: config.HEALTH_WORKER_STALL_SECONDS * SECOND,
    maxQueueAgeMs: config.HEALTH_MAX_QUEUE_AGE_SECONDS * SECOND,
    databaseDownMs: config.HEALTH_DATABASE_DOWN_SECONDS * SECOND,
    maxDeadLetters: config.HEALTH_MAX_DEAD_LETTERS,
  };
}

/**
 * What the health checks need from the worker side of this process (none in a `serve` process).
 * `facts()` is what /health has always shown of it: `{ database: { ok, backend, detail? }, worker:
 * { state, ... }, vendors: { <source>: { state, ... } } }` (src/main.ts, WorkerStart.health()).
 */
export interface WorkerProbe {
  facts(): Promise<Record<string, unknown>>;
}

export interface CheckResult {
  ok: boolean;
  /** Why it fails, in words (only when not ok). */
  reason?: string;
  /** What an ok check could not judge, or is on its way to (only when ok). */
  detail?: string;
}

export interface HealthReport {
  healthy: boolean;
  /** When evaluated (ms since the epoch). */
  at: number;
  /** The body of GET /health: status, the facts, and `checks`. */
  body: Record<string, unknown>;
  checks: Partial<Record<HealthCheckName, CheckResult>>;
  /** The queue's counts, null when it could not be read. */
  stats: QueueStats | null;
}

export interface HealthChecksOptions {
  queue: Queue;
  lifecycle: Lifecycle;
  /** The worker side of this process; absent in a `serve` process (no `worker` or `database` check). */
  worker?: WorkerProbe;
  /** The file queue's directory, where the write probe writes (config.queueDir); unused by other backends. */
  queueDir?: string;
  /** What /health says of the queue engine's durability, when start-up accepted a weak one. */
  queueDurability?: string;
  thresholds?: Partial<HealthThresholds>;
  now?: () => number;
}

/**
 * The checks, evaluated afresh on each call of `evaluate()` (cheap: the queue's counts, a write probe,
 * the worker's facts). Stateful only in what it remembers between evaluations: the worker's last
 * claim (from `events:claimed`), since when the worker runs, and since when the database is down.
 * `close()` stops listening to the lifecycle.
 */
export class HealthChecks {
  readonly thresholds: HealthThresholds;
  private readonly now: () => number;
  private lastClaimAt: number | null = null;
  private runningSince: number | null = null;
  private databaseDownSince: number | null = null;
  private last: HealthReport | null = null;
  private probeCount = 0;
  private readonly off: () => void;

  constructor(private readonly options: HealthChecksOptions) {
    this.thresholds = { ...DEFAULT_HEALTH_THRESHOLDS, ...options.thresholds };
    this.now = options.now ?? Date.now;
    this.off = options.lifecycle.on('events:claimed', () => (this.lastClaimAt = this.now()));
  }

  /** Whether this process has a worker side (and so the `worker` and `database` checks). */
  get hasWorker(): boolean {
    return this.options.worker !== undefined;
  }

  /** The worker side's facts as /health shows them (database, worker, vendors); `{}` without a worker. */
  workerFacts(): Promise<Record<string, unknown>> {
    return this.options.worker?.facts() ?? Promise.resolve({});
  }

  /** The newest evaluation, if any. */
  get latest(): HealthReport | null {
    return this.last;
  }

  async evaluate(): Promise<HealthReport> {
    const { queue } = this.options;
    const durability = this.options.queueDurability === undefined ? {} : { durability: this.options.queueDurability };
    const [stats, written, facts] = await Promise.all([
      settle(queue.stats()),
      settle(this.writeProbe()),
      this.options.worker === undefined ? Promise.resolve(null) : settle(this.options.worker.facts()),
    ]);
    const at = this.now();
    const checks: Partial<Record<HealthCheckName, CheckResult>> = {};

    let queueFacts: Record<string, unknown>;
    if (stats.ok) {
      queueFacts = { size: stats.value.pending + stats.value.delayed + stats.value.inFlight, ...stats.value, ...durability };
    } else {
      queueFacts = { ok: false, backend: queue.backend, detail: stats.error, ...durability };
    }
    const counts = stats.ok ? stats.value : null;
    checks.queue = !stats.ok ? fail(`the queue cannot be read (${queue.backend}): ${stats.error}`) : !written.ok ? fail(`the queue cannot be written (${queue.backend}): ${written.error}`) : { ok: true };
    checks.queue_age = this.queueAge(counts);
    checks.dead_letters = this.deadLetters(counts);

    let workerFacts: Record<string, unknown> = {};
    if (facts !== null) {
      if (facts.ok) {
        workerFacts = facts.value;
      } else {
        workerFacts = { database: { ok: false, detail: `the worker's facts could not be read: ${facts.error}` } };
      }
      checks.database = this.database(workerFacts, at);
      checks.worker = this.worker(workerFacts, counts, at);
    }

    const healthy = Object.values(checks).every((c) => c.ok);
    const body = { status: healthy ? 'ok' : 'unhealthy', queue: queueFacts, ...workerFacts, checks };
    const report: HealthReport = { healthy, at, body, checks, stats: counts };
    this.last = report;
    return report;
  }

  /**
   * Whether this process can take deliveries now: the queue can be written and, in a worker process,
   * the database is reachable (no grace time: a load balancer wants to know now).
   */
  async ready(): Promise<{ ready: boolean; checks: Record<string, CheckResult> }> {
    const [stats, written, facts] = await Promise.all([
      settle(this.options.queue.stats()),
      settle(this.writeProbe()),
      this.options.worker === undefined ? Promise.resolve(null) : settle(this.options.worker.facts()),
    ]);
    const checks: Record<string, CheckResult> = {
      queue: !stats.ok ? fail(`the queue cannot be read: ${stats.error}`) : !written.ok ? fail(`the queue cannot be written: ${written.error}`) : { ok: true },
    };
    if (facts !== null) {
      const database = facts.ok ? asRecord(facts.value.database) : { ok: false, detail: facts.error };
      checks.database = database.ok === false ? fail(`the database is not reachable: ${describe(database)}`) : { ok: true };
    }
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }

  /** `connector_health_check_ok{check}`: 1 or 0 per check of this process, evaluated when scraped. */
  registerMetrics(registry: Registry): void {
    const current = (): Promise<HealthReport> => (this.last !== null && this.now() - this.last.at < GAUGE_REUSE_MS ? Promise.resolve(this.last) : this.evaluate());
    new Gauge({
      name: 'connector_health_check_ok',
      help: 'Whether each health check passes (1) or fails (0), as GET /health judges it (see docs/operations.md).',
      labelNames: ['check'],
      registers: [registry],
      async collect() {
        const fresh = await current();
        this.reset();
        for (const [name, result] of Object.entries(fresh.checks)) this.set({ check: name }, result.ok ? 1 : 0);
      },
    });
  }

  close(): void {
    this.off();
  }

  private queueAge(stats: QueueStats | null): CheckResult {
    if (stats === null) return { ok: true, detail: 'not judged: the queue cannot be read' };
    const age = stats.oldestPendingAgeMs;
    if (age !== null && age > this.thresholds.maxQueueAgeMs) {
      return fail(`the oldest event not yet done is ${seconds(age)} old (HEALTH_MAX_QUEUE_AGE_SECONDS=${this.thresholds.maxQueueAgeMs / SECOND})`);
    }
    return { ok: true };
  }

  private deadLetters(stats: QueueStats | null): CheckResult {
    if (stats === null) return { ok: true, detail: 'not judged: the queue cannot be read' };
    if (stats.deadLettered > this.thresholds.maxDeadLetters) {
      return fail(`${stats.deadLettered} dead letters (HEALTH_MAX_DEAD_LETTERS=${this.thresholds.maxDeadLetters}): replay or discard them (npm run replay-dlq)`);
    }
    return { ok: true };
  }

  private database(facts: Record<string, unknown>, at: number): CheckResult {
    const database = asRecord(facts.database);
    if (database.ok !== false) {
      this.databaseDownSince = null;
      return { ok: true };
    }
    this.databaseDownSince ??= at;
    const down = at - this.databaseDownSince;
    const limit = this.thresholds.databaseDownMs;
    const what = `the database has been unavailable for ${seconds(down)}: ${describe(database)}`;
    if (down >= limit) return fail(`${what} (HEALTH_DATABASE_DOWN_SECONDS=${limit / SECOND})`);
    return { ok: true, detail: `${what}; fails after HEALTH_DATABASE_DOWN_SECONDS=${limit / SECOND}` };
  }

  private worker(facts: Record<string, unknown>, stats: QueueStats | null, at: number): CheckResult {
    const state = asRecord(facts.worker).state;
    if (state !== 'running') {
      this.runningSince = null;
      return { ok: true, detail: `not judged: the worker is ${typeof state === 'string' ? state : 'not running'}` };
    }
    this.runningSince ??= at;
    if (stats === null) return { ok: true, detail: 'not judged: the queue cannot be read' };
    if (stats.pending === 0) return { ok: true };
    const held = Object.entries(asRecord(facts.vendors)).filter(([, v]) => asRecord(v).state !== undefined && asRecord(v).state !== 'ok');
    if (held.length > 0) {
      return { ok: true, detail: `not judged while ${held.map(([name, v]) => `${name} is ${String(asRecord(v).state)}`).join(' and ')}: its events wait by design` };
    }
    const quietSince = Math.max(this.lastClaimAt ?? -Infinity, this.runningSince);
    const quiet = at - quietSince;
    if (quiet > this.thresholds.workerStallMs) {
      const last = this.lastClaimAt === null ? 'has claimed none since it started' : `has claimed none for ${seconds(quiet)}`;
      return fail(`${stats.pending} events wait and the worker ${last} (HEALTH_WORKER_STALL_SECONDS=${this.thresholds.workerStallMs / SECOND})`);
    }
    return { ok: true };
  }

  /** The file queue: a small file written, fsynced and removed in its directory. Other backends: nothing more than `stats()`. */
  private async writeProbe(): Promise<void> {
    const dir = this.options.queueDir;
    if (this.options.queue.backend !== 'file' || dir === undefined) return;
    const file = path.join(dir, `.health-probe-${process.pid}-${++this.probeCount}-${randomBytes(4).toString('hex')}`);
    try {
      const handle = await open(file, 'wx');
      try {
        await handle.write(PROBE_BYTES);
        await handle.datasync();
      } finally {
        await handle.close();
      }
    } finally {
      await rm(file, { force: true }).catch(() => {});
    }
  }
}

/** What the write probe writes: a block, so that a full disk refuses it. */
const PROBE_BYTES = Buffer.alloc(4096, 0x2e);

/**
 * The health routes: `/health/live`, `/health/ready`, `/health`. `/health` and `/health/ready` answer
 * 200 or 503 with JSON; `/health/live` 200 `{ "status": "ok" }`.
 */
export function registerHealthRoutes(app: FastifyInstance, health: HealthChecks): void {
  app.get('/health', async (_request, reply) => {
    const report = await health.evaluate();
    return reply.code(report.healthy ? 200 : 503).send(report.body);
  });
  app.get('/health/ready', async (_request, reply) => {
    const { ready, checks } = await health.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks });
  });
  app.get('/health/live', async () => ({ status: 'ok' }));
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: string };

/** The promise's value or its error in words, within PROBE_TIMEOUT_MS. */
async function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Settled<T>>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: `no answer within ${PROBE_TIMEOUT_MS / SECOND} s` }), PROBE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([promise.then((value): Settled<T> => ({ ok: true, value }), (err: unknown): Settled<T> => ({ ok: false, error: err instanceof Error ? err.message : String(err) })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function fail(reason: string): CheckResult {
  return { ok: false, reason };
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function describe(database: Record<string, unknown>): string {
  return typeof database.detail === 'string' && database.detail !== '' ? database.detail : 'not ok';
}

function seconds(ms: number): string {
  return ms < 10 * SECOND ? `${(ms / SECOND).toFixed(1)} s` : `${Math.round(ms / SECOND)} s`;
}
