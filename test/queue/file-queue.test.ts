/**
 * The file queue: the shared conformance suite, then what only a file queue can get wrong — the bytes
 * on disk, torn and corrupt lines, a crash at every step of every multi-step write, another process
 * appending while this one consumes and compacts, stale and stolen locks, and group commit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, lutimesSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import type { ErrorRecord } from '../../src/errors.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { withPayloadJson, type QueueEvent, type SourceName } from '../../src/model.ts';
import { createQueue } from '../../src/queue/create-queue.ts';
import { CRASH_POINTS, FileQueue, type CrashPoint, type FileQueueOptions } from '../../src/queue/file-queue.ts';
import { sealEvent } from '../../src/queue/record.ts';
import { queueConformance } from './conformance.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const TRANSIENT: ErrorRecord = { code: 'CONN_ERR_HTTP_SERVER', message: 'vendor answered 502', retryable: true };
const PERMANENT: ErrorRecord = { code: 'CONN_ERR_EVENT_INVALID', message: 'no such task', retryable: false };

function captureLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ level: 'debug', console: false, destination: stream }), lines };
}

const dirs: string[] = [];
const queues: FileQueue[] = [];
afterEach(async () => {
  for (const q of queues.splice(0)) await q.close().catch(() => {});
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-queue-'));
  dirs.push(dir);
  return dir;
}

async function openQueue(dir: string, options: Partial<FileQueueOptions> = {}): Promise<FileQueue> {
  const q = await FileQueue.open({ dir, log: options.log ?? captureLog().log, ...options });
  queues.push(q);
  return q;
}

function event(n: number, overrides: Partial<QueueEvent> = {}): QueueEvent {
  return {
    id: `e${n}`,
    source: n % 2 === 0 ? 'teamwork' : 'missive',
    type: n % 2 === 0 ? 'TASK.UPDATED' : 'incoming_email',
    entityKey: `entity:${n}`,
    origin: 'webhook',
    receivedAt: new Date(1_800_000_000_000 + n),
    payload: { n, body: `payload of event ${n}` },
    ...overrides,
  };
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** Claims everything claimable now (one claim call per event, so that busy entities do not hide any). */
async function drain(q: FileQueue): Promise<Array<{ id: string; attempt: number }>> {
  const out: Array<{ id: string; attempt: number }> = [];
  for (;;) {
    const got = await q.claim({ limit: 100 });
    if (got.length === 0) return out;
    out.push(...got.map((c) => ({ id: c.event.id, attempt: c.attempt })));
  }
}

