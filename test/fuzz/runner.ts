/**
 * Runs fuzzed deliveries through a World and judges them against the suite's properties.
 *
 * One pass (`collectPass`) sends every case of the run, batch by batch: the answers are judged as they
 * come; after each batch the worker is drained (with a bound), every event of the batch is judged by
 * what it became, and a normal signed delivery of each vendor must then become its row. Nothing
 * throws during the pass: each property's failures are collected with the index of the fast-check
 * run that produced them, so that a failing property can afterwards be replayed from that run alone
 * (`shrinkFailure`: same seed, fast-check `path`) on a fresh World and shrunk to a minimal case.
 *
 * Properties (ids used in the report):
 * - `no-5xx`: no answer is a 5xx (503 is for our own storage failing, which the fuzz never provokes);
 * - `unsigned-refused`: with secrets set, a delivery not signed correctly is refused and enqueues nothing;
 * - `answer-accounts`: a refusal enqueues nothing; a 200 says how many events it enqueued, and a 200
 *   without events carries a note;
 * - `settles`: every event of a 200 is done (acked or dead-lettered) within a bound: nothing stalls;
 * - `row-or-dead-letter`: every settled event produced its row (keyed by the entity: the task's id,
 *   the message's id) or a dead letter whose error names its cause: a documented code other than
 *   CONN_ERR_INTERNAL (a bug) and CONN_ERR_DB_REJECTED (a healthy database refusing a record the
 *   source should have refused), with a message that is not a bare JavaScript error text;
 * - `sentinel`: after the batch, a normal signed delivery of each vendor becomes its row within a bound.
 */
import fc from 'fast-check';
import { ERROR_CODES } from '../../src/errors.ts';
import type { QueueEvent } from '../../src/model.ts';
import { deliveryCase, describeCase, render, sentinelDeliveries, signedCorrectly, type Case, type Rendered } from './deliveries.ts';
import { startWorld, type World } from './world.ts';

export type PropertyId = 'no-5xx' | 'unsigned-refused' | 'answer-accounts' | 'settles' | 'row-or-dead-letter' | 'sentinel';

export const PROPERTIES: Record<PropertyId, string> = {
  'no-5xx': 'no answer is a 5xx',
  'unsigned-refused': 'with secrets set, a delivery not signed correctly is refused and enqueues nothing',
  'answer-accounts': 'a refusal enqueues nothing; a 200 says how many events it enqueued, and one without events carries a note',
  settles: 'every event of a 200 is done (row or dead letter) within a bound: the worker never stalls',
  'row-or-dead-letter': 'every settled event ends as its row, or as a dead letter whose error names its cause (not CONN_ERR_INTERNAL or CONN_ERR_DB_REJECTED, not a bare JavaScript error text)',
  sentinel: 'after the batch, a normal signed delivery of each vendor is processed into its row',
};

