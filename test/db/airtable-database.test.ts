/**
 * AirtableDatabase: the shared conformance suite on the Airtable simulator, then what is particular to
 * Airtable (version reads per batch and the version cache, chunks of 10, the shared per-base rate
 * limit, 429 pauses, 5xx retries, errors that say what to fix, text cut at 100,000 characters,
 * attachments by URL, checkpoint files).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AirtableDatabase, type AirtableDatabaseOptions } from '../../src/db/airtable/airtable-database.ts';
import { TASKS_TABLE } from '../../src/db/airtable/schema.ts';
import { RateLimiter } from '../../src/http/rate-limiter.ts';
import { startAirtableSimulator, type AirtableSimulator, type AirtableSimulatorOptions } from '../../simulators/airtable/index.ts';
import { noChanges } from '../../src/model.ts';
import { later, makeEmail, makeTask } from '../fixtures/records.ts';
import { databaseConformance } from './conformance.ts';

/** A budget well above what the tests' simulators allow per second, so the suite runs in seconds. */
const fastLimiter = () => new RateLimiter({ windows: [{ limit: 50, intervalMs: 1_000 }] });

databaseConformance(
  'airtable (simulator)',
  async () => {
    const sim = await startAirtableSimulator({ rateLimit: { requestsPerSecond: 100 } });
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-airtable-'));
    const db = new AirtableDatabase({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints'), limiter: fastLimiter() });
    return {
      db,
      cleanup: async () => {
        await db.close();
        await sim.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  { maxTextLength: 100_000 },
);

describe('AirtableDatabase', () => {
  let sim: AirtableSimulator;
  let dir: string;
  const open: AirtableDatabase[] = [];

  const start = async (options: AirtableSimulatorOptions = {}) => {
    sim = await startAirtableSimulator({ rateLimit: { requestsPerSecond: 100 }, ...options });
  };
  const database = (options: Partial<AirtableDatabaseOptions> = {}) => {
    const db = new AirtableDatabase({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints'), limiter: fastLimiter(), ...options });
    open.push(db);
    return db;
  };
  const patches = () => sim.requests.entries.filter((r) => r.method === 'PATCH');
  const lists = () => sim.requests.entries.filter((r) => r.path.endsWith('/listRecords'));

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'conn-airtable-'));
  });

  afterEach(async () => {
    for (const db of open.splice(0)) await db.close();
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the versions of up to 100 ids per request and upserts 10 records per request, with typecast', async () => {
    await start();
    const db = database();
    await db.migrate();
    sim.requests.clear();
    const tasks = Array.from({ length: 120 }, (_, i) => makeTask({ id: String(5000 + i), status: i === 7 ? 'on hold' : 'new' }));
    expect(await db.upsertTasks(tasks)).toEqual({ written: 120, stale: 0 });
    expect(patches()).toHaveLength(12);
    expect(lists()).toHaveLength(2);
    expect(sim.tables.records('Tasks')).toHaveLength(120);
    // typecast created the new status option.
    const status = sim.tables.schema()[0]?.fields.find((f) => f.name === 'Status');
    expect((status?.options?.choices as Array<{ name: string }>).map((c) => c.name)).toContain('on hold');
    expect(await db.counts()).toEqual({ tasks: 120, emails: 0, attachments: 0 });
  });

  const fifty = (version: number, title = `v${version}`) =>
    Array.from({ length: 50 }, (_, i) => makeTask({ id: String(7000 + i), title, updatedAt: new Date(Date.parse('2026-11-10T00:00:00.000Z') + version * 60_000) }));
  const titles = () => new Set(sim.tables.records('Tasks').map((r) => r.fields.Title));

  it('a batch of 50 records never seen costs 1 read and 5 writes; the same ids again cost no read', async () => {
    await start();
    const db = database();
    await db.migrate();
    sim.requests.clear();
    expect(await db.apply({ ...noChanges(), tasks: fifty(1) })).toEqual({ written: 50, stale: 0 });
    expect([lists().length, patches().length]).toEqual([1, 5]);

    sim.requests.clear();
    expect(await db.apply({ ...noChanges(), tasks: fifty(2) })).toEqual({ written: 50, stale: 0 });
    expect([lists().length, patches().length]).toEqual([0, 5]);
    expect(titles()).toEqual(new Set(['v2']));

    // Known versions also decide staleness without a read: an older replay writes nothing at all.
    sim.requests.clear();
    expect(await db.apply({ ...noChanges(), tasks: fifty(1, 'replayed') })).toEqual({ written: 0, stale: 50 });
    expect(sim.requests.entries).toEqual([]);
    expect(titles()).toEqual(new Set(['v2']));
  });

  it('reads the ids of one apply’s upserts and deletions together, one read per table', async () => {
    await start();
    const db = database();
    await db.migrate();
    await db.apply({ ...noChanges(), tasks: [makeTask({ id: '1' })], emails: [makeEmail({ id: 'm-1' })] });
    const other = database();
    sim.requests.clear();
    const at = new Date('2026-11-20T00:00:00.000Z');
    const result = await other.apply({
      ...noChanges(),
      tasks: [makeTask({ id: '2' })],
      deletedTasks: [{ id: '1', at }, { id: '3', at }],
      emails: [makeEmail({ id: 'm-2' })],
      deletedEmails: [{ id: 'm-1', at }],
    });
    expect(result).toEqual({ written: 5, stale: 0 });
    expect(lists()).toHaveLength(2);
    expect(await other.getTask('1')).toMatchObject({ deleted: true, deletedAt: at });
    expect(await other.getTask('3')).toMatchObject({ deleted: true, title: null });
    expect(await other.getEmail('m-1')).toMatchObject({ deleted: true, deletedAt: at });
  });

  it('a new AirtableDatabase (a restart) knows nothing: it reads again and still skips stale writes', async () => {
    await start();
    const first = database();
    await first.migrate();
    await first.apply({ ...noChanges(), tasks: fifty(5) });

    const restarted = database();
    await restarted.migrate();
    sim.requests.clear();
    expect(await restarted.apply({ ...noChanges(), tasks: fifty(4, 'older') })).toEqual({ written: 0, stale: 50 });
    expect([lists().length, patches().length]).toEqual([1, 0]);
    expect(titles()).toEqual(new Set(['v5']));

    sim.requests.clear();
    expect(await restarted.apply({ ...noChanges(), tasks: fifty(6) })).toEqual({ written: 50, stale: 0 });
    expect([lists().length, patches().length]).toEqual([0, 5]);
    expect(titles()).toEqual(new Set(['v6']));
  });

  it('forgets the versions of a write whose answer was lost, so a write that did land is not overwritten by an older one', async () => {
    await start();
    let loseNextPatchAnswer = false;
    const lossy: typeof fetch = async (input, init) => {
      const response = await globalThis.fetch(input, init);
      if (init?.method === 'PATCH' && loseNextPatchAnswer) {
        loseNextPatchAnswer = false;
        await response.arrayBuffer();
        throw new TypeError('fetch failed (the connection dropped after Airtable applied the write)');
      }
      return response;
    };
    const db = database({ fetch: lossy, maxAttempts: 1 });
    await db.migrate();
    const v1 = makeTask({ title: 'v1' });
    await db.upsertTask(v1);

    loseNextPatchAnswer = true;
    await expect(db.upsertTask(makeTask({ title: 'v3', updatedAt: later(v1.updatedAt, 30) }))).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE' });
    expect(titles()).toEqual(new Set(['v3']));

    // v2 is newer than what was cached before the failed write, older than what Airtable holds.
    sim.requests.clear();
    expect(await db.upsertTask(makeTask({ title: 'v2', updatedAt: later(v1.updatedAt, 20) }))).toEqual({ written: 0, stale: 1 });
    expect([lists().length, patches().length]).toEqual([1, 0]);
    expect(titles()).toEqual(new Set(['v3']));
  });

  it('remembers at most versionCacheSize versions, the least recently used going first', async () => {
    await start();
    const readIds: string[][] = [];
    const recording: typeof fetch = async (input, init) => {
      if (String(input).endsWith('/listRecords')) {
        const formula = (JSON.parse(String(init?.body)) as { filterByFormula: string }).filterByFormula;
        readIds.push([...formula.matchAll(/='([^']*)'/g)].map((m) => m[1] as string));
      }
      return globalThis.fetch(input, init);
    };
    const db = database({ fetch: recording, versionCacheSize: 30 });
    await db.migrate();
    await db.apply({ ...noChanges(), tasks: fifty(1) });
    readIds.length = 0;
    sim.requests.clear();
    expect(await db.apply({ ...noChanges(), tasks: fifty(2) })).toEqual({ written: 50, stale: 0 });
    expect(readIds).toEqual([Array.from({ length: 20 }, (_, i) => String(7000 + i))]);
    expect(patches()).toHaveLength(5);

    const uncached = database({ versionCacheSize: 0 });
    sim.requests.clear();
    await uncached.apply({ ...noChanges(), tasks: fifty(3) });
    await uncached.apply({ ...noChanges(), tasks: fifty(4) });
    expect([lists().length, patches().length]).toEqual([2, 10]);
  });

  it('stays within 5 requests per second per base, shared by two databases in the process, at Airtable’s real limit', async () => {
    await start({ rateLimit: { requestsPerSecond: 5 } });
    // The default limiter: the process-wide one of this base.
    const first = database({ limiter: undefined });
    const second = database({ limiter: undefined });
    await first.migrate();
    const batch = (offset: number) => Array.from({ length: 20 }, (_, i) => makeTask({ id: String(offset + i) }));
    const results = await Promise.all([first.upsertTasks(batch(0)), second.upsertTasks(batch(100))]);
    expect(results).toEqual([
      { written: 20, stale: 0 },
      { written: 20, stale: 0 },
    ]);
    expect(sim.requests.entries.filter((r) => r.status === 429)).toEqual([]);
    expect(sim.requests.maxInWindow(1_000)).toBeLessThanOrEqual(5);
    expect(sim.tables.records('Tasks')).toHaveLength(40);
  });

  it('after a 429 pauses every request to the base for the lockout, then succeeds', async () => {
    await start({ rateLimit: { requestsPerSecond: 2, lockoutMs: 1_500 } });
    const limiter = new RateLimiter({ windows: [{ limit: 100, intervalMs: 1_000 }] });
    const first = database({ limiter, rateLimitPauseMs: 1_500 });
    const second = database({ limiter, rateLimitPauseMs: 1_500 });
    await first.migrate();
    sim.rateLimit.unlock();
    sim.requests.clear();
    const results = await Promise.all([first.upsertTasks([makeTask({ id: '1' }), makeTask({ id: '2' })]), second.upsertTasks([makeTask({ id: '3' })])]);
    expect(results.map((r) => r.written)).toEqual([2, 1]);
    // Requests already in flight when the first 429 came back may be refused too (two writers: at
    // most two); after that, nobody sends anything to the base until the lockout is over.
    const refused = sim.requests.entries.filter((r) => r.status === 429);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeLessThanOrEqual(2);
    const at = Math.min(...refused.map((r) => r.startedAt));
    expect(Math.max(...refused.map((r) => r.startedAt)) - at).toBeLessThan(200);
    const during = sim.requests.entries.filter((r) => r.status !== 429 && r.startedAt > at && r.startedAt < at + 1_450);
    expect(during).toEqual([]);
    expect(sim.tables.records('Tasks')).toHaveLength(3);
  });

  it('retries a 5xx answer and then writes', async () => {
    const draws = [0.1];
    await start({ random: () => draws.shift() ?? 0.99 });
    const db = database();
    await db.migrate();
    sim.requests.clear();
    sim.faults.set({ errorRate: 0.5 });
    expect(await db.upsertTask(makeTask())).toEqual({ written: 1, stale: 0 });
    expect(sim.requests.entries.map((r) => r.status)).toEqual([503, 200, 200]);
    expect((await db.getTask('1001'))?.title).toBe('Write the quarterly report');
  });

  // An operator's change to the token, base or schema is not the record's fault: the worker holds its
  // batch (CONN_ERR_DB_UNAVAILABLE) until it is fixed, as for PostgreSQL's SQLSTATE classes 28 and 42.
  it("names a missing field and the command that adds it", async () => {
    await start();
    sim.tables.create({ name: 'Tasks', fields: TASKS_TABLE.fields.filter((f) => f.name !== 'Due Date') });
    const db = database();
    await expect(db.upsertTask(makeTask())).rejects.toMatchObject({
      code: 'CONN_ERR_DB_UNAVAILABLE',
      retryable: true,
      message: "Airtable says field 'Due Date' does not exist in table Tasks: run `npm run airtable-setup`",
    });
  });

  it('says which base, scope or token is wrong on 403 and 401', async () => {
    await start();
    await database().migrate();
    sim.addBase('appELSEWHERE00001');
    sim.addToken({ token: 'patELSEWHERE', bases: ['appELSEWHERE00001'] });
    const blind = database({ token: 'patELSEWHERE' });
    await expect(blind.upsertTask(makeTask())).rejects.toMatchObject({
      code: 'CONN_ERR_DB_UNAVAILABLE',
      status: 403,
      message: expect.stringContaining(`the token cannot see base ${sim.baseId} or lacks scope data.records:read`),
    });
    sim.addToken({ token: 'patREADONLY', scopes: ['data.records:read'] });
    await expect(database({ token: 'patREADONLY' }).upsertTask(makeTask())).rejects.toMatchObject({ message: expect.stringContaining('lacks scope data.records:write') });
    await expect(database({ token: 'patWRONG' }).upsertTask(makeTask())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', message: expect.stringContaining('check AIRTABLE_TOKEN') });
    expect(await database({ token: 'patWRONG' }).health()).toMatchObject({ ok: false, backend: 'airtable', detail: expect.stringContaining('401') });
  });

  it('reports an unreachable Airtable as retryable and unhealthy', async () => {
    await start();
    const db = database({ maxAttempts: 1 });
    await db.migrate();
    await sim.stop();
    await expect(db.upsertTask(makeTask())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true });
    expect(await db.health()).toMatchObject({ ok: false, detail: expect.stringContaining('unavailable') });
  });

  it('cuts text over 100,000 characters with a visible marker', async () => {
    await start();
    const db = database();
    await db.migrate();
    const long = 'a'.repeat(150_000);
    await db.upsertTask(makeTask({ description: long, raw: { big: long } }));
    const stored = sim.tables.records('Tasks')[0]?.fields as { Description: string; Raw: string };
    expect(stored.Description).toHaveLength(100_000);
    const omitted = 150_000 - stored.Description.indexOf('…');
    expect(stored.Description.endsWith(`… [truncated by connector: ${omitted} characters omitted]`)).toBe(true);
    expect(stored.Raw.length).toBeLessThanOrEqual(100_000);
    const task = await db.getTask('1001');
    expect(task?.description?.startsWith('aaaa')).toBe(true);
    expect(task?.raw).toBe(stored.Raw);
  });

  it('writes attachments by URL once, and again only when the files change', async () => {
    await start();
    const db = database();
    await db.migrate();
    const email = makeEmail();
    await db.upsertEmail(email);
    expect(sim.tables.attachments('Emails')).toEqual([{ recordId: expect.any(String), field: 'Attachments', id: expect.stringMatching(/^att/), url: 'https://files.example/att-1', filename: 'invoice.pdf' }]);
    const firstId = sim.tables.attachments('Emails')[0]?.id;

    await db.upsertEmail(makeEmail({ subject: 'Invoice 42 (updated)', updatedAt: later(email.updatedAt, 10) }));
    expect(sim.tables.attachments('Emails').map((a) => a.id)).toEqual([firstId]);

    const more = [...email.attachments, { id: 'att-2', emailId: email.id, filename: 'b.png', mediaType: 'image/png', size: 9, url: 'https://files.example/att-2', storedPath: null, sha256: null }];
    await db.upsertEmail(makeEmail({ updatedAt: later(email.updatedAt, 20), attachments: more }));
    expect(sim.tables.attachments('Emails').map((a) => a.url)).toEqual(['https://files.example/att-1', 'https://files.example/att-2']);
    expect((await db.getEmail(email.id))?.attachments).toEqual(more);
    expect((await db.counts()).attachments).toBe(2);
  });

  it('finds records whose key holds quotes and backslashes', async () => {
    await start();
    const db = database();
    await db.migrate();
    const odd = makeTask({ id: "it's \\ odd" });
    expect(await db.upsertTask(odd)).toEqual({ written: 1, stale: 0 });
    expect(await db.upsertTask(makeTask({ id: odd.id, title: 'older', updatedAt: later(odd.updatedAt, -1) }))).toEqual({ written: 0, stale: 1 });
    expect(await db.getTask(odd.id)).toEqual(odd);
    expect(sim.tables.records('Tasks')).toHaveLength(1);
  });

  it('keeps checkpoints in data/checkpoints/{source}.json, written atomically', async () => {
    await start();
    const db = database();
    await db.setCheckpoint({ source: 'missive', lastEventTime: new Date('2026-11-01T00:00:00.000Z'), lastCursor: 'c-1', updatedAt: null });
    const file = path.join(dir, 'checkpoints', 'missive.json');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ source: 'missive', last_event_time: '2026-11-01T00:00:00.000Z', last_cursor: 'c-1', updated_at: expect.any(String) });
    expect(readdirSync(path.join(dir, 'checkpoints'))).toEqual(['missive.json']);
    expect(existsSync(`${file}.tmp`)).toBe(false);
    expect(sim.requests.entries).toEqual([]);
  });
});