function inboxLines(dir: string): string[] {
  return readFileSync(path.join(dir, 'inbox.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
}

function quarantined(dir: string): Array<Record<string, unknown>> {
  const file = path.join(dir, 'quarantine.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until(condition: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

queueConformance('file', async () => {
  const dir = tempDir();
  return { open: () => FileQueue.open({ dir, log: captureLog().log }), destroy: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('FileQueue on disk', () => {
  it('keeps the files the seed names: inbox.jsonl (checksummed JSON lines), offset.json, dlq.jsonl', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue([event(1), event(2), event(3)]);
    const [a, b] = await q.claim({ limit: 2 });
    await q.ack(a!.event.id);
    await q.deadLetter(b!.event.id, PERMANENT);
    await q.checkpoint();

    const lines = inboxLines(dir).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ t: 'h', v: 1, gen: 1, next: 1 });
    expect(lines.slice(1).map((l) => [l.t, l.seq, l.id])).toEqual([
      ['e', 1, 'e1'],
      ['e', 2, 'e2'],
      ['e', 3, 'e3'],
      ['ack', 1, 'e1'],
      ['dead', 2, 'e2'],
    ]);
    for (const l of lines) expect(l.crc).toMatch(/^[0-9a-f]{8}$/);
    expect((lines[1] as { ev: unknown }).ev).toEqual(JSON.parse(JSON.stringify(event(1))));

    const offset = JSON.parse(readFileSync(path.join(dir, 'offset.json'), 'utf8')) as Record<string, unknown>;
    expect(offset).toMatchObject({ v: 1, q: lines[0]!.q, gen: 1, next: 4 });
    // The consumed prefix ends where e3 (the first copy not done) begins.
    const raw = readFileSync(path.join(dir, 'inbox.jsonl'));
    expect(raw.toString('utf8', offset.offset as number).startsWith('{"crc":')).toBe(true);
    expect(JSON.parse(raw.toString('utf8', offset.offset as number).split('\n')[0]!)).toMatchObject({ seq: 3, id: 'e3' });

    const dlq = readFileSync(path.join(dir, 'dlq.jsonl'), 'utf8').trim().split('\n');
    expect(dlq).toHaveLength(1);
    expect(JSON.parse(dlq[0]!)).toMatchObject({ t: 'dead', id: 'e2', src: 'teamwork', attempts: 1, error: PERMANENT, event: { id: 'e2' } });
  });

  it('shares one write and one fsync among concurrent enqueues (group commit)', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await Promise.all(range(0, 200).map((n) => q.enqueue([event(n)])));
    expect(q.counters.records).toBe(200);
    expect(q.counters.fsyncs).toBeLessThanOrEqual(10);
    expect(q.counters.writes).toBe(q.counters.fsyncs);
    expect((await q.stats()).pending).toBe(200);

    const alone = await openQueue(tempDir(), { groupCommit: false });
    await Promise.all(range(0, 50).map((n) => alone.enqueue([event(n)])));
    expect(alone.counters.fsyncs).toBe(50);
  });

  it('lets enqueues made in one turn of the event loop, each from its own callback, share one commit', async () => {
    // Deliveries parsed from one poll of the sockets arrive one callback at a time; the first must not
    // be written alone. (Immediates queued together run in one turn; timers of 0 ms may not, on a busy
    // machine, when their creation straddles a millisecond.)
    const q = await openQueue(tempDir());
    const done = await new Promise<Array<Promise<void>>>((resolve) => {
      const pending: Array<Promise<void>> = [];
      for (const n of range(0, 20)) setImmediate(() => pending.push(q.enqueue([event(n)])));
      setImmediate(() => resolve(pending));
    });
    await Promise.all(done);
    expect(q.counters.records).toBe(20);
    expect(q.counters.fsyncs).toBe(1);
  });

  it("writes a payload's own JSON text when the source handed it over, and re-serialises one with a line break", async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    const text = '{"task": {"id": 7, "name": "héllo ✓ \\u2028"}}';
    const payload = withPayloadJson({ body: JSON.parse(text) as unknown }, `{"body":${text}}`);
    const broken = '{"task": {\n"id": 8}}';
    const withBreak = withPayloadJson({ body: JSON.parse(broken) as unknown }, `{"body":${broken}}`);
    await q.enqueue([event(1, { payload }), event(2, { payload: withBreak })]);
    const lines = inboxLines(dir);
    expect(lines).toHaveLength(3); // the header and one line each
    expect(lines[1]).toContain(`"payload":{"body":${text}}}`);
    const claimed = await q.claim({ limit: 2 });
    expect(claimed.map((c) => c.event.payload)).toEqual([{ body: JSON.parse(text) }, { body: JSON.parse(broken) }]);
    expect(quarantined(dir)).toEqual([]);
  });

  it('counts enqueued events in the queue:appended lifecycle event', async () => {
    const lifecycle = new Lifecycle();
    const counts: number[] = [];
    lifecycle.on('queue:appended', ({ count }) => counts.push(count));
    const q = await openQueue(tempDir(), { lifecycle });
    await q.enqueue([event(1), event(2)]);
    await q.enqueue([event(3)]);
    expect(counts).toEqual([2, 1]);
  });

  it('treats an entity with an event in flight as busy for later claims', async () => {
    const q = await openQueue(tempDir());
    await q.enqueue([event(1, { entityKey: 'task:7' }), event(2, { entityKey: 'task:7' }), event(3, { entityKey: 'task:8' })]);
    expect((await q.claim()).map((c) => c.event.id)).toEqual(['e1']);
    expect((await q.claim({ limit: 10 })).map((c) => c.event.id)).toEqual(['e3']);
    await q.retry('e1', TRANSIENT, { delayMs: 60_000 });
    expect((await q.claim({ limit: 10 })).map((c) => c.event.id)).toEqual(['e2']);
  });
});

describe('FileQueue group commits', () => {
  it('writes the next batch while an fsync is in flight, and confirms nothing an earlier failed fsync may have taken with it', async () => {
    const dir = tempDir();
    let syncs = 0;
    let failFirst!: (err: Error) => void;
    const firstSync = new Promise<void>((_resolve, reject) => (failFirst = reject));
    const q = await openQueue(dir, { beforeInboxSync: () => (++syncs === 1 ? firstSync : Promise.resolve()) });
    const a = q.enqueue([event(1)]).then(() => 'ok', (err: Error) => err.message);
    await until(() => syncs === 1); // A written, its fsync in flight
    const b = q.enqueue([event(2)]).then(() => 'ok', (err: Error) => err.message);
    await until(() => syncs === 2); // B written beside it, its own fsync done
    expect(inboxLines(dir).filter((l) => l.includes('"t":"e"'))).toHaveLength(2);
    failFirst(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    expect(await a).toMatch(/EIO/);
    expect(await b).toMatch(/group commit before this one failed/);
    // The next commit stands on its own fsync again.
    await q.enqueue([event(3)]);
    expect(q.counters.fsyncs).toBe(2);
    // Nothing is lost either way: A and B were written and are handed out (at least once).
    expect((await drain(q)).map((c) => c.id).sort()).toEqual(['e1', 'e2', 'e3']);
  });

  it('keeps the write lock from one commit to the next while commits follow each other, and lets it go when idle', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await producers(q, 4, 25, 'lease');
    expect(q.counters.writes).toBeGreaterThanOrEqual(10);
    expect(q.counters.writeLocks).toBeLessThan(q.counters.writes / 2);
    await until(() => !existsSync(path.join(dir, 'write.lock')));
    expect((await q.stats()).pending).toBe(100);
  });

  it('hands the write lock over at the end of a commit to another writer that waits for it', async () => {
    const dir = tempDir();
    const streaming = await openQueue(dir);
    const other = await openQueue(dir);
    let streamed = 0;
    let stop = false;
    const stream = (async () => {
      await Promise.all(
        range(0, 4).map(async (p) => {
          for (let i = 0; !stop; i++) {
            await streaming.enqueue([event(1000 * p + i, { id: `s${p}-${i}` })]);
            streamed++;
          }
        }),
      );
    })();
    await until(() => streamed >= 20); // commits follow each other: the lock is kept (a lease)
    const asked = Date.now();
    await other.enqueue([event(1, { id: 'other' })]);
    const waited = Date.now() - asked;
    const streamedThen = streamed;
    await until(() => streamed > streamedThen + 10); // and the stream goes on after it
    stop = true;
    await stream;
    // Without the hand-over the other writer would wait out the lease (a second).
    expect(waited).toBeLessThan(500);
    expect(existsSync(path.join(dir, 'write.lock.wait'))).toBe(false);
    expect((await streaming.stats()).pending).toBe(streamed + 1);
  });

  it('ignores and removes a waiting marker left by a process that is gone', async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', '']).pid as number;
    plantLock(path.join(dir, 'write.lock.wait'), { pid: dead, host: hostname(), token: 'gone' });
    const q = await openQueue(dir);
    await producers(q, 4, 25, 'marker');
    expect(existsSync(path.join(dir, 'write.lock.wait'))).toBe(false);
    expect(q.counters.writeLocks).toBeLessThan(q.counters.writes / 2);
  });
});

/** `count` producers, each enqueueing `rounds` events one after another: commits that follow each other. */
async function producers(q: FileQueue, count: number, rounds: number, prefix: string): Promise<void> {
  await Promise.all(
    range(0, count).map(async (p) => {
      for (const i of range(0, rounds)) await q.enqueue([event(1000 * p + i, { id: `${prefix}${p}-${i}` })]);
    }),
  );
}

describe('FileQueue with damaged lines', () => {
  it('sets a torn last line aside in quarantine.jsonl, logs it, and keeps everything before it', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue(range(0, 5).map((n) => event(n)));
    await q.close();
    const torn = '{"crc":"0badf00d","t":"e","seq":6,"id":"e5","src":"teamw';
    appendFileSync(path.join(dir, 'inbox.jsonl'), torn);

    const { log, lines } = captureLog();
    const again = await openQueue(dir, { log });
    expect(readFileSync(path.join(dir, 'inbox.jsonl'), 'utf8').endsWith('}\n')).toBe(true);
    const set = quarantined(dir);
    expect(set).toHaveLength(1);
    expect(set[0]).toMatchObject({ file: 'inbox.jsonl', fault: 'torn (no newline)', length: torn.length });
    expect(Buffer.from(set[0]!.base64 as string, 'base64').toString()).toBe(torn);
    expect(lines.some((l) => l.level === 'warn' && l.fault === 'torn (no newline)' && /quarantine/.test(String(l.msg)))).toBe(true);

    await again.enqueue([event(9)]);
    expect((await drain(again)).map((c) => c.id)).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e9']);
  });

  it('sets a corrupt line in the middle aside, keeps its neighbours, and drops it at the next compaction', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue(range(0, 5).map((n) => event(n)));
    await q.close();
    const file = path.join(dir, 'inbox.jsonl');
    const text = readFileSync(file, 'utf8');
    const damaged = text.replace('payload of event 2', 'payload of event X');
    expect(damaged).not.toBe(text);
    writeFileSync(file, damaged);

    const { log, lines } = captureLog();
    const again = await openQueue(dir, { log });
    expect((await drain(again)).map((c) => c.id)).toEqual(['e0', 'e1', 'e3', 'e4']);
    const set = quarantined(dir);
    expect(set).toHaveLength(1);
    expect(set[0]).toMatchObject({ file: 'inbox.jsonl', fault: 'checksum mismatch' });
    expect(Buffer.from(set[0]!.base64 as string, 'base64').toString()).toContain('payload of event X');
    expect(lines.some((l) => l.level === 'warn' && l.fault === 'checksum mismatch')).toBe(true);

    await until(() => again.counters.compactions >= 1);
    expect(readFileSync(file, 'utf8')).not.toContain('payload of event X');
    await again.close();
    const third = await openQueue(dir);
    expect((await drain(third)).map((c) => c.id)).toEqual(['e0', 'e1', 'e3', 'e4']);
    expect(quarantined(dir)).toHaveLength(1);
  });

  it('keeps the records after a line of garbage bytes (a zero-filled block, stray text)', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue([event(1)]);
    await q.close();
    appendFileSync(path.join(dir, 'inbox.jsonl'), Buffer.concat([Buffer.alloc(300), Buffer.from('\nnot json at all\n')]));
    const again = await openQueue(dir);
    await again.enqueue([event(2)]);
    expect((await drain(again)).map((c) => c.id)).toEqual(['e1', 'e2']);
    expect(quarantined(dir).map((q) => q.fault)).toEqual(['no checksum', 'no checksum']);
  });
});

