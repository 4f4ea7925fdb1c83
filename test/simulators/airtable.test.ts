/**
 * Contract tests of the Airtable simulator: status codes, body shapes and behaviour as stack.md §1
 * describes the real API. Rate limits and faults are in airtable-limits.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MODEL_NOT_FOUND_MESSAGE, startAirtableSimulator, type AirtableSimulator } from '../../simulators/airtable/index.ts';
import { ManualClock } from '../../simulators/common.ts';
import { call, createTasksTable } from './airtable-helpers.ts';

let sim: AirtableSimulator;
let clock: ManualClock;
let records: string;

beforeEach(async () => {
  clock = new ManualClock(Date.parse('2026-11-20T10:00:00.000Z'));
  sim = await startAirtableSimulator({ clock, rateLimit: { enabled: false }, iteratorTtlMs: 60_000 });
  await createTasksTable(sim);
  records = `/v0/${sim.baseId}/Tasks`;
});

afterEach(async () => {
  await sim.stop();
});

const upsert = (recordsBody: unknown[], extra: Record<string, unknown> = {}) =>
  call(sim, 'PATCH', records, { body: { performUpsert: { fieldsToMergeOn: ['Task ID'] }, records: recordsBody, ...extra } });

describe('authentication and access', () => {
  it('answers 401 AUTHENTICATION_REQUIRED without a token or with an unknown one', async () => {
    for (const token of [null, 'patNOPE.123']) {
      const answer = await call(sim, 'GET', records, { token });
      expect(answer.status).toBe(401);
      expect(answer.body).toEqual({ error: { type: 'AUTHENTICATION_REQUIRED', message: 'Authentication required' } });
    }
  });

  it('answers 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND for an unknown base, an unknown table, and a base the token was not granted', async () => {
    const expected = { error: { type: 'INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND', message: MODEL_NOT_FOUND_MESSAGE } };
    expect(await call(sim, 'GET', '/v0/appNOSUCHBASE0001/Tasks')).toMatchObject({ status: 403, body: expected });
    expect(await call(sim, 'GET', `/v0/${sim.baseId}/NoSuchTable`)).toMatchObject({ status: 403, body: expected });
    sim.addBase('appOTHERBASE00001');
    sim.addToken({ token: 'patOTHER', bases: ['appOTHERBASE00001'] });
    expect(await call(sim, 'GET', records, { token: 'patOTHER' })).toMatchObject({ status: 403, body: expected });
    expect((await call(sim, 'GET', `/v0/meta/bases`, { token: 'patOTHER' })).body).toEqual({ bases: [{ id: 'appOTHERBASE00001', name: 'appOTHERBASE00001', permissionLevel: 'create' }] });
  });

  it('checks scopes per route: a token without schema.bases:write can read the schema and write records but not create tables', async () => {
    sim.addToken({ token: 'patNOSCHEMA', scopes: ['data.records:read', 'data.records:write', 'schema.bases:read'] });
    const create = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables`, { token: 'patNOSCHEMA', body: { name: 'Other', fields: [{ name: 'Name', type: 'singleLineText' }] } });
    expect(create.status).toBe(403);
    expect(create.body.error.type).toBe('INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND');
    expect((await call(sim, 'GET', `/v0/meta/bases/${sim.baseId}/tables`, { token: 'patNOSCHEMA' })).status).toBe(200);
    expect((await call(sim, 'POST', records, { token: 'patNOSCHEMA', body: { fields: { 'Task ID': '1' } } })).status).toBe(200);

    sim.addToken({ token: 'patREADONLY', scopes: ['data.records:read'] });
    expect((await call(sim, 'GET', records, { token: 'patREADONLY' })).status).toBe(200);
    expect((await call(sim, 'POST', `${records}/listRecords`, { token: 'patREADONLY', body: {} })).status).toBe(200);
    expect((await call(sim, 'POST', records, { token: 'patREADONLY', body: { fields: { 'Task ID': '1' } } })).status).toBe(403);
    expect((await call(sim, 'GET', '/v0/meta/whoami', { token: 'patREADONLY' })).body).toEqual({ id: expect.stringMatching(/^usr/), scopes: ['data.records:read'] });
  });

  it('answers unknown routes with 404 and a bare-string error', async () => {
    expect(await call(sim, 'GET', '/v1/nothing')).toMatchObject({ status: 404, body: { error: 'NOT_FOUND' } });
  });
});

describe('metadata API', () => {
  it('creates a table whose first field is primary, with ids, options and a grid view', async () => {
    const answer = await call(sim, 'GET', `/v0/meta/bases/${sim.baseId}/tables`);
    expect(answer.status).toBe(200);
    const [table] = answer.body.tables;
    expect(table).toMatchObject({ id: expect.stringMatching(/^tbl[A-Za-z0-9]{14}$/), name: 'Tasks', views: [{ id: expect.stringMatching(/^viw/), name: 'Grid view', type: 'grid' }] });
    expect(table.primaryFieldId).toBe(table.fields[0].id);
    expect(table.fields[0]).toEqual({ id: expect.stringMatching(/^fld[A-Za-z0-9]{14}$/), name: 'Task ID', type: 'singleLineText' });
    expect(table.fields.find((f: { name: string }) => f.name === 'Status').options.choices).toEqual([
      { id: expect.stringMatching(/^sel/), name: 'new' },
      { id: expect.stringMatching(/^sel/), name: 'active' },
    ]);
  });

  it('refuses duplicate table and field names case-insensitively', async () => {
    const table = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables`, { body: { name: 'tasks', fields: [{ name: 'X', type: 'singleLineText' }] } });
    expect(table).toMatchObject({ status: 422, body: { error: { type: 'DUPLICATE_TABLE_NAME' } } });
    const fields = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables`, { body: { name: 'Other', fields: [{ name: 'A', type: 'singleLineText' }, { name: 'a', type: 'multilineText' }] } });
    expect(fields).toMatchObject({ status: 422, body: { error: { type: 'DUPLICATE_OR_EMPTY_FIELD_NAME' } } });
    const tableId = sim.tables.schema()[0]?.id as string;
    const field = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables/${tableId}/fields`, { body: { name: 'task id', type: 'singleLineText' } });
    expect(field).toMatchObject({ status: 422, body: { error: { type: 'DUPLICATE_OR_EMPTY_FIELD_NAME' } } });
    expect(sim.tables.schema().map((t) => t.name)).toEqual(['Tasks']);
  });

  it('adds a field by table id and returns the field model; a table name in that path is not accepted', async () => {
    const tableId = sim.tables.schema()[0]?.id as string;
    const added = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables/${tableId}/fields`, { body: { name: 'Priority', type: 'singleSelect', options: { choices: [{ name: 'high' }] } } });
    expect(added.status).toBe(200);
    expect(added.body).toEqual({ id: expect.stringMatching(/^fld/), name: 'Priority', type: 'singleSelect', options: { choices: [{ id: expect.stringMatching(/^sel/), name: 'high' }] } });
    expect(sim.tables.schema()[0]?.fields.map((f) => f.name)).toContain('Priority');
    const byName = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables/Tasks/fields`, { body: { name: 'Other', type: 'singleLineText' } });
    expect(byName.status).toBe(403);
  });

  it('requires the documented options, refuses computed types and non-primary types in first place', async () => {
    const tableId = sim.tables.schema()[0]?.id as string;
    const addField = (body: unknown) => call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables/${tableId}/fields`, { body });
    expect(await addField({ name: 'When', type: 'dateTime' })).toMatchObject({ status: 422, body: { error: { type: 'INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE' } } });
    expect(await addField({ name: 'When', type: 'dateTime', options: { dateFormat: { name: 'iso' }, timeFormat: { name: '24hour' } } })).toMatchObject({ status: 422 });
    expect(await addField({ name: 'N', type: 'number' })).toMatchObject({ status: 422, body: { error: { type: 'INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE' } } });
    expect(await addField({ name: 'Box', type: 'checkbox' })).toMatchObject({ status: 422 });
    expect(await addField({ name: 'Formula', type: 'formula', options: { formula: '1' } })).toMatchObject({ status: 422, body: { error: { type: 'UNSUPPORTED_FIELD_TYPE_FOR_CREATE' } } });
    const primaryCheckbox = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables`, { body: { name: 'Flags', fields: [{ name: 'Flag', type: 'checkbox', options: { icon: 'check', color: 'greenBright' } }] } });
    expect(primaryCheckbox).toMatchObject({ status: 422, body: { error: { type: 'INVALID_PRIMARY_FIELD_TYPE' } } });
    expect(sim.tables.schema()[0]?.fields).toHaveLength(11);
  });
});

describe('creating and reading records', () => {
  it('creates up to 10 records, leaves empty fields out of answers, and refuses 11', async () => {
    const ten = Array.from({ length: 10 }, (_, i) => ({ fields: { 'Task ID': `t${i}`, Title: '', Done: false, Tags: [] } }));
    const created = await call(sim, 'POST', records, { body: { records: ten } });
    expect(created.status).toBe(200);
    expect(created.body.records).toHaveLength(10);
    expect(created.body.records[0]).toEqual({ id: expect.stringMatching(/^rec[A-Za-z0-9]{14}$/), createdTime: '2026-11-20T10:00:00.000Z', fields: { 'Task ID': 't0' } });

    const eleven = await call(sim, 'POST', records, { body: { records: [...ten, { fields: { 'Task ID': 'x' } }] } });
    expect(eleven.status).toBe(422);
    expect(eleven.body).toEqual({ error: { type: 'INVALID_RECORDS', message: 'A maximum of 10 records can be created per request but you have provided 11.' } });
    expect(sim.tables.records('Tasks')).toHaveLength(10);
  });

  it('creates one record from {fields} and gets it by id; an unknown id is 404 NOT_FOUND as a bare string', async () => {
    const created = await call(sim, 'POST', records, { body: { fields: { 'Task ID': '1', Count: 3, Due: '2026-12-01', 'Updated At': '2026-11-20T09:00:00+01:00' } } });
    expect(created.status).toBe(200);
    expect(created.body.fields).toEqual({ 'Task ID': '1', Count: 3, Due: '2026-12-01', 'Updated At': '2026-11-20T08:00:00.000Z' });
    const got = await call(sim, 'GET', `${records}/${created.body.id}`);
    expect(got).toMatchObject({ status: 200, body: created.body });
    expect(await call(sim, 'GET', `${records}/recNOPENOPENOPE00`)).toMatchObject({ status: 404, body: { error: 'NOT_FOUND' } });
  });

  it('refuses unknown fields, wrong value types and values for computed fields, writing nothing', async () => {
    sim.tables.create({ name: 'Audit', fields: [{ name: 'Name', type: 'singleLineText' }, { name: 'Created', type: 'createdTime' }] });
    const unknown = await call(sim, 'POST', records, { body: { records: [{ fields: { 'Task ID': 'ok' } }, { fields: { 'Task ID': '2', 'Due Date': '2026-01-01' } }] } });
    expect(unknown).toMatchObject({ status: 422, body: { error: { type: 'UNKNOWN_FIELD_NAME', message: 'Unknown field name: "Due Date"' } } });

    const text = await call(sim, 'POST', records, { body: { fields: { 'Task ID': '3', Count: 'three' } } });
    expect(text).toMatchObject({ status: 422, body: { error: { type: 'INVALID_VALUE_FOR_COLUMN', message: 'Field "Count" cannot accept the provided value' } } });

    const computed = await call(sim, 'POST', `/v0/${sim.baseId}/Audit`, { body: { fields: { Name: 'a', Created: '2026-01-01T00:00:00Z' } } });
    expect(computed).toMatchObject({ status: 422, body: { error: { type: 'INVALID_VALUE_FOR_COLUMN', message: expect.stringContaining('computed') } } });

    expect(sim.tables.records('Tasks')).toEqual([]);
    expect(sim.tables.records('Audit')).toEqual([]);
  });

  it('shows computed fields worked out by the simulator', async () => {
    sim.tables.create({ name: 'Audit', fields: [{ name: 'Name', type: 'singleLineText' }, { name: 'Created', type: 'createdTime' }, { name: 'N', type: 'autoNumber' }] });
    await call(sim, 'POST', `/v0/${sim.baseId}/Audit`, { body: { records: [{ fields: { Name: 'a' } }, { fields: { Name: 'b' } }] } });
    expect(sim.tables.records('Audit').map((r) => r.fields)).toEqual([
      { Name: 'a', Created: '2026-11-20T10:00:00.000Z', N: 1 },
      { Name: 'b', Created: '2026-11-20T10:00:00.000Z', N: 2 },
    ]);
  });

  it('cuts nothing: text up to 100,000 characters is stored, one more is refused with 422', async () => {
    const exactly = 'é'.repeat(100_000);
    const ok = await call(sim, 'POST', records, { body: { fields: { 'Task ID': 'big', Notes: exactly } } });
    expect(ok.status).toBe(200);
    expect(ok.body.fields.Notes).toHaveLength(100_000);
    const over = await call(sim, 'POST', records, { body: { fields: { 'Task ID': 'bigger', Notes: `${exactly}x` } } });
    expect(over).toMatchObject({ status: 422, body: { error: { type: 'INVALID_VALUE_FOR_COLUMN', message: expect.stringContaining('100000') } } });
  });

  it('refuses a new select option without typecast (INVALID_MULTIPLE_CHOICE_OPTIONS) and creates it with typecast', async () => {
    const refused = await call(sim, 'POST', records, { body: { fields: { 'Task ID': '1', Status: 'blocked' } } });
    expect(refused).toMatchObject({ status: 422, body: { error: { type: 'INVALID_MULTIPLE_CHOICE_OPTIONS', message: 'Insufficient permissions to create new select option ""blocked""' } } });
    const choices = () => (sim.tables.schema()[0]?.fields.find((f) => f.name === 'Status')?.options?.choices as Array<{ name: string }>).map((c) => c.name);
    expect(choices()).toEqual(['new', 'active']);

    const cast = await call(sim, 'POST', records, { body: { typecast: true, fields: { 'Task ID': '1', Status: 'blocked', Tags: 'red, blue', Count: '42', Done: 'true', Title: 7 } } });
    expect(cast.status).toBe(200);
    expect(cast.body.fields).toEqual({ 'Task ID': '1', Status: 'blocked', Tags: ['red', 'blue'], Count: 42, Done: true, Title: '7' });
    expect(choices()).toEqual(['new', 'active', 'blocked']);
  });

  it('records attachments written by URL, shows them with Airtable ids and URLs, and keeps them by id', async () => {
    const created = await call(sim, 'POST', records, { body: { fields: { 'Task ID': '1', Files: [{ url: 'https://files.example/a/report.pdf' }, { url: 'https://files.example/b', filename: 'b.png' }] } } });
    expect(created.status).toBe(200);
    const files = created.body.fields.Files as Array<{ id: string; url: string; filename: string }>;
    expect(files).toEqual([
      { id: expect.stringMatching(/^att/), url: expect.stringMatching(/^https:\/\/v5\.airtableusercontent\.com\//), filename: 'report.pdf' },
      { id: expect.stringMatching(/^att/), url: expect.any(String), filename: 'b.png' },
    ]);
    expect(sim.tables.attachments('Tasks').map((a) => a.url)).toEqual(['https://files.example/a/report.pdf', 'https://files.example/b']);

    const kept = await call(sim, 'PATCH', `${records}/${created.body.id}`, { body: { fields: { Files: [{ id: files[1]?.id }] } } });
    expect(kept.body.fields.Files).toEqual([files[1]]);
    const bad = await call(sim, 'PATCH', `${records}/${created.body.id}`, { body: { fields: { Files: [{ filename: 'no-url.txt' }] } } });
    expect(bad).toMatchObject({ status: 422, body: { error: { type: 'INVALID_VALUE_FOR_COLUMN' } } });
  });

  it('answers 400 to a body that is not JSON', async () => {
    expect(await call(sim, 'POST', records, { raw: '{"fields":' })).toMatchObject({ status: 400, body: { error: { type: 'INVALID_REQUEST_BODY' } } });
  });
});

describe('updating and upserting', () => {
  it('upsert creates on no match and updates on one match, saying which in createdRecords/updatedRecords', async () => {
    const first = await upsert([{ fields: { 'Task ID': '1', Title: 'one' } }, { fields: { 'Task ID': '2', Title: 'two' } }], { typecast: true });
    expect(first.status).toBe(200);
    expect(first.body.createdRecords).toEqual(first.body.records.map((r: { id: string }) => r.id));
    expect(first.body.updatedRecords).toEqual([]);

    clock.advance(60_000);
    const second = await upsert([{ fields: { 'Task ID': '2', Title: 'two again' } }, { fields: { 'Task ID': '3', Title: 'three' } }]);
    expect(second.status).toBe(200);
    expect(second.body.updatedRecords).toEqual([first.body.records[1].id]);
    expect(second.body.createdRecords).toEqual([second.body.records[1].id]);
    expect(second.body.records[0]).toEqual({ id: first.body.records[1].id, createdTime: '2026-11-20T10:00:00.000Z', fields: { 'Task ID': '2', Title: 'two again' } });
    expect(sim.tables.records('Tasks').map((r) => r.fields.Title)).toEqual(['one', 'two again', 'three']);
  });

  it('upsert fails the whole request with 422 when a key matches more than one record, writing nothing', async () => {
    sim.tables.insert('Tasks', { 'Task ID': 'dup', Title: 'a' });
    sim.tables.insert('Tasks', { 'Task ID': 'dup', Title: 'b' });
    const answer = await upsert([{ fields: { 'Task ID': 'new', Title: 'fresh' } }, { fields: { 'Task ID': 'dup', Title: 'c' } }]);
    expect(answer.status).toBe(422);
    expect(answer.body.error.message).toContain('2 records match');
    expect(sim.tables.records('Tasks').map((r) => r.fields.Title)).toEqual(['a', 'b']);
  });

  it('checks fieldsToMergeOn: 1 to 3 fields, existing, of an allowed type; every record carries the key', async () => {
    const bad = (performUpsert: unknown, recs: unknown[] = [{ fields: { 'Task ID': '1', Email: 'a@example.com' } }]) => call(sim, 'PATCH', records, { body: { performUpsert, records: recs } });
    expect(await bad({ fieldsToMergeOn: [] })).toMatchObject({ status: 422 });
    expect(await bad({ fieldsToMergeOn: ['Task ID', 'Title', 'Notes', 'Count'] })).toMatchObject({ status: 422 });
    expect(await bad({ fieldsToMergeOn: ['Nope'] })).toMatchObject({ status: 422, body: { error: { type: 'UNKNOWN_FIELD_NAME' } } });
    expect(await bad({ fieldsToMergeOn: ['Email'] })).toMatchObject({ status: 422, body: { error: { message: expect.stringContaining('cannot be used in fieldsToMergeOn') } } });
    expect(await bad({ fieldsToMergeOn: ['Task ID'] }, [{ fields: { Title: 'no key' } }])).toMatchObject({ status: 422 });
    expect(sim.tables.records('Tasks')).toEqual([]);
    const two = await bad({ fieldsToMergeOn: ['Task ID', 'Title'] }, [{ fields: { 'Task ID': '1', Title: 'x' } }]);
    expect(two.status).toBe(200);
  });

  it('refuses more than 10 records in an update or upsert', async () => {
    const eleven = Array.from({ length: 11 }, (_, i) => ({ fields: { 'Task ID': String(i) } }));
    const answer = await upsert(eleven);
    expect(answer).toMatchObject({ status: 422, body: { error: { type: 'INVALID_RECORDS', message: 'A maximum of 10 records can be updated per request but you have provided 11.' } } });
  });

  it('PATCH changes only the fields sent (null clears one); PUT clears every field it omits', async () => {
    const created = await call(sim, 'POST', records, { body: { fields: { 'Task ID': '1', Title: 'keep', Notes: 'n', Count: 5 } } });
    const id = created.body.id as string;
    const patched = await call(sim, 'PATCH', records, { body: { records: [{ id, fields: { Count: 6, Notes: null } }] } });
    expect(patched.body).toEqual({ records: [{ id, createdTime: expect.any(String), fields: { 'Task ID': '1', Title: 'keep', Count: 6 } }] });
    const put = await call(sim, 'PUT', records, { body: { records: [{ id, fields: { 'Task ID': '1', Count: 7 } }] } });
    expect(put.body.records[0].fields).toEqual({ 'Task ID': '1', Count: 7 });
    const putUpsert = await call(sim, 'PUT', records, { body: { performUpsert: { fieldsToMergeOn: ['Task ID'] }, records: [{ fields: { 'Task ID': '1', Title: 'only' } }] } });
    expect(putUpsert.body.records[0]).toMatchObject({ id, fields: { 'Task ID': '1', Title: 'only' } });
  });

  it('an update naming an unknown record id fails and writes nothing', async () => {
    const created = await call(sim, 'POST', records, { body: { fields: { 'Task ID': '1', Title: 'before' } } });
    const answer = await call(sim, 'PATCH', records, { body: { records: [{ id: created.body.id, fields: { Title: 'after' } }, { id: 'recNOPENOPENOPE00', fields: { Title: 'x' } }] } });
    expect(answer).toMatchObject({ status: 422, body: { error: { type: 'ROW_DOES_NOT_EXIST' } } });
    expect(sim.tables.records('Tasks')[0]?.fields.Title).toBe('before');
  });

  it('refuses unknown body parameters (a typo such as typeCast is not silently ignored)', async () => {
    expect(await upsert([{ fields: { 'Task ID': '1' } }], { typeCast: true })).toMatchObject({ status: 422, body: { error: { type: 'INVALID_REQUEST_UNKNOWN' } } });
  });
});

describe('listing', () => {
  beforeEach(async () => {
    for (let batch = 0; batch < 3; batch++) {
      const recs = Array.from({ length: 10 }, (_, i) => ({ fields: { 'Task ID': `t${batch * 10 + i}`, Count: batch * 10 + i, Status: i % 2 === 0 ? 'new' : 'active', Done: i === 0 } }));
      await call(sim, 'POST', records, { body: { records: recs.slice(0, batch === 2 ? 5 : 10) } });
    }
  });

  it('pages with pageSize and offset until the offset is missing, in creation order', async () => {
    const seen: string[] = [];
    let offset: string | undefined;
    let pages = 0;
    do {
      const answer = await call(sim, 'GET', `${records}?pageSize=10${offset === undefined ? '' : `&offset=${encodeURIComponent(offset)}`}`);
      expect(answer.status).toBe(200);
      pages++;
      seen.push(...answer.body.records.map((r: { fields: { 'Task ID': string } }) => r.fields['Task ID']));
      offset = answer.body.offset;
      if (offset !== undefined) expect(offset).toMatch(/^itr[A-Za-z0-9]{14}\/rec[A-Za-z0-9]{14}$/);
    } while (offset !== undefined);
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `t${i}`));
  });

  it('refuses pageSize over 100 and an offset that expired or never existed', async () => {
    expect((await call(sim, 'GET', `${records}?pageSize=101`)).status).toBe(422);
    const first = await call(sim, 'GET', `${records}?pageSize=5`);
    clock.advance(60_001);
    const expired = await call(sim, 'GET', `${records}?pageSize=5&offset=${encodeURIComponent(first.body.offset)}`);
    expect(expired).toMatchObject({ status: 422, body: { error: { type: 'LIST_RECORDS_ITERATOR_NOT_AVAILABLE' } } });
    expect((await call(sim, 'GET', `${records}?offset=itrNOPE/recNOPE`)).status).toBe(422);
  });

  it("filters with {Field}='value', OR(...), AND(...), comparisons and RECORD_ID()", async () => {
    const ids = async (formula: string) => {
      const answer = await call(sim, 'GET', `${records}?filterByFormula=${encodeURIComponent(formula)}`);
      expect(answer.status).toBe(200);
      return answer.body.records.map((r: { fields: { 'Task ID': string } }) => r.fields['Task ID']);
    };
    expect(await ids("{Task ID}='t3'")).toEqual(['t3']);
    expect(await ids("OR({Task ID}='t1',{Task ID}=\"t22\",{Task ID}='none')")).toEqual(['t1', 't22']);
    expect(await ids("AND({Status}='new', {Count} >= 20)")).toEqual(['t20', 't22', 't24']);
    expect(await ids('AND({Done}, NOT({Count} < 10))')).toEqual(['t10', 't20']);
    expect(await ids("{Notes} = ''")).toHaveLength(25);
    expect(await ids("{Notes} != BLANK()")).toEqual([]);
    const any = sim.tables.records('Tasks')[7];
    expect(await ids(`RECORD_ID()='${any?.id}'`)).toEqual(['t7']);
    expect(await ids("{Task ID}='it\\'s'")).toEqual([]);
  });

  it('refuses formulas it cannot parse, unknown functions and unknown fields with INVALID_FILTER_BY_FORMULA', async () => {
    for (const formula of ["{Task ID}='t1", 'NOPE(1)', "{Missing}='x'", 'AND(']) {
      const answer = await call(sim, 'GET', `${records}?filterByFormula=${encodeURIComponent(formula)}`);
      expect(answer).toMatchObject({ status: 422, body: { error: { type: 'INVALID_FILTER_BY_FORMULA' } } });
    }
  });

  it('restricts fields[], sorts, caps with maxRecords, and takes the same parameters on POST listRecords', async () => {
    const answer = await call(sim, 'GET', `${records}?fields%5B%5D=Count&sort%5B0%5D%5Bfield%5D=Count&sort%5B0%5D%5Bdirection%5D=desc&maxRecords=3`);
    expect(answer.body.records.map((r: { fields: unknown }) => r.fields)).toEqual([{ Count: 24 }, { Count: 23 }, { Count: 22 }]);
    expect(answer.body.offset).toBeUndefined();
    const posted = await call(sim, 'POST', `${records}/listRecords`, { body: { fields: ['Count'], sort: [{ field: 'Count', direction: 'desc' }], maxRecords: 3, filterByFormula: '{Count} < 23' } });
    expect(posted.body.records.map((r: { fields: unknown }) => r.fields)).toEqual([{ Count: 22 }, { Count: 21 }, { Count: 20 }]);
    expect(await call(sim, 'GET', `${records}?fields%5B%5D=Nope`)).toMatchObject({ status: 422, body: { error: { type: 'UNKNOWN_FIELD_NAME' } } });
  });
});

describe('deleting', () => {
  it('deletes one record, then several with records[], and refuses more than 10', async () => {
    const created = await call(sim, 'POST', records, { body: { records: Array.from({ length: 4 }, (_, i) => ({ fields: { 'Task ID': String(i) } })) } });
    const ids = created.body.records.map((r: { id: string }) => r.id) as string[];
    expect(await call(sim, 'DELETE', `${records}/${ids[0]}`)).toMatchObject({ status: 200, body: { id: ids[0], deleted: true } });
    expect(await call(sim, 'DELETE', `${records}/${ids[0]}`)).toMatchObject({ status: 404, body: { error: 'NOT_FOUND' } });
    const many = await call(sim, 'DELETE', `${records}?records%5B%5D=${ids[1]}&records%5B%5D=${ids[2]}`);
    expect(many.body).toEqual({ records: [{ id: ids[1], deleted: true }, { id: ids[2], deleted: true }] });
    expect(sim.tables.records('Tasks').map((r) => r.id)).toEqual([ids[3]]);
    const eleven = Array.from({ length: 11 }, () => `records%5B%5D=${ids[3]}`).join('&');
    expect(await call(sim, 'DELETE', `${records}?${eleven}`)).toMatchObject({ status: 422, body: { error: { type: 'INVALID_RECORDS' } } });
  });
});