/** A failure's message reduced to its kind (ids, numbers and vendor names blanked), for grouping. */
export function kindOf(failure: Failure): string {
  return failure.message
    .split(' [')[0]!
    .replace(/\{"error":"([A-Z_]+)".*$/, '$1')
    .replace(/event \S+ (task|conversation):\S+/g, 'event <type> $1:<id>')
    .replace(/(tasks|emails) \S+/g, '$1 <id>')
    .replace(/\(emails <id> not stored within \d+ ms/g, '')
    .replace(/\(log: .*$/, '')
    .replace(/\d+/g, 'N')
    .slice(0, 160);
}

export interface Failure {
  property: PropertyId;
  /** fast-check run indexes of the cases that may have caused it (one for per-case properties). */
  runs: number[];
  message: string;
}

interface Sent {
  run: number;
  c: Case;
  status: number;
  answer: Record<string, unknown> | null;
  events: QueueEvent[];
}

/** How long a batch may take to drain: generous for a loaded 2-core machine, short of "forever". */
function settleBoundMs(events: number): number {
  return 3_000 + 30 * events;
}
const SENTINEL_BOUND_MS = 3_000;
/** Deliveries in flight at once during a pass. */
const CONCURRENCY = 8;

async function send(world: World, r: Rendered, via: 'inject' | 'http'): Promise<{ status: number; text: string }> {
  if (via === 'http' && r.body.length <= world.config.WEBHOOK_MAX_BODY_BYTES) {
    const res = await fetch(`${world.url}/webhooks/${r.endpoint}`, { method: 'POST', headers: r.headers, body: r.body });
    return { status: res.status, text: await res.text() };
  }
  const res = await world.app.inject({ method: 'POST', url: `/webhooks/${r.endpoint}`, headers: r.headers, payload: r.body });
  return { status: res.statusCode, text: res.body };
}

/** Sends one case and judges the answer. */
async function sendCase(world: World, run: number, c: Case, failures: Failure[]): Promise<Sent> {
  const rendered = render(c);
  // A delivery over a real socket is sent alone (the caller sees to it): its events are the ones
  // enqueued meanwhile. One sent with inject() is traced through the async context it runs in.
  const before = world.enqueued.length;
  const tracked: QueueEvent[] = [];
  const { status, text } = await world.track(tracked, () => send(world, rendered, c.via));
  const events = c.via === 'http' ? world.enqueued.slice(before) : tracked;
  let answer: Record<string, unknown> | null;
  try {
    answer = JSON.parse(text) as Record<string, unknown>;
  } catch {
    answer = null;
  }
  const fail = (property: PropertyId, message: string) => failures.push({ property, runs: [run], message: `${c.base.endpoint}: ${message} [${describeCase(c)}]` });
  if (status >= 500) fail('no-5xx', `answered ${status} ${text.slice(0, 200)}`);
  if (world.secrets && !signedCorrectly(c) && (status === 200 || events.length > 0)) fail('unsigned-refused', `not signed correctly, answered ${status} and enqueued ${events.length} event(s)`);
  if (status !== 200 && events.length > 0) fail('answer-accounts', `answered ${status} but enqueued ${events.length} event(s)`);
  if (status === 200) {
    if (answer === null || answer.events !== events.length) fail('answer-accounts', `answered 200 ${text.slice(0, 200)} but enqueued ${events.length} event(s)`);
    else if (events.length === 0 && (typeof answer.note !== 'string' || answer.note.trim() === '')) fail('answer-accounts', `answered 200 without events and without a note: ${text.slice(0, 200)}`);
  }
  return { run, c, status, answer, events };
}

/** Waits until nothing is pending, in flight or delayed; false after the bound or once a lane spins on one event. */
async function drain(world: World, boundMs: number): Promise<boolean> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const s = await world.stats();
    if (s.pending === 0 && s.inFlight === 0 && s.delayed === 0) return true;
    // A queue operation failing again and again (retry or dead-letter of an event that cannot be
    // written) is a lane stuck for good: no need to wait out the bound.
    if (Date.now() > deadline || world.queueOpRetries > 100) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Codes that do not name a delivery's cause: an internal error is a bug, and a healthy database that
 * refuses a record was handed one the source should have refused, naming the field.
 */
const UNNAMED_CAUSE_CODES: ReadonlySet<string> = new Set(['CONN_ERR_INTERNAL', 'CONN_ERR_DB_REJECTED']);
/** JavaScript's own error texts, which name no field. */
const ENGINE_ERROR = /Invalid time value|Maximum call stack size exceeded|Cannot read propert|is not a function|is not iterable|Invalid array length/;

function entityId(event: QueueEvent): string {
  return (event.entityKey ?? '').replace(/^[a-z]+:/, '');
}

/** Judges what each event of the batch became. */
function judgeOutcomes(world: World, batch: readonly Sent[], drained: boolean, failures: Failure[]): void {
  if (!drained && ![...world.stuckEvents].some((id) => batch.some((s) => s.events.some((e) => e.id === id)))) {
    const waiting = batch.filter((s) => s.events.some((e) => !world.outcomes.has(e.id)));
    const last = world.recentLog.filter((l) => l.level === 'error' || l.level === 'warn').slice(-3).map((l) => `${String(l.msg)}${l.err !== undefined ? `: ${String(l.err).slice(0, 120)}` : ''}`);
    failures.push({
      property: 'settles',
      runs: waiting.map((s) => s.run),
      message: `${waiting.length} deliveries of the batch not done after ${settleBoundMs(batch.length)} ms (log: ${last.join(' | ')}) [first: ${waiting[0] === undefined ? '-' : describeCase(waiting[0].c)}]`,
    });
  }
  for (const sent of batch) {
    for (const event of sent.events) {
      const fail = (property: PropertyId, message: string) => failures.push({ property, runs: [sent.run], message: `${sent.c.base.endpoint}: ${message} [${describeCase(sent.c)}]` });
      const outcome = world.outcomes.get(event.id);
      if (outcome === undefined) {
        if (!drained) {
          // The lane is stuck on the events whose queue operations keep failing; the other events of the
          // batch wait behind them (judged by the batch-level failure below, not blamed one by one).
          if (world.stuckEvents.has(event.id)) {
            const last = world.recentLog.filter((l) => l.level === 'error').slice(-1).map((l) => `${String(l.msg)}${l.err !== undefined ? `: ${String(l.err).slice(0, 120)}` : ''}`);
            fail('settles', `the worker is stuck on event ${event.type} ${event.entityKey}: ${world.queueOpRetries} failed queue operations (${last.join('')})`);
          }
        } else {
          fail('row-or-dead-letter', `event ${event.type} ${event.entityKey} left the queue with neither success nor dead letter reported`);
        }
        continue;
      }
      if (outcome.kind === 'dead-lettered') {
        const { code, message } = outcome.error;
        if (!(code in ERROR_CODES) || UNNAMED_CAUSE_CODES.has(code) || message.trim() === '' || ENGINE_ERROR.test(message)) {
          fail('row-or-dead-letter', `event ${event.type} ${event.entityKey} dead-lettered without naming its cause: ${code}: ${message.slice(0, 160)}`);
        }
        continue;
      }
      const changes = outcome.changes;
      const records = changes === undefined ? outcome.records : changes.tasks.length + changes.emails.length + changes.deletedTasks.length + changes.deletedEmails.length;
      if (changes === undefined || records === 0) {
        fail('row-or-dead-letter', `event ${event.type} ${event.entityKey} succeeded with no changes: no row, no dead letter`);
        continue;
      }
      if (event.source === 'teamwork') {
        const id = entityId(event);
        const named = [...changes.tasks.map((t) => t.id), ...changes.deletedTasks.map((t) => t.id)];
        if (!named.includes(id)) fail('row-or-dead-letter', `event for task ${id} wrote task id(s) ${JSON.stringify(named)}, not the entity's`);
        if (world.task(id) === undefined) fail('row-or-dead-letter', `event for task ${id} succeeded but tasks has no row ${id}`);
      } else {
        for (const id of [...changes.emails.map((e) => e.id), ...changes.deletedEmails.map((e) => e.id)]) {
          if (world.email(id) === undefined) fail('row-or-dead-letter', `event ${event.entityKey} succeeded but emails has no row ${id}`);
        }
      }
    }
  }
}

/** Sends a normal signed delivery of each vendor; each must become its row within the bound. */
async function judgeSentinels(world: World, runs: number[], failures: Failure[]): Promise<void> {
  const problems: Failure[] = [];
  await judgeEachSentinel(world, runs, problems);
  if (problems.length > 0) failures.push({ property: 'sentinel', runs, message: problems.map((p) => p.message).join('; ') });
}

async function judgeEachSentinel(world: World, runs: number[], failures: Failure[]): Promise<void> {
  await Promise.all(sentinelDeliveries().map(async ({ rendered, row }) => {
    const { status, text } = await send(world, rendered, 'inject');
    if (status !== 200) {
      failures.push({ property: 'sentinel', runs, message: `normal ${rendered.endpoint} delivery sent after the batch answered ${status} ${text.slice(0, 200)}` });
      return;
    }
    const deadline = Date.now() + SENTINEL_BOUND_MS;
    for (;;) {
      const stored = row.table === 'tasks' ? world.task(row.id) : world.email(row.id);
      const title = row.table === 'tasks' ? stored?.title : stored?.subject;
      if (title === row.title) break;
      if (Date.now() > deadline) {
        failures.push({ property: 'sentinel', runs, message: `normal ${rendered.endpoint} delivery sent after the batch (${row.table} ${row.id}) not stored within ${SENTINEL_BOUND_MS} ms` });
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }));
}

/** Drains after a batch and judges it; returns whether the World is still fit for use. */
async function finishBatch(world: World, batch: readonly Sent[], failures: Failure[], sentinels = true): Promise<boolean> {
  const drained = await drain(world, settleBoundMs(batch.length));
  const before = failures.length;
  judgeOutcomes(world, batch, drained, failures);
  if (sentinels) {
    const unsettled = failures.slice(before).filter((f) => f.property === 'settles').flatMap((f) => f.runs);
    const runs = [...new Set([...unsettled, ...batch.map((s) => s.run)])];
    await judgeSentinels(world, runs, failures);
  }
  world.forget();
  return drained && !failures.slice(before).some((f) => f.property === 'sentinel');
}

const ANSWER_PROPERTIES: ReadonlySet<PropertyId> = new Set(['no-5xx', 'unsigned-refused', 'answer-accounts']);

export interface PassOptions {
  secrets: boolean;
  seed: number;
  /** Cases (fast-check runs). */
  runs: number;
  /** Cases sent before each drain. */
  batch: number;
  /** Called after the first batch and at the end (memory measurements). */
  onCheckpoint?: (when: 'warm' | 'end') => void;
}

export interface PassResult {
  failures: Failure[];
  cases: number;
  batches: number;
  /** Worlds thrown away because a batch left one stuck. */
  rebuilds: number;
  statuses: Record<string, number>;
  events: number;
  ms: number;
}

export async function collectPass(options: PassOptions): Promise<PassResult> {
  const started = Date.now();
  const failures: Failure[] = [];
  const statuses: Record<string, number> = {};
  let world = await startWorld({ secrets: options.secrets });
  let batch: Sent[] = [];
  let batches = 0;
  let rebuilds = 0;
  let events = 0;
  let run = 0;
  const inFlight = new Set<Promise<void>>();
  const flush = async () => {
    if (batch.length === 0) return;
    const fit = await finishBatch(world, batch, failures);
    batch = [];
    batches++;
    if (!fit) {
      rebuilds++;
      await world.close();
      world = await startWorld({ secrets: options.secrets });
    }
    if (batches === 1) options.onCheckpoint?.('warm');
  };
  try {
    await fc.check(
      fc.asyncProperty(deliveryCase, async (c) => {
        // Up to CONCURRENCY deliveries in flight at once, as vendors send them; the batch is judged
        // once all of its answers are in.
        if (c.via === 'http') await Promise.all(inFlight);
        const sending = sendCase(world, run++, c, failures).then((sent) => {
          statuses[sent.status] = (statuses[sent.status] ?? 0) + 1;
          events += sent.events.length;
          batch.push(sent);
        });
        inFlight.add(sending);
        void sending.finally(() => inFlight.delete(sending));
        if (inFlight.size >= CONCURRENCY || c.via === 'http') await (c.via === 'http' ? sending : Promise.race(inFlight));
        if (batch.length + inFlight.size >= options.batch) {
          await Promise.all(inFlight);
          await flush();
        }
        return true;
      }),
      { seed: options.seed, numRuns: options.runs },
    );
    await Promise.all(inFlight);
    await flush();
    options.onCheckpoint?.('end');
  } finally {
    await world.close();
  }
  return { failures, cases: run, batches, rebuilds, statuses, events, ms: Date.now() - started };
}

/**
 * Replays the run that failed `property` on a fresh World, one case per evaluation, and lets fast-check
 * shrink it. Returns fast-check's report, or null when no candidate run fails on its own.
 */
export async function shrinkFailure(options: { secrets: boolean; seed: number; runs: number; property: PropertyId; candidates: number[]; timeLimitMs: number }): Promise<string | null> {
  let world = await startWorld({ secrets: options.secrets });
  const evaluate = async (c: Case): Promise<Failure[]> => {
    const failures: Failure[] = [];
    const sent = await sendCase(world, 0, c, failures);
    // Only what the property needs: an answer is judged at once; a drain, or a drain and the normal
    // deliveries after it, only for the properties about them.
    const fit = ANSWER_PROPERTIES.has(options.property) ? true : await finishBatch(world, [sent], failures, options.property === 'sentinel');
    if (ANSWER_PROPERTIES.has(options.property)) world.forget();
    const own = failures.filter((f) => f.property === options.property);
    if (!fit || own.length > 0) {
      await world.close();
      world = await startWorld({ secrets: options.secrets });
    }
    return own;
  };
  const deadline = Date.now() + options.timeLimitMs;
  try {
    for (const candidate of options.candidates) {
      if (Date.now() > deadline) break;
      let lastMessage = '';
      const result = await fc.check(
        fc.asyncProperty(deliveryCase, async (c) => {
          const own = await evaluate(c);
          if (own.length > 0) lastMessage = own.map((f) => f.message).join('\n');
          return own.length === 0;
        }),
        { seed: options.seed, numRuns: options.runs, path: String(candidate), interruptAfterTimeLimit: Math.max(1_000, deadline - Date.now()) },
      );
      if (!result.failed || result.counterexample === null) continue;
      const [c] = result.counterexample as [Case];
      // The message of the shrunk case itself (the last failing evaluation was the shrunk one).
      const own = await evaluate(c);
      const message = own.length > 0 ? own.map((f) => f.message).join('\n') : lastMessage;
      return [
        `Property: ${PROPERTIES[options.property]}`,
        `Shrunk counterexample (FUZZ_SEED=${options.seed}, fast-check path "${result.counterexamplePath ?? ''}"${result.interrupted ? ', shrinking cut short by the time limit' : ''}):`,
        `  ${describeCase(c)}`,
        `What happened: ${message}`,
        `Case as data: ${JSON.stringify(c, (_k, v: unknown) => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…` : v))}`,
      ].join('\n');
    }
    return null;
  } finally {
    await world.close();
  }
}