describe('FileQueue crash safety', () => {
  /** Opens a queue that throws at `point` once armed; everything written until then stays on disk. */
  async function crashable(dir: string, extra: Partial<FileQueueOptions> = {}) {
    const control = { armed: false, point: '' as CrashPoint | '' };
    const q = await openQueue(dir, {
      ...extra,
      crashPoint: (p) => {
        if (control.armed && p === control.point) throw new Error(`simulated crash at ${p}`);
      },
    });
    return { q, arm: (point: CrashPoint) => Object.assign(control, { armed: true, point }) };
  }

  /**
   * The common starting state: e0..e9 acked, e10 retried once (ready), e11 dead-lettered, e12..e19
   * claimed and not acked, e20..e24 pending.
   */
  async function busyQueue(dir: string) {
    const handle = await crashable(dir, { compactThresholdBytes: Number.MAX_SAFE_INTEGER });
    const { q } = handle;
    await q.enqueue(range(0, 20).map((n) => event(n)));
    const claimed = await drain(q);
    expect(claimed).toHaveLength(20);
    for (const n of range(0, 10)) await q.ack(`e${n}`);
    await q.retry('e10', TRANSIENT, { delayMs: 0 });
    await q.deadLetter('e11', PERMANENT);
    await q.enqueue(range(20, 25).map((n) => event(n)));
    return handle;
  }

  const LIVE_AFTER_BUSY = [...range(10, 11), ...range(12, 25)].map((n) => `e${n}`);

  async function expectRecovered(dir: string, live: string[], dead: string[]) {
    const again = await openQueue(dir);
    const got = await drain(again);
    expect(got.map((c) => c.id).sort()).toEqual([...live].sort());
    expect(new Set(got.map((c) => c.id)).size).toBe(got.length);
    expect((await again.listDeadLetters()).map((d) => d.event.id).sort()).toEqual([...dead].sort());
    expect((await again.stats()).deadLettered).toBe(dead.length);
    return { again, got };
  }

  const scenarios: Record<CrashPoint, (dir: string) => Promise<void>> = {
    'append:written': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('append:written');
      await expect(q.enqueue([event(30)])).rejects.toThrow('simulated crash');
      await q.close();
      // Written but never confirmed: at least once allows it to be there (the sender will retry).
      const { got } = await expectRecovered(dir, [...LIVE_AFTER_BUSY, 'e30'], ['e11']);
      expect(got.find((c) => c.id === 'e10')!.attempt).toBe(2);
    },
    'append:synced': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('append:synced');
      await expect(q.enqueue([event(30)])).rejects.toThrow('simulated crash');
      await q.close();
      await expectRecovered(dir, [...LIVE_AFTER_BUSY, 'e30'], ['e11']);
    },
    'dead-letter:dlq-synced': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('dead-letter:dlq-synced');
      await expect(q.deadLetter('e12', PERMANENT)).rejects.toThrow('simulated crash');
      await q.close();
      // In dlq.jsonl and not handed out again: the move is finished on open.
      const { again } = await expectRecovered(dir, LIVE_AFTER_BUSY.filter((id) => id !== 'e12'), ['e11', 'e12']);
      expect(inboxLines(dir).some((l) => l.includes('"t":"dead"') && l.includes('"id":"e12"'))).toBe(true);
      await again.close();
    },
    'replay:inbox-synced': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('replay:inbox-synced');
      await expect(q.replayDeadLetters({ all: true })).rejects.toThrow('simulated crash');
      await q.close();
      await expectRecovered(dir, [...LIVE_AFTER_BUSY, 'e11'], []);
      expect(readFileSync(path.join(dir, 'dlq.jsonl'), 'utf8')).toBe('');
    },
    'replay:dlq-tmp-synced': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('replay:dlq-tmp-synced');
      await expect(q.replayDeadLetters({ ids: ['e11'] })).rejects.toThrow('simulated crash');
      await q.close();
      expect(readdirSync(dir).some((f) => f.startsWith('dlq.jsonl.') && f.endsWith('.tmp'))).toBe(true);
      await expectRecovered(dir, [...LIVE_AFTER_BUSY, 'e11'], []);
      expect(readdirSync(dir).some((f) => f.endsWith('.tmp'))).toBe(false);
    },
    'checkpoint:tmp-synced': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('checkpoint:tmp-synced');
      await expect(q.checkpoint()).rejects.toThrow('simulated crash');
      await q.close();
      await expectRecovered(dir, LIVE_AFTER_BUSY, ['e11']);
    },
    'checkpoint:renamed': async (dir) => {
      const { q, arm } = await busyQueue(dir);
      arm('checkpoint:renamed');
      await expect(q.checkpoint()).rejects.toThrow('simulated crash');
      await q.close();
      expect(existsSync(path.join(dir, 'offset.json'))).toBe(true);
      await expectRecovered(dir, LIVE_AFTER_BUSY, ['e11']);
    },
    'compact:copied': async (dir) => compactionCrash(dir, 'compact:copied', 1),
    'compact:synced': async (dir) => compactionCrash(dir, 'compact:synced', 1),
    'compact:renamed': async (dir) => compactionCrash(dir, 'compact:renamed', 2),
    'compact:dir-synced': async (dir) => compactionCrash(dir, 'compact:dir-synced', 2),
  };

  async function compactionCrash(dir: string, point: CrashPoint, genAfter: number) {
    const { q, arm } = await busyQueue(dir);
    await q.checkpoint(); // an offset.json for generation 1, which a generation-2 file must not obey
    arm(point);
    await expect(q.compact()).rejects.toThrow('simulated crash');
    await q.close();
    const header = JSON.parse(inboxLines(dir)[0]!) as { gen: number };
    expect(header.gen).toBe(genAfter);
    const { again } = await expectRecovered(dir, LIVE_AFTER_BUSY, ['e11']);
    expect(existsSync(path.join(dir, 'inbox.jsonl.compact'))).toBe(false);
    // The recovered queue compacts cleanly and still holds the same events.
    await again.ack('e24');
    expect(await again.compact()).toBe(true);
    await again.close();
    await expectRecovered(dir, LIVE_AFTER_BUSY.filter((id) => id !== 'e24'), ['e11']);
  }

  it('has a scenario for every crash point', () => {
    expect(Object.keys(scenarios).sort()).toEqual([...CRASH_POINTS].sort());
  });

  it.each(CRASH_POINTS.map((p) => [p]))('loses nothing and duplicates nothing when the process dies at %s', async (point) => {
    await scenarios[point](tempDir());
  });

  it('ignores an offset.json left by the generation before, even where it falls on a line boundary', async () => {
    const dir = tempDir();
    const { q, arm } = await crashable(dir, { compactThresholdBytes: Number.MAX_SAFE_INTEGER });
    // Lines of equal length, so that an old offset lands exactly on a line of the new file.
    const same = (n: number) => event(n, { source: 'teamwork', type: 'TASK.UPDATED' });
    await q.enqueue(range(10, 30).map(same));
    for (const c of await drain(q)) await q.ack(c.id);
    expect(await q.compact()).toBe(true); // generation 2, next seq 21
    await q.enqueue(range(30, 50).map(same));
    for (const c of (await drain(q)).slice(0, 10)) await q.ack(c.id);
    await q.checkpoint(); // generation 2: offset = header + 10 lines
    arm('compact:renamed');
    await expect(q.compact()).rejects.toThrow('simulated crash');
    await q.close();
    expect(JSON.parse(inboxLines(dir)[0]!)).toMatchObject({ gen: 3 });
    const offset = JSON.parse(readFileSync(path.join(dir, 'offset.json'), 'utf8')) as { gen: number; offset: number };
    expect(offset.gen).toBe(2);
    expect(offset.offset).toBe(readFileSync(path.join(dir, 'inbox.jsonl')).length); // a boundary in the new file
    await expectRecovered(dir, range(40, 50).map((n) => `e${n}`), []);
  });

  it('compacts by itself past the threshold, shrinking the file and keeping every live event', async () => {
    const dir = tempDir();
    const q = await openQueue(dir, { compactThresholdBytes: 8 * 1024 });
    await q.enqueue(range(0, 200).map((n) => event(n)));
    const sizeBefore = readFileSync(path.join(dir, 'inbox.jsonl')).length;
    const claimed = await drain(q);
    for (const c of claimed.slice(0, 150)) await q.ack(c.id);
    // Compactions run in the background as acks land (the last one may still be running when the last
    // ack resolves): wait for the file to shrink by itself, then let any compaction in progress finish.
    await until(() => q.counters.compactions >= 1 && readFileSync(path.join(dir, 'inbox.jsonl')).length < sizeBefore / 2, 15_000);
    await q.checkpoint();
    await q.compact();
    expect(JSON.parse(inboxLines(dir)[0]!)).toMatchObject({ t: 'h', gen: q.counters.compactions + 1 });
    for (const c of claimed.slice(150, 160)) await q.ack(c.id);
    await q.close();
    const again = await openQueue(dir);
    expect((await drain(again)).map((c) => c.id)).toEqual(claimed.slice(160).map((c) => c.id));
  });

  it('keeps appends that arrive while it compacts', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    await q.enqueue(range(0, 300).map((n) => event(n)));
    for (const c of await drain(q)) if (Number(c.id.slice(1)) < 250) await q.ack(c.id);
    await Promise.all([q.compact(), ...range(300, 340).map((n) => q.enqueue([event(n)]))]);
    await q.close();
    const again = await openQueue(dir);
    expect((await drain(again)).map((c) => c.id).sort()).toEqual([...range(250, 340)].map((n) => `e${n}`).sort());
  });
});

