/**
 * Replaying dead letters (replay-dlq) around interrupted moves, on the file queue: a worker that died
 * between writing a dead letter to dlq.jsonl and marking its inbox copy `dead`, a replay that died
 * between its two files, and two replays at once. Whoever replays (the worker's own queue, another
 * queue object, or the `replay-dlq` command in another process), each replayed event must exist
 * exactly once afterwards: never both a live original and a replayed copy (issue 14, item 9).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { ErrorRecord } from '../../src/errors.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { FileQueue, type CrashPoint, type FileQueueOptions } from '../../src/queue/file-queue.ts';
import { sealLine } from '../../src/queue/record.ts';
import { runCli } from '../cli/run-cli.ts';

const PERMANENT: ErrorRecord = { code: 'CONN_ERR_EVENT_INVALID', message: 'no such task', retryable: false };

function quietLog(): Logger {
  return createLogger({ level: 'warn', console: false, destination: new Writable({ write: (_c, _e, done) => done() }) });
}

const dirs: string[] = [];
const queues: FileQueue[] = [];
afterEach(async () => {
  for (const q of queues.splice(0)) await q.close().catch(() => {});
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-replay-'));
  dirs.push(dir);
  return dir;
}

async function openQueue(dir: string, options: Partial<FileQueueOptions> = {}): Promise<FileQueue> {
  const q = await FileQueue.open({ dir, log: quietLog(), compactThresholdBytes: Number.MAX_SAFE_INTEGER, ...options });
  queues.push(q);
  return q;
}

/** A queue that throws at `point` the `nth` time it is reached (as if the process died there). */
async function crashingQueue(dir: string, point: CrashPoint, nth = 1): Promise<FileQueue> {
  let reached = 0;
  return openQueue(dir, {
    crashPoint: (p) => {
      if (p === point && ++reached === nth) throw new Error(`simulated crash at ${p}`);
    },
  });
}

function event(n: number): QueueEvent {
  return {
    id: `e${n}`,
    source: 'teamwork',
    type: 'TASK.UPDATED',
    entityKey: `task:${n}`,
    origin: 'webhook',
    receivedAt: new Date(1_800_000_000_000 + n),
    payload: { n },
  };
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** Claims everything claimable now; returns [id, attempt] pairs. */
async function drain(q: FileQueue): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = [];
  for (;;) {
    const got = await q.claim({ limit: 100 });
    if (got.length === 0) return out;
    out.push(...got.map((c): [string, number] => [c.event.id, c.attempt]));
  }
}

/**
 * A worker dead-letters e0..e(n-1); the move of e(crashAt) dies after its dead letter is fsynced in
 * dlq.jsonl and before the inbox says `dead`. The worker's process is gone (its queue is closed).
 */
async function workerDiedMidMove(dir: string, n: number, crashAt: number): Promise<void> {
  const worker = await crashingQueue(dir, 'dead-letter:dlq-synced', crashAt + 1);
  await worker.enqueue(range(0, n).map(event));
  const claimed = await drain(worker);
  expect(claimed).toHaveLength(n);
  for (const k of range(0, crashAt)) await worker.deadLetter(`e${k}`, PERMANENT);
  await expect(worker.deadLetter(`e${crashAt}`, PERMANENT)).rejects.toThrow('simulated crash');
  await worker.close();
}

/**
 * Opens a fresh worker and works the queue dry (claim, ack, until nothing is left): every id in `ids`
 * must be handed out exactly once, as a fresh attempt, and no dead letter may be left.
 */
async function expectEachOnce(dir: string, ids: string[]): Promise<FileQueue> {
  const worker = await openQueue(dir);
  const got = await workDry(worker);
  expect(got.map(([id]) => id).sort()).toEqual([...ids].sort());
  expect(got.every(([, attempt]) => attempt === 1)).toBe(true);
  expect(await worker.listDeadLetters()).toEqual([]);
  expect(await worker.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
  return worker;
}

/** Claims and acks until nothing is left (a second copy of an entity's event waits for the first's ack). */
async function workDry(q: FileQueue): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = [];
  for (;;) {
    const got = await drain(q);
    if (got.length === 0) return out;
    for (const [id] of got) await q.ack(id);
    out.push(...got);
  }
}

