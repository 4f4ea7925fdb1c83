/**
 * `npm run airtable-setup` (airtableSetup / ensureAirtableSchema) and AirtableDatabase.migrate() on the
 * Airtable simulator: idempotent, additive, safe to run twice at once, and clear about permissions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AirtableClient } from '../../src/db/airtable/airtable-client.ts';
import { AirtableDatabase } from '../../src/db/airtable/airtable-database.ts';
import { EMAILS_TABLE, TASKS_TABLE } from '../../src/db/airtable/schema.ts';
import { airtableSetup, ensureAirtableSchema } from '../../src/db/airtable/setup.ts';
import { RateLimiter } from '../../src/http/rate-limiter.ts';
import { createLogger } from '../../src/log.ts';
import { startAirtableSimulator, type AirtableSimulator } from '../../simulators/airtable/index.ts';
import { makeTask } from '../fixtures/records.ts';
import { expectMergedSplitRows, seedSplitRows } from './split-rows.ts';

let sim: AirtableSimulator;
let dir: string;
let lines: Array<{ level: string; msg: string }>;

const log = () => createLogger({ level: 'info', console: false, destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
const limiter = () => new RateLimiter({ windows: [{ limit: 50, intervalMs: 1_000 }] });
const settings = (token = sim.token) => ({ AIRTABLE_TOKEN: token, AIRTABLE_BASE_ID: sim.baseId, AIRTABLE_BASE_URL: sim.url });

beforeEach(async () => {
  sim = await startAirtableSimulator({ rateLimit: { requestsPerSecond: 100 } });
  dir = mkdtempSync(path.join(tmpdir(), 'conn-airtable-setup-'));
  lines = [];
});

afterEach(async () => {
  await sim.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('airtableSetup', () => {
  it('creates both tables with every field, the key first, and a second run changes nothing', async () => {
    const report = await airtableSetup(settings(), { log: log(), limiter: limiter() });
    expect(report.createdTables).toEqual(['Tasks', 'Emails']);
    expect(report.problems).toEqual([]);
    const schema = sim.tables.schema();
    expect(schema.map((t) => t.name)).toEqual(['Tasks', 'Emails']);
    for (const [table, def] of [[schema[0], TASKS_TABLE], [schema[1], EMAILS_TABLE]] as const) {
      expect(table?.fields.map((f) => [f.name, f.type])).toEqual(def.fields.map((f) => [f.name, f.type]));
      expect(table?.fields.find((f) => f.id === table.primaryFieldId)?.name).toBe(def.key);
    }
    expect(report.tableIds).toEqual({ Tasks: schema[0]?.id, Emails: schema[1]?.id });
    expect(lines.some((l) => l.msg === 'created Airtable table Tasks')).toBe(true);

    sim.requests.clear();
    const again = await airtableSetup(settings(), { log: log(), limiter: limiter() });
    expect(again).toMatchObject({ createdTables: [], createdFields: [], problems: [] });
    // The schema read, then one list request per table for the duplicate-id merge (empty tables).
    expect(sim.requests.entries.map((r) => `${r.method} ${r.status}`)).toEqual(['GET 200', 'POST 200', 'POST 200']);
    expect(lines.at(-1)?.msg).toBe(`Airtable base ${sim.baseId} already has every table and field`);
  });

  it('merges records stored under other spellings of one id into the canonical id, keeping the newest version', async () => {
    await airtableSetup(settings(), { log: log(), limiter: limiter() });
    const at = (hour: number) => `2026-11-04T${String(hour).padStart(2, '0')}:00:00.000Z`;
    sim.tables.insert('Tasks', { 'Task ID': '4343', Title: 'ten', 'Updated At': at(10) });
    sim.tables.insert('Tasks', { 'Task ID': '04343', Title: 'twelve', 'Updated At': at(12) });
    sim.tables.insert('Tasks', { 'Task ID': ' 004343', Title: 'eleven', 'Updated At': at(11) });
    sim.tables.insert('Tasks', { 'Task ID': '0099', Title: 'only spelling', 'Updated At': at(10) });
    sim.tables.insert('Tasks', { 'Task ID': '12', Title: 'untouched', 'Updated At': at(10) });
    const uuid = '0f3a6c2e-1b7d-4c88-9e2f-5a1b2c3d4e5f';
    sim.tables.insert('Emails', { 'Email ID': uuid, Subject: 'older', 'Updated At': at(10) });
    sim.tables.insert('Emails', { 'Email ID': uuid.toUpperCase(), Subject: 'newer', 'Updated At': at(11), 'Conversation ID': 'conv-1' });

    const report = await airtableSetup(settings(), { log: log(), limiter: limiter() });
    // Deleted: ten, eleven, the older email; renamed: 04343, 0099, the upper-case email.
    expect(report.mergedRecords).toBe(6);
    const tasks = sim.tables.records('Tasks').map((r) => [r.fields['Task ID'], r.fields.Title]);
    expect(tasks.sort()).toEqual([['12', 'untouched'], ['4343', 'twelve'], ['99', 'only spelling']]);
    expect(sim.tables.records('Emails').map((r) => [r.fields['Email ID'], r.fields.Subject])).toEqual([[uuid, 'newer']]);

    // The backend reads them under their canonical ids, and a third run has nothing to merge.
    const db = new AirtableDatabase({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints'), limiter: limiter() });
    await db.migrate();
    expect(await db.getTask('4343')).toMatchObject({ title: 'twelve', updatedAt: new Date(at(12)) });
    expect(await db.upsertTask(makeTask({ id: '4343', updatedAt: new Date(at(11)) }))).toEqual({ written: 0, stale: 1 });
    expect((await airtableSetup(settings(), { log: log(), limiter: limiter() })).mergedRecords).toBe(0);
  });

  it('merges a tombstone into the full record it deletes and keeps every attachment of the merged records', async () => {
    await airtableSetup(settings(), { log: log(), limiter: limiter() });
    const db = new AirtableDatabase({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints'), limiter: limiter() });
    await db.migrate();
    await seedSplitRows(db);

    await airtableSetup(settings(), { log: log(), limiter: limiter() });
    const fresh = new AirtableDatabase({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints-2'), limiter: limiter() });
    await fresh.migrate();
    await expectMergedSplitRows(fresh);
    expect((await airtableSetup(settings(), { log: log(), limiter: limiter() })).mergedRecords).toBe(0);
  });

  it('adds missing fields, never deletes, and reports fields with another type or spelling', async () => {
    sim.tables.create({
      name: 'Tasks',
      fields: [
        { name: 'Task ID', type: 'singleLineText' },
        { name: 'Title', type: 'multilineText' },
        { name: 'due date', type: 'date', options: { dateFormat: { name: 'iso' } } },
        { name: 'My Notes', type: 'multilineText' },
      ],
    });
    const report = await airtableSetup(settings(), { log: log(), limiter: limiter() });
    expect(report.createdTables).toEqual(['Emails']);
    const tasks = sim.tables.schema()[0];
    expect(tasks?.fields.map((f) => f.name)).toContain('My Notes');
    expect(tasks?.fields.filter((f) => f.name.toLowerCase() === 'due date').map((f) => f.name)).toEqual(['due date']);
    expect(report.createdFields).toHaveLength(TASKS_TABLE.fields.length - 3);
    expect(report.problems).toEqual([
      "field 'Title' in table Tasks is multilineText; the connector writes singleLineText",
      "field 'due date' in table Tasks should be named 'Due Date' (the API matches names exactly)",
    ]);
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toHaveLength(2);
  });

  it('explains a token without schema.bases:write, and creates nothing', async () => {
    sim.addToken({ token: 'patNOSCHEMA', scopes: ['data.records:read', 'data.records:write', 'schema.bases:read'] });
    await expect(airtableSetup(settings('patNOSCHEMA'), { log: log(), limiter: limiter() })).rejects.toMatchObject({
      code: 'CONN_ERR_DB_REJECTED',
      message: expect.stringContaining('the token needs scope schema.bases:write and the creator role'),
    });
    expect(sim.tables.schema()).toEqual([]);
  });

  it('two runs at once end with one table of each name', async () => {
    const client = () => new AirtableClient({ token: sim.token, baseId: sim.baseId, baseUrl: sim.url, limiter: limiter() });
    sim.faults.set({ latencyMs: 30 });
    const reports = await Promise.all([ensureAirtableSchema(client(), { log: log() }), ensureAirtableSchema(client(), { log: log() })]);
    expect(sim.tables.schema().map((t) => t.name)).toEqual(['Tasks', 'Emails']);
    // The race happened: one of the two creates was refused as a duplicate, and that run went on.
    expect(sim.requests.entries.filter((r) => r.status === 422).length).toBeGreaterThan(0);
    expect(reports[0]?.tableIds).toEqual(reports[1]?.tableIds);
    expect(sim.tables.schema()[0]?.fields).toHaveLength(TASKS_TABLE.fields.length);
  });

  it('needs AIRTABLE_TOKEN and AIRTABLE_BASE_ID', async () => {
    await expect(airtableSetup({ AIRTABLE_TOKEN: undefined, AIRTABLE_BASE_ID: sim.baseId, AIRTABLE_BASE_URL: sim.url }, { log: log() })).rejects.toMatchObject({ code: 'CONN_ERR_CONFIG_INVALID', message: expect.stringContaining('AIRTABLE_TOKEN') });
  });
});

describe('AirtableDatabase.migrate', () => {
  const database = (token: string) => new AirtableDatabase({ token, baseId: sim.baseId, baseUrl: sim.url, checkpointDir: path.join(dir, 'checkpoints'), limiter: limiter(), log: log() });

  it('creates the tables itself when the token may, then addresses them by id', async () => {
    const db = database(sim.token);
    await db.migrate();
    await db.upsertTask(makeTask());
    const tableId = sim.tables.schema()[0]?.id as string;
    expect(sim.requests.entries.filter((r) => r.method === 'PATCH').map((r) => r.path)).toEqual([`/v0/${sim.baseId}/${tableId}`]);
  });

  it('with a token that cannot read the schema, checks the tables through the records API', async () => {
    await airtableSetup(settings(), { log: log(), limiter: limiter() });
    sim.addToken({ token: 'patDATAONLY', scopes: ['data.records:read', 'data.records:write'] });
    const db = database('patDATAONLY');
    await db.migrate();
    expect(lines.some((l) => l.level === 'warn' && l.msg.includes('schema.bases:read'))).toBe(true);
    expect(await db.upsertTask(makeTask())).toEqual({ written: 1, stale: 0 });
  });

  it('with such a token and a field missing, names the field and the command', async () => {
    sim.tables.create({ name: 'Tasks', fields: TASKS_TABLE.fields.filter((f) => f.name !== 'Synced At') });
    sim.tables.create({ name: 'Emails', fields: EMAILS_TABLE.fields });
    sim.addToken({ token: 'patDATAONLY', scopes: ['data.records:read', 'data.records:write'] });
    await expect(database('patDATAONLY').migrate()).rejects.toMatchObject({
      code: 'CONN_ERR_DB_UNAVAILABLE',
      message: "Airtable says field 'Synced At' does not exist in table Tasks: run `npm run airtable-setup`",
    });
  });
});