describe('FileQueue across processes', () => {
  it('consumes what another process enqueues at the same time, compacting as it goes, losing and repeating nothing', async () => {
    const dir = tempDir();
    const q = await openQueue(dir, { compactThresholdBytes: 32 * 1024, pollIntervalMs: 50 });
    const total = 3000;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures/enqueue-child.ts'), dir, String(total), '25', 'child'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let childDone = false;
    void exited.then(() => (childDone = true));

    const seen = new Map<string, number>();
    const deadline = Date.now() + 60_000;
    while (seen.size < total && Date.now() < deadline) {
      const got = await q.claim({ limit: 50 });
      if (got.length === 0) {
        if (childDone && (await q.stats()).pending === 0) break;
        await q.waitForWork(200);
        continue;
      }
      for (const c of got) {
        seen.set(c.event.id, (seen.get(c.event.id) ?? 0) + 1);
        await q.ack(c.event.id);
      }
    }
    expect(await exited, stderr).toBe(0);
    expect(JSON.parse(stdout.trim())).toMatchObject({ records: total });
    expect(seen.size).toBe(total);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(q.counters.compactions).toBeGreaterThanOrEqual(1);
    expect(await q.stats()).toMatchObject({ pending: 0, inFlight: 0 });
  }, 90_000);

  it('replays dead letters from a process that is not the worker (the replay-dlq command)', async () => {
    const dir = tempDir();
    const worker = await openQueue(dir);
    await worker.enqueue([event(1), event(2), event(3)]);
    for (const c of await worker.claim({ limit: 3 })) await worker.deadLetter(c.event.id, PERMANENT);
    const admin = await openQueue(dir);
    expect((await admin.stats()).deadLettered).toBe(3);
    expect((await admin.replayDeadLetters({ ids: ['e1', 'e3'] })).map((d) => d.event.id)).toEqual(['e1', 'e3']);
    await admin.close();
    expect((await worker.listDeadLetters()).map((d) => d.event.id)).toEqual(['e2']);
    expect((await worker.claim({ limit: 10 })).map((c) => [c.event.id, c.attempt])).toEqual([
      ['e1', 1],
      ['e3', 1],
    ]);
    expect(await worker.stats()).toMatchObject({ inFlight: 2, deadLettered: 1 });
  });

  it('wakes a waiting worker when another queue object appends', async () => {
    const dir = tempDir();
    const consumer = await openQueue(dir, { pollIntervalMs: 2000 });
    const producer = await openQueue(dir);
    expect(await consumer.claim()).toEqual([]);
    const started = Date.now();
    const waiting = consumer.waitForWork(20_000);
    await producer.enqueue([event(1)]);
    await waiting;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await consumer.claim()).map((c) => c.event.id)).toEqual(['e1']);
    expect(await producer.stats()).toMatchObject({ pending: 1 }); // not the consumer: in flight looks pending
  });
});