describe('replaying dead letters after a worker died mid dead-letter move', () => {
  it('a replay from another queue object (not the worker) finishes the interrupted move first: each event once', async () => {
    const dir = tempDir();
    await workerDiedMidMove(dir, 6, 3); // e0..e2 moved, e3 half-moved, e4 and e5 still claimed when it died
    const admin = await openQueue(dir);
    expect((await admin.listDeadLetters()).map((d) => d.event.id).sort()).toEqual(['e0', 'e1', 'e2', 'e3']);
    expect((await admin.replayDeadLetters({ all: true })).map((d) => d.event.id).sort()).toEqual(['e0', 'e1', 'e2', 'e3']);
    await admin.close();
    // e3 exists once (the replayed copy, attempt 1), not also as its half-moved original.
    await expectEachOnce(dir, ['e0', 'e1', 'e2', 'e3', 'e4', 'e5']);
  });

  it('the replay-dlq command in another process does the same', { timeout: 60_000 }, async () => {
    const cwd = tempDir();
    const dir = path.join(cwd, 'data', 'queue');
    mkdirSync(dir, { recursive: true });
    await workerDiedMidMove(dir, 4, 1);
    const replayed = await runCli(['replay-dlq', '--all'], { cwd, env: { BACKFILL_ON_START: 'false' } });
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(replayed.stdout).toContain('replayed 2 dead letter(s) to the queue');
    await expectEachOnce(dir, ['e0', 'e1', 'e2', 'e3']);
  });

  it('a replay by the restarted worker itself finds the move already finished: each event once', async () => {
    const dir = tempDir();
    await workerDiedMidMove(dir, 4, 1);
    const worker = await openQueue(dir);
    expect((await workDry(worker)).map(([id]) => id).sort()).toEqual(['e2', 'e3']);
    expect((await worker.replayDeadLetters({ all: true })).map((d) => d.event.id).sort()).toEqual(['e0', 'e1']);
    expect((await workDry(worker)).map(([id, a]) => `${id}:${a}`).sort()).toEqual(['e0:1', 'e1:1']);
  });

  it('a narrower replay that does not take the half-moved one leaves it dead (the next worker finishes its move)', async () => {
    const dir = tempDir();
    await workerDiedMidMove(dir, 4, 1);
    const admin = await openQueue(dir);
    expect((await admin.replayDeadLetters({ ids: ['e0'] })).map((d) => d.event.id)).toEqual(['e0']);
    await admin.close();
    const worker = await openQueue(dir);
    expect((await workDry(worker)).map(([id]) => id).sort()).toEqual(['e0', 'e2', 'e3']);
    expect((await worker.listDeadLetters()).map((d) => d.event.id)).toEqual(['e1']);
  });

  it('300 events dead-lettered with a crash mid-move, then replayed from another process: 300 dead letters, 300 replayed, each once', async () => {
    const dir = tempDir();
    const n = 300;
    await workerDiedMidMove(dir, n, n - 1);
    const admin = await openQueue(dir);
    expect((await admin.stats()).deadLettered).toBe(n);
    expect(await admin.replayDeadLetters({ all: true })).toHaveLength(n);
    await admin.close();
    // The replayed events fail again and go back to the dead letters: once each.
    const worker = await openQueue(dir);
    const handled: string[] = [];
    for (;;) {
      const got = await drain(worker);
      if (got.length === 0) break;
      for (const [id] of got) await worker.deadLetter(id, PERMANENT);
      handled.push(...got.map(([id]) => id));
    }
    expect(handled).toHaveLength(n);
    expect(await worker.stats()).toMatchObject({ pending: 0, inFlight: 0, deadLettered: n });
    expect(new Set((await worker.listDeadLetters()).map((d) => d.event.id)).size).toBe(n);
  });
});