describe('FileQueue claims by source', () => {
  /** A deterministic pseudo-random number in [0, 1) (a linear congruential generator: replayable). */
  function seeded(seed: number): () => number {
    let state = seed >>> 0;
    return () => {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      return state / 2 ** 32;
    };
  }

  it('hands out exactly what a model of the log predicts, through source lanes, retries, compactions, a producer elsewhere and reopens', async () => {
    const dir = tempDir();
    const producer = await openQueue(dir); // another queue object: the worker indexes its appends by tailing
    let worker = await openQueue(dir);
    const random = seeded(20_260_101);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    // Every copy in file order, as the queue should see it; a retry's copy goes to the end.
    type Copy = { id: string; source: SourceName; attempt: number; state: 'pending' | 'claimed' | 'delayed' | 'done' };
    const copies: Copy[] = [];
    const filters: Array<SourceName[] | undefined> = [['teamwork'], ['missive'], ['teamwork'], ['missive'], undefined, ['missive', 'teamwork']];
    let n = 0;
    let compactions = 0;
    for (let step = 0; step < 500; step++) {
      const r = random();
      if (r < 0.3) {
        const batch = range(0, 1 + Math.floor(random() * 5)).map(() => event(n++, { source: pick(['teamwork', 'missive'] as const), entityKey: null }));
        await (random() < 0.5 ? producer : worker).enqueue(batch);
        for (const e of batch) copies.push({ id: e.id, source: e.source, attempt: 1, state: 'pending' });
      } else if (r < 0.65) {
        const sources = pick(filters);
        const limit = 1 + Math.floor(random() * 4);
        const expected = copies.filter((c) => c.state === 'pending' && (sources === undefined || sources.includes(c.source))).slice(0, limit);
        const got = await worker.claim({ limit, ...(sources === undefined ? {} : { sources }) });
        expect(got.map((c) => [c.event.id, c.event.source, c.attempt]), `step ${step}, sources ${String(sources)}`).toEqual(expected.map((c) => [c.id, c.source, c.attempt]));
        for (const c of expected) c.state = 'claimed';
      } else if (r < 0.9) {
        const claimed = copies.filter((c) => c.state === 'claimed');
        if (claimed.length === 0) continue;
        const c = pick(claimed);
        const what = random();
        c.state = 'done';
        if (what < 0.4) {
          await worker.ack(c.id);
        } else {
          // Some back off for a minute: live copies every scan has to pass over.
          const delayMs = what < 0.55 ? 60_000 : 0;
          const spendAttempt = random() < 0.5;
          await worker.retry(c.id, TRANSIENT, { delayMs, spendAttempt });
          copies.push({ id: c.id, source: c.source, attempt: spendAttempt ? c.attempt + 1 : c.attempt, state: delayMs > 0 ? 'delayed' : 'pending' });
        }
      } else if (r < 0.96) {
        if (await worker.compact()) compactions++;
      } else {
        await worker.close();
        worker = await openQueue(dir);
        for (const c of copies) if (c.state === 'claimed') c.state = 'pending';
      }
    }
    expect(compactions).toBeGreaterThan(0);
    const count = (state: Copy['state']) => copies.filter((c) => c.state === state).length;
    expect(await worker.stats()).toMatchObject({ pending: count('pending'), inFlight: count('claimed'), delayed: count('delayed') });
    await worker.close();
    worker = await openQueue(dir);
    for (const source of ['missive', 'teamwork'] as const) {
      const expected = copies.filter((c) => c.source === source && (c.state === 'pending' || c.state === 'claimed'));
      const got = await worker.claim({ limit: 1000, sources: [source] });
      expect(got.map((c) => [c.event.id, c.attempt])).toEqual(expected.map((c) => [c.id, c.attempt]));
    }
  }, 60_000);

  it("passes over a paused source's backlog, across the slot table's chunks, without losing its place", async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    // More than one chunk of slots (65,536) of one source, with the other's events among and after them.
    const backlog = 70_000;
    for (let i = 0; i < backlog; i += 10_000) await q.enqueue(range(i, i + 10_000).map((k) => event(k, { source: 'teamwork', entityKey: null })));
    await q.enqueue([event(backlog, { source: 'missive' }), event(backlog + 1, { source: 'missive' })]);
    expect((await q.claim({ sources: ['missive'] })).map((c) => c.event.id)).toEqual([`e${backlog}`]);
    expect((await q.claim({ limit: 5, sources: ['missive'] })).map((c) => c.event.id)).toEqual([`e${backlog + 1}`]);
    expect(await q.claim({ limit: 5, sources: ['missive'] })).toEqual([]);
    await q.enqueue([event(backlog + 2, { source: 'missive' })]);
    expect((await q.claim({ limit: 5, sources: ['missive'] })).map((c) => c.event.id)).toEqual([`e${backlog + 2}`]);
    // The lane of the other source still starts at the head of its backlog.
    expect((await q.claim({ limit: 3, sources: ['teamwork'] })).map((c) => c.event.id)).toEqual(['e0', 'e1', 'e2']);
    expect((await q.claim({ limit: 2 })).map((c) => c.event.id)).toEqual(['e3', 'e4']);
    expect(await q.stats()).toMatchObject({ pending: backlog - 5, inFlight: 8 });
  }, 60_000);

  it('starts every source lane afresh when it re-reads inbox.jsonl (here: found shorter than it had read)', async () => {
    const dir = tempDir();
    const q = await openQueue(dir);
    const inbox = path.join(dir, 'inbox.jsonl');
    await q.enqueue(range(0, 20).map((k) => event(k)));
    for (const c of await q.claim({ limit: 20 })) await q.ack(c.event.id);
    await q.checkpoint(); // a re-read starts after these, so the slots are numbered anew
    await q.enqueue([event(21), event(22), event(23)]); // missive, teamwork, missive
    expect((await q.claim({ sources: ['missive'] })).map((c) => c.event.id)).toEqual(['e21']);
    truncateSync(inbox, statSync(inbox).size - Buffer.byteLength(`${inboxLines(dir).at(-1)}\n`)); // e23's line
    await q.enqueue([event(25)]);
    expect((await q.claim({ limit: 5, sources: ['missive'] })).map((c) => c.event.id)).toEqual(['e25']);
    expect((await q.claim({ limit: 5, sources: ['teamwork'] })).map((c) => c.event.id)).toEqual(['e22']);
  });

  it('tells sources apart by reading the line once more than 255 source names were seen (source code 0)', async () => {
    const dir = tempDir();
    await (await openQueue(dir)).close();
    // Lines with made-up `src` names, as a later version might write: each name takes a code; the
    // last ones, 'missive' and 'teamwork' among them, have none left and share code 0.
    let seq = 1;
    const line = (e: QueueEvent, src: string) =>
      sealEvent(seq++, { id: e.id, src, k: e.entityKey, r: e.receivedAt.getTime(), a: 1, evJson: JSON.stringify(e) });
    const lines = range(0, 260).map((k) => line(event(k, { source: 'teamwork', entityKey: null }), `other-${k}`));
    lines.push(line(event(300, { source: 'missive' }), 'missive'), line(event(301, { source: 'teamwork' }), 'teamwork'), line(event(302, { source: 'missive' }), 'missive'));
    appendFileSync(path.join(dir, 'inbox.jsonl'), Buffer.concat(lines));
    const q = await openQueue(dir);
    expect((await q.claim({ limit: 10, sources: ['missive'] })).map((c) => c.event.id)).toEqual(['e300', 'e302']);
    expect((await q.claim({ limit: 10, sources: ['teamwork'] })).map((c) => c.event.id)).toEqual(['e301']);
    expect(await q.stats()).toMatchObject({ pending: 260, inFlight: 3 });
  });
});