describe('dead-letter moves after an interrupted replay, and replays at once', () => {
  it('a replay that died between the inbox and dlq.jsonl, then the replayed event dead-lettered again (and that move interrupted too): one dead letter', async () => {
    const dir = tempDir();
    const worker = await openQueue(dir);
    await worker.enqueue([event(1), event(2)]);
    for (const [id] of await drain(worker)) await worker.deadLetter(id, PERMANENT);
    await worker.close();
    // The replay dies with the replayed copies fsynced in the inbox and dlq.jsonl not yet rewritten.
    const admin = await crashingQueue(dir, 'replay:inbox-synced');
    await expect(admin.replayDeadLetters({ all: true })).rejects.toThrow('simulated crash');
    await admin.close();
    // The worker takes the replayed copies; e1 fails again, and that move dies half-way too.
    const again = await crashingQueue(dir, 'dead-letter:dlq-synced');
    expect((await drain(again)).map(([id, a]) => `${id}:${a}`).sort()).toEqual(['e1:1', 'e2:1']);
    await expect(again.deadLetter('e1', PERMANENT)).rejects.toThrow('simulated crash');
    await again.close();
    // Another replay from another object: e1 once, e2 (still pending from the first replay) once.
    const admin2 = await openQueue(dir);
    expect((await admin2.listDeadLetters()).map((d) => d.event.id)).toEqual(['e1']);
    expect((await admin2.replayDeadLetters({ all: true })).map((d) => d.event.id)).toEqual(['e1']);
    await admin2.close();
    await expectEachOnce(dir, ['e1', 'e2']);
    expect(readFileSync(path.join(dir, 'dlq.jsonl'), 'utf8')).toBe('');
  });

  it('two replays at once from two queue objects move each dead letter once', async () => {
    const dir = tempDir();
    await workerDiedMidMove(dir, 40, 20);
    const a = await openQueue(dir);
    const b = await openQueue(dir);
    const [fromA, fromB] = await Promise.all([a.replayDeadLetters({ all: true }), b.replayDeadLetters({ all: true })]);
    const moved = [...fromA, ...fromB].map((d) => d.event.id).sort();
    expect(moved).toEqual(range(0, 21).map((k) => `e${k}`).sort());
    await a.close();
    await b.close();
    await expectEachOnce(dir, range(0, 40).map((k) => `e${k}`));
  });

  it('two replay-dlq commands at once, in two processes, move each dead letter once', { timeout: 60_000 }, async () => {
    const cwd = tempDir();
    const dir = path.join(cwd, 'data', 'queue');
    mkdirSync(dir, { recursive: true });
    await workerDiedMidMove(dir, 30, 10);
    const env = { BACKFILL_ON_START: 'false' };
    const [one, two] = await Promise.all([runCli(['replay-dlq', '--all'], { cwd, env }), runCli(['replay-dlq', '--all'], { cwd, env })]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    const count = (out: string) => Number(/replayed (\d+) dead letter/.exec(out)?.[1] ?? 0);
    expect(count(one.stdout) + count(two.stdout)).toBe(11);
    await expectEachOnce(dir, range(0, 30).map((k) => `e${k}`));
  });
});

describe('dead letters dlq.jsonl holds twice, or cannot serialise again', () => {
  it('a dead letter written twice (its move tried again) is listed and replayed once', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue([event(1)]);
    await q.claim();
    await q.deadLetter('e1', PERMANENT);
    await q.close();
    // The same dead letter a second time, as a move whose inbox half failed and was tried again leaves it.
    const dlq = path.join(dir, 'dlq.jsonl');
    const line = readFileSync(dlq);
    writeFileSync(dlq, Buffer.concat([line, line]));
    const again = await openQueue(dir);
    expect(await again.listDeadLetters()).toHaveLength(1);
    expect(await again.replayDeadLetters({ all: true })).toHaveLength(1);
    expect(await drain(again)).toEqual([['e1', 1]]);
    expect(await again.listDeadLetters()).toHaveLength(0);
  });

  it('a dead letter whose payload JSON.stringify cannot write (nested 5,000 levels) is replayed from its stored text', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue([event(2)]);
    await q.claim();
    await q.deadLetter('e2', PERMANENT);
    await q.close();
    // Put a payload nested 5,000 levels into the stored dead letter (a queue from before the door's
    // depth limit could hold one), keeping the line's checksum right.
    const dlq = path.join(dir, 'dlq.jsonl');
    const text = readFileSync(dlq, 'utf8').trimEnd();
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    const body = text.slice(text.indexOf(',') + 1).replace('"payload":{"n":2}', `"payload":${deep}`);
    expect(body).toContain(deep);
    writeFileSync(dlq, sealLine(body));
    const again = await openQueue(dir);
    expect(await again.replayDeadLetters({ all: true })).toHaveLength(1);
    const [claimed] = await again.claim();
    expect(claimed?.event.id).toBe('e2');
    await again.ack('e2');
    expect(await again.listDeadLetters()).toHaveLength(0);
  });
});

describe('discarding dead letters around interrupted moves (issue 17)', () => {
  it('a discard from another queue object finishes the interrupted move first: the discarded event never comes back', async () => {
    const dir = tempDir();
    await workerDiedMidMove(dir, 6, 3); // e0..e2 moved, e3 half-moved, e4 and e5 still claimed when it died
    const admin = await openQueue(dir);
    expect((await admin.discardDeadLetters({ ids: ['e1', 'e3'] })).map((d) => d.event.id).sort()).toEqual(['e1', 'e3']);
    expect((await admin.listDeadLetters()).map((d) => d.event.id).sort()).toEqual(['e0', 'e2']);
    await admin.close();
    // The restarted worker hands out only what was in flight; e3's live inbox copy was marked dead.
    const worker = await openQueue(dir);
    expect((await workDry(worker)).map(([id]) => id).sort()).toEqual(['e4', 'e5']);
    expect((await worker.listDeadLetters()).map((d) => d.event.id).sort()).toEqual(['e0', 'e2']);
    expect(await worker.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 2 });
  });

  it('a dead letter written twice is discarded once and entirely; the other lines stay byte for byte', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue([event(1), event(2)]);
    await drain(q);
    await q.deadLetter('e1', PERMANENT);
    await q.deadLetter('e2', PERMANENT);
    await q.close();
    const dlq = path.join(dir, 'dlq.jsonl');
    const [first, second] = readFileSync(dlq, 'utf8').split('\n');
    writeFileSync(dlq, `${first}\n${first}\n${second}\n`);
    const again = await openQueue(dir);
    expect((await again.discardDeadLetters({ ids: ['e1'] })).map((d) => d.event.id)).toEqual(['e1']);
    expect(readFileSync(dlq, 'utf8')).toBe(`${second}\n`);
    expect(await again.stats()).toMatchObject({ deadLettered: 1 });
    expect(await drain(again)).toEqual([]);
  });
});