/** Makes a lock as another process would: a symlink whose target names the holder. */
function plantLock(file: string, owner: { pid: number; host: string; token: string }): void {
  symlinkSync(JSON.stringify({ ...owner, since: new Date().toISOString() }), file);
}

describe('FileQueue locks', () => {
  it('lets only one worker claim from a directory', async () => {
    const dir = tempDir();
    const first = await openQueue(dir);
    const second = await openQueue(dir);
    await first.enqueue([event(1), event(2)]);
    expect(await first.claim()).toHaveLength(1);
    await expect(second.claim()).rejects.toMatchObject({ code: 'CONN_ERR_QUEUE_LOCKED' });
    await second.enqueue([event(3)]); // appending needs no consumer lock
    await first.close();
    expect((await drain(second)).map((c) => c.id)).toEqual(['e1', 'e2', 'e3']);
  });

  it('takes over at once a lock whose holder process is gone, and says so', async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', '']).pid as number;
    plantLock(path.join(dir, 'consumer.lock'), { pid: dead, host: hostname(), token: 'gone' });
    plantLock(path.join(dir, 'write.lock'), { pid: dead, host: hostname(), token: 'gone2' });
    const { log, lines } = captureLog();
    const q = await openQueue(dir, { log });
    await q.enqueue([event(1)]);
    expect(await q.claim()).toHaveLength(1);
    expect(lines.filter((l) => /took over the queue's (consumer|write) lock/.test(String(l.msg)))).toHaveLength(2);
    // Taken over in the short form (`<pid>:<host id>:<token>`); the planted locks were the older JSON form.
    expect(readlinkSync(path.join(dir, 'consumer.lock'))).toMatch(new RegExp(`^${process.pid}:[0-9a-f]{8}:[0-9a-f]{16}$`));
  });

  it('takes over at once a lock left by an earlier process that had this pid (a restarted container)', async () => {
    const dir = tempDir();
    plantLock(path.join(dir, 'consumer.lock'), { pid: process.pid, host: hostname(), token: 'previous-incarnation' });
    const q = await openQueue(dir);
    await q.enqueue([event(1)]);
    expect(await q.claim()).toHaveLength(1);
  });

  it('takes over a lock not refreshed for longer than lockStaleMs, even if its pid is alive', async () => {
    const dir = tempDir();
    const lock = path.join(dir, 'consumer.lock');
    plantLock(lock, { pid: process.ppid, host: hostname(), token: 'frozen' });
    const q = await openQueue(dir, { lockStaleMs: 2000 });
    await q.enqueue([event(1)]);
    await expect(q.claim()).rejects.toMatchObject({ code: 'CONN_ERR_QUEUE_LOCKED' });
    const hourAgo = new Date(Date.now() - 3600_000);
    lutimesSync(lock, hourAgo, hourAgo);
    expect(await q.claim()).toHaveLength(1);
  });

  it('survives a lock taken from it: logs, keeps running, and claims again once the lock is free', async () => {
    const dir = tempDir();
    const { log, lines } = captureLog();
    const q = await openQueue(dir, { log, lockStaleMs: 2000 });
    await q.enqueue([event(1), event(2)]);
    expect(await q.claim()).toHaveLength(1);
    const lock = path.join(dir, 'consumer.lock');
    rmSync(lock);
    plantLock(lock, { pid: process.ppid, host: hostname(), token: 'thief' });
    await until(() => lines.some((l) => l.level === 'error' && /lost the queue's consumer lock/.test(String(l.msg))));
    await q.ack('e1'); // an event in hand can still be settled
    await expect(q.claim()).rejects.toMatchObject({ code: 'CONN_ERR_QUEUE_LOCKED' });
    rmSync(lock);
    expect((await q.claim()).map((c) => c.event.id)).toEqual(['e2']);
  });
});

describe('FileQueue at volume', () => {
  it('round-trips thousands of events through retries, dead letters and compaction, each settled once', async () => {
    const dir = tempDir();
    const q = await openQueue(dir, { compactThresholdBytes: 64 * 1024 });
    const total = 4000;
    for (let i = 0; i < total; i += 250) await q.enqueue(range(i, i + 250).map((n) => event(n, { entityKey: `entity:${n % 50}` })));
    const acked = new Set<string>();
    const deadIds = new Set<string>();
    const deadline = Date.now() + 60_000;
    while (acked.size + deadIds.size < total && Date.now() < deadline) {
      const got = await q.claim({ limit: 50 });
      if (got.length === 0) {
        await q.waitForWork(20);
        continue;
      }
      for (const c of got) {
        const n = Number(c.event.id.slice(1));
        expect(acked.has(c.event.id) || deadIds.has(c.event.id)).toBe(false);
        if (n % 97 === 0) {
          await q.deadLetter(c.event.id, PERMANENT);
          deadIds.add(c.event.id);
        } else if (n % 10 === 0 && c.attempt === 1) {
          await q.retry(c.event.id, TRANSIENT, { delayMs: 0 });
        } else {
          expect(c.attempt).toBe(n % 10 === 0 ? 2 : 1);
          await q.ack(c.event.id);
          acked.add(c.event.id);
        }
      }
    }
    expect(acked.size + deadIds.size).toBe(total);
    expect(q.counters.compactions).toBeGreaterThanOrEqual(1);
    await q.close();
    const again = await openQueue(dir);
    expect(await again.stats()).toEqual({ pending: 0, inFlight: 0, delayed: 0, deadLettered: deadIds.size, oldestPendingAgeMs: null });
    expect((await again.listDeadLetters()).map((d) => d.event.id).sort()).toEqual([...deadIds].sort());
  }, 90_000);
});

describe('createQueue', () => {
  it('opens the file queue in DATA_DIR/queue, and refuses QUEUE_BACKEND=redis on a Redis it cannot reach, naming REDIS_URL', async () => {
    const dataDir = tempDir();
    const deps = { log: captureLog().log, lifecycle: new Lifecycle() };
    const q = await createQueue(parseConfig({ DATA_DIR: dataDir }), deps);
    await q.enqueue([event(1)]);
    await q.close();
    expect(existsSync(path.join(dataDir, 'queue', 'inbox.jsonl'))).toBe(true);
    await expect(createQueue(parseConfig({ DATA_DIR: dataDir, QUEUE_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:1' }), deps)).rejects.toMatchObject({
      code: 'CONN_ERR_CONFIG_INVALID',
      message: 'Invalid setting REDIS_URL: cannot reach Redis at 127.0.0.1:1 (ECONNREFUSED)',
    });
  });
});

describe('FileQueue: retry and deadLetter never fail because of the event (issue 14)', () => {
  /** An event whose payload nests `levels` arrays: enqueued as its own JSON text, as a webhook source does. */
  function deepEvent(id: string, levels = 5_000): QueueEvent {
    const text = `{"kind":"deep","nest":${'['.repeat(levels)}${']'.repeat(levels)}}`;
    return { ...event(0), id, entityKey: `task:${id}`, payload: withPayloadJson(JSON.parse(text) as object, text) };
  }
  const depthOf = (value: unknown): number => {
    let depth = 0;
    for (let v = value; Array.isArray(v); v = v[0]) depth++;
    return depth;
  };

  it('retries an event nested too deep for JSON.stringify, keeping its payload as stored', async () => {
    const q = await openQueue(tempDir());
    await q.enqueue([deepEvent('deep-1')]);
    const [first] = await q.claim();
    expect(first?.event.id).toBe('deep-1');
    await q.retry('deep-1', TRANSIENT, { delayMs: 0 });
    const [again] = await q.claim();
    expect(again).toMatchObject({ attempt: 2, lastError: TRANSIENT });
    expect(depthOf((again?.event.payload as { nest: unknown }).nest)).toBe(5_000);
  });

  it('dead-letters it with the payload as stored, and the dead letter reads back', async () => {
    const q = await openQueue(tempDir());
    await q.enqueue([deepEvent('deep-2')]);
    await q.claim();
    await q.retry('deep-2', TRANSIENT, { delayMs: 0 });
    await q.claim();
    await q.deadLetter('deep-2', PERMANENT);
    const [letter] = await q.listDeadLetters();
    expect(letter).toMatchObject({ attempts: 2, error: PERMANENT });
    expect(letter?.event.id).toBe('deep-2');
    expect(depthOf((letter?.event.payload as { nest: unknown }).nest)).toBe(5_000);
    expect((await q.stats()).pending + (await q.stats()).inFlight).toBe(0);
  });

  it('an error record that cannot be written as JSON is kept in a safe form (code, message, retryable)', async () => {
    const q = await openQueue(tempDir());
    await q.enqueue([event(1), event(2)]);
    await q.claim({ limit: 2 });
    const odd = { code: 'CONN_ERR_INTERNAL', message: 'odd details', retryable: true, details: { n: 10n } } as unknown as ErrorRecord;
    await q.retry('e1', odd, { delayMs: 0 });
    await q.deadLetter('e2', odd);
    const [again] = await q.claim();
    expect(again?.lastError).toMatchObject({ code: 'CONN_ERR_INTERNAL', message: 'odd details', retryable: true });
    const [letter] = await q.listDeadLetters();
    expect(letter?.error).toMatchObject({ code: 'CONN_ERR_INTERNAL', message: 'odd details', retryable: true });
  });
});
