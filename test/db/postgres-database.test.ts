/**
 * PostgresDatabase against the real PostgreSQL (TEST_DATABASE_URL, default 127.0.0.1:5432/test): the
 * shared conformance suite, then what only a networked, multi-process backend has to get right:
 * concurrent writers, concurrent migrations, server restarts, and text PostgreSQL cannot store.
 * Every test works in a schema of its own and drops it afterwards. The restart test runs a private
 * PostgreSQL server, so the shared one is never stopped.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { POSTGRES_MIGRATIONS } from '../../src/db/postgres/migrations.ts';
import { PostgresDatabase } from '../../src/db/postgres/postgres-database.ts';
import { isTransientPostgresError, toDbError } from '../../src/db/postgres/postgres-errors.ts';
import { ConnectorError } from '../../src/errors.ts';
import type { Task } from '../../src/model.ts';
import { noChanges } from '../../src/model.ts';
import { later, makeEmail, makeTask } from '../fixtures/records.ts';
import { requirePostgres, startPrivatePostgres, type PrivatePostgres } from '../helpers/services.ts';
import { databaseConformance } from './conformance.ts';
import { expectMergedSplitRows, seedSplitRows } from './split-rows.ts';

const service = await requirePostgres();
const url = service.url;

function schemaName(label = 'pg'): string {
  return `conn_test_${label}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>, connectionString = url): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const quoted = (schema: string) => `"${schema.replaceAll('"', '""')}"`;

async function dropSchema(schema: string): Promise<void> {
  await admin((c) => c.query(`DROP SCHEMA IF EXISTS ${quoted(schema)} CASCADE`));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!service.available)('PostgreSQL backend', () => {
  databaseConformance('postgres', async () => {
    const schema = schemaName('conf');
    const db = new PostgresDatabase({ connectionString: url, schema, poolSize: 3 });
    return {
      db,
      cleanup: async () => {
        await db.close();
        await dropSchema(schema);
      },
    };
  });

  describe('PostgresDatabase', () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    /** A migrated database in a fresh schema, closed and dropped after the test. */
    async function fresh(options: { schema?: string; poolSize?: number } = {}): Promise<{ db: PostgresDatabase; schema: string }> {
      const schema = options.schema ?? schemaName();
      cleanups.push(() => dropSchema(schema));
      const db = new PostgresDatabase({ connectionString: url, schema, poolSize: options.poolSize ?? 3 });
      cleanups.push(() => db.close());
      await db.migrate();
      return { db, schema };
    }

    it('several instances migrating at once apply each migration exactly once', async () => {
      // An awkward name on purpose: every statement must quote the schema.
      const schema = schemaName('Mig "x"');
      cleanups.push(() => dropSchema(schema));
      const instances = Array.from({ length: 6 }, () => new PostgresDatabase({ connectionString: url, schema, poolSize: 1 }));
      cleanups.push(async () => void (await Promise.all(instances.map((d) => d.close()))));

      await Promise.all(instances.map((d) => d.migrate()));

      const applied = await admin((c) => c.query<{ version: number; applied_at: Date }>(`SELECT version, applied_at FROM ${quoted(schema)}.schema_migrations ORDER BY version`));
      expect(applied.rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));

      // Migrating again changes nothing, and every instance can write.
      await instances[0]!.migrate();
      const again = await admin((c) => c.query<{ version: number; applied_at: Date }>(`SELECT version, applied_at FROM ${quoted(schema)}.schema_migrations ORDER BY version`));
      expect(again.rows).toEqual(applied.rows);
      await Promise.all(instances.map((d, i) => d.upsertTask(makeTask({ id: `m${i}` }))));
      expect((await instances[5]!.counts()).tasks).toBe(6);
    });

    it('migration 2 merges rows stored under other spellings of one id, keeping the newest version', async () => {
      // Rows as versions before 2 stored them: the id as the vendor spelled it.
      const { db, schema } = await fresh();
      const t0 = new Date('2026-11-04T10:00:00.000Z');
      await db.upsertTasks([
        makeTask({ id: '4343', title: 'ten', updatedAt: t0 }),
        makeTask({ id: '04343', title: 'twelve', updatedAt: later(t0, 7200), projectId: '077' }),
        makeTask({ id: ' 004343', title: 'eleven', updatedAt: later(t0, 3600) }),
        makeTask({ id: '0099', title: 'only spelling', updatedAt: t0 }),
        makeTask({ id: '12', title: 'untouched', updatedAt: t0 }),
      ]);
      const uuid = '0f3a6c2e-1b7d-4c88-9e2f-5a1b2c3d4e5f';
      await db.upsertEmails([
        makeEmail({ id: uuid, subject: 'older', updatedAt: t0 }),
        makeEmail({ id: uuid.toUpperCase(), subject: 'newer', updatedAt: later(t0, 60), conversationId: 'AAAAAAAA-1B7D-4C88-9E2F-5A1B2C3D4E5F', attachments: [{ id: 'ATT-1', emailId: uuid.toUpperCase(), filename: 'a.pdf', mediaType: null, size: 1, url: null, storedPath: null, sha256: null }] }),
      ]);
      await admin((c) => c.query(`DELETE FROM ${quoted(schema)}.schema_migrations WHERE version >= 2`));

      const after = new PostgresDatabase({ connectionString: url, schema, poolSize: 1 });
      cleanups.push(() => after.close());
      await after.migrate();
      // The older version's attachment (att-1, makeEmail's) moves to the kept email too.
      expect(await after.counts()).toEqual({ tasks: 3, emails: 1, attachments: 2 });
      expect(await after.getTask('4343')).toMatchObject({ id: '4343', title: 'twelve', updatedAt: later(t0, 7200), projectId: '77' });
      expect(await after.getTask('99')).toMatchObject({ id: '99', title: 'only spelling' });
      expect(await after.getTask('12')).toMatchObject({ title: 'untouched' });
      expect(await after.getEmail(uuid)).toMatchObject({
        id: uuid,
        subject: 'newer',
        conversationId: 'aaaaaaaa-1b7d-4c88-9e2f-5a1b2c3d4e5f',
        attachments: expect.arrayContaining([expect.objectContaining({ id: 'ATT-1', emailId: uuid, filename: 'a.pdf' }), expect.objectContaining({ id: 'att-1', emailId: uuid })]),
      });
    });

    it('migration 2 merges a tombstone into the full row it deletes and keeps every attachment of the merged rows', async () => {
      const { db, schema } = await fresh();
      await seedSplitRows(db);
      await admin((c) => c.query(`DELETE FROM ${quoted(schema)}.schema_migrations WHERE version >= 2`));

      const after = new PostgresDatabase({ connectionString: url, schema, poolSize: 1 });
      cleanups.push(() => after.close());
      await after.migrate();
      await expectMergedSplitRows(after);
    });

    it('concurrent writers on 8 pools never duplicate a row and keep the newest version of each', async () => {
      const { schema } = await fresh();
      const writers = Array.from({ length: 8 }, () => new PostgresDatabase({ connectionString: url, schema, poolSize: 2 }));
      cleanups.push(async () => void (await Promise.all(writers.map((d) => d.close()))));
      await Promise.all(writers.map((d) => d.migrate()));

      // Every writer writes all 40 ids, each with its own version time; for each id the 8 times differ
      // (5 is coprime with 8), so exactly one writer's version must win.
      const ids = Array.from({ length: 40 }, (_, i) => i);
      const base = new Date('2026-11-10T00:00:00.000Z');
      const version = (id: number, writer: number) => (id * 7 + writer * 5) % 8;
      const task = (id: number, writer: number): Task => makeTask({ id: `c${id}`, title: `w${writer}`, updatedAt: later(base, version(id, writer)) });
      const email = (id: number, writer: number) =>
        makeEmail({ id: `e${id}`, subject: `w${writer}`, updatedAt: later(base, version(id, writer)), attachments: [{ id: `a${id}`, emailId: `e${id}`, filename: `w${writer}.pdf`, mediaType: null, size: writer, url: null, storedPath: null, sha256: null }] });

      const retried: ConnectorError[] = [];
      let attempted = 0;
      let accounted = 0;
      const write = async (db: PostgresDatabase, changes: ReturnType<typeof noChanges>) => {
        attempted += changes.tasks.length + changes.emails.length;
        for (;;) {
          try {
            const result = await db.apply(changes);
            accounted += result.written + result.stale;
            return;
          } catch (err) {
            // What the dispatcher does: back off and retry a retryable error.
            if (!(err instanceof ConnectorError) || !err.retryable || retried.length > 50) throw err;
            retried.push(err);
            await sleep(20);
          }
        }
      };
      await Promise.all(
        writers.map(async (db, w) => {
          // Each writer walks the ids from its own starting point, in batches of 5, some one by one.
          const order = ids.map((_, k) => ids[(k + w * 5) % ids.length]!);
          for (let k = 0; k < order.length; k += 5) {
            const chunk = order.slice(k, k + 5);
            if (k % 10 === 0) await write(db, { ...noChanges(), tasks: chunk.map((id) => task(id, w)), emails: chunk.map((id) => email(id, w)) });
            else for (const id of chunk) await write(db, { ...noChanges(), tasks: [task(id, w)], emails: [email(id, w)] });
          }
        }),
      );

      expect(retried.every((e) => e.code === 'CONN_ERR_DB_UNAVAILABLE')).toBe(true);
      expect(accounted).toBe(attempted);
      const winner = (id: number) => [0, 1, 2, 3, 4, 5, 6, 7].find((w) => version(id, w) === 7)!;
      const rows = await admin((c) => c.query<{ id: string }>(`SELECT id FROM ${quoted(schema)}.tasks`));
      expect(new Set(rows.rows.map((r) => r.id)).size).toBe(40);
      expect(rows.rows).toHaveLength(40);
      for (const id of ids) {
        expect(await writers[0]!.getTask(`c${id}`)).toMatchObject({ title: `w${winner(id)}`, updatedAt: later(base, 7) });
        expect(await writers[1]!.getEmail(`e${id}`)).toMatchObject({ subject: `w${winner(id)}`, attachments: [{ id: `a${id}`, filename: `w${winner(id)}.pdf`, size: winner(id) }] });
      }
      expect(await writers[0]!.counts()).toEqual({ tasks: 40, emails: 40, attachments: 40 });
    });

    it('counts stale records exactly in a mixed batch and in deletions', async () => {
      const { db } = await fresh();
      const t5 = new Date('2026-11-05T00:00:00.000Z');
      await db.upsertTasks(Array.from({ length: 10 }, (_, i) => makeTask({ id: `s${i}`, updatedAt: t5 })));

      const batch = [
        ...Array.from({ length: 5 }, (_, i) => makeTask({ id: `s${i}`, title: 'older', updatedAt: later(t5, -60) })),
        ...Array.from({ length: 5 }, (_, i) => makeTask({ id: `s${i + 5}`, title: 'newer', updatedAt: later(t5, 60) })),
        ...Array.from({ length: 5 }, (_, i) => makeTask({ id: `n${i}`, title: 'new', updatedAt: null })),
      ];
      expect(await db.upsertTasks(batch)).toEqual({ written: 10, stale: 5 });
      expect((await db.getTask('s0'))?.title).toBe('Write the quarterly report');
      expect((await db.getTask('s9'))?.title).toBe('newer');

      await db.markTaskDeleted('s1', later(t5, 10));
      const result = await db.apply({
        ...noChanges(),
        deletedTasks: [
          { id: 's1', at: later(t5, 20) }, // already deleted: a no-op
          { id: 's2', at: later(t5, -10) }, // older than the stored update: stale
          { id: 's3', at: later(t5, 30) }, // written
          { id: 'ghost', at: later(t5, 30) }, // never seen: a tombstone
          { id: 's3', at: later(t5, 40) }, // the same id again in the batch: the first deletion counts
        ],
      });
      expect(result).toEqual({ written: 2, stale: 1 });
      expect(await db.getTask('s1')).toMatchObject({ deleted: true, deletedAt: later(t5, 10) });
      expect(await db.getTask('s2')).toMatchObject({ deleted: false });
      expect(await db.getTask('s3')).toMatchObject({ deleted: true, deletedAt: later(t5, 30) });
      expect(await db.getTask('ghost')).toMatchObject({ deleted: true, title: null });
    });

    it('writes a batch atomically: a refused row rolls back the whole batch', async () => {
      const { db } = await fresh();
      const orphan = makeEmail({ id: 'msg-9', attachments: [{ id: 'att-9', emailId: 'no-such-email', filename: null, mediaType: null, size: null, url: null, storedPath: null, sha256: null }] });
      const err = await db.apply({ ...noChanges(), tasks: [makeTask({ id: 'atomic' })], emails: [orphan] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectorError);
      expect(err).toMatchObject({ code: 'CONN_ERR_DB_REJECTED', retryable: false, details: { driverCode: '23503' } });
      expect(await db.getTask('atomic')).toBeNull();
      expect(await db.counts()).toEqual({ tasks: 0, emails: 0, attachments: 0 });
      // The connection that saw the failure is still usable.
      expect(await db.upsertTask(makeTask({ id: 'after' }))).toEqual({ written: 1, stale: 0 });
    });

    it('keeps attachments in the message order and replaces them per written message', async () => {
      const { db } = await fresh();
      const att = (id: string) => ({ id, emailId: 'msg-1', filename: `${id}.txt`, mediaType: 'text/plain', size: 3_000_000_000, url: null, storedPath: null, sha256: null });
      const first = makeEmail({ attachments: [att('c'), att('a'), att('b')] });
      await db.upsertEmail(first);
      expect((await db.getEmail('msg-1'))?.attachments.map((a) => a.id)).toEqual(['c', 'a', 'b']);
      expect((await db.getEmail('msg-1'))?.attachments[0]?.size).toBe(3_000_000_000);

      const second = makeEmail({ updatedAt: later(first.updatedAt, 1), attachments: [att('b'), att('d'), att('c')] });
      await db.upsertEmail(second);
      expect(await db.getEmail('msg-1')).toEqual(second);

      // A stale version does not touch the attachments either.
      expect(await db.upsertEmail(makeEmail({ updatedAt: first.updatedAt, attachments: [] }))).toEqual({ written: 0, stale: 1 });
      expect((await db.counts()).attachments).toBe(3);
    });

    it('stores text with NUL bytes and lone surrogates, which PostgreSQL cannot hold, without them', async () => {
      const { db } = await fresh();
      const task = makeTask({
        title: 'a\u0000b',
        description: 'half \uD800 pair',
        tags: ['x\u0000y'],
        assignees: [{ id: '1', name: 'N\u0000ul', email: null }],
        raw: { 'k\u0000ey': 'v\u0000al', nested: ['\u0000', '\uDC00'] },
      });
      expect(await db.upsertTask(task)).toEqual({ written: 1, stale: 0 });
      expect(await db.getTask(task.id)).toMatchObject({
        title: 'ab',
        description: 'half \uFFFD pair',
        tags: ['xy'],
        assignees: [{ id: '1', name: 'Nul', email: null }],
        raw: { key: 'val', nested: ['', '\uFFFD'] },
      });
      await db.upsertEmail(makeEmail({ bodyText: 'body\u0000', subject: '\u0000' }));
      expect(await db.getEmail('msg-1')).toMatchObject({ bodyText: 'body', subject: '' });
    });

    it('refuses to work before migrate() with a clear error', async () => {
      const db = new PostgresDatabase({ connectionString: url, schema: schemaName() });
      cleanups.push(() => db.close());
      await expect(db.upsertTask(makeTask())).rejects.toMatchObject({ code: 'CONN_ERR_DB_REJECTED', message: expect.stringContaining('migrate') });
    });

    it('a server that cannot be reached is a retryable CONN_ERR_DB_UNAVAILABLE, and health says so', async () => {
      const db = new PostgresDatabase({ connectionString: 'postgres://postgres@127.0.0.1:1/test', connectTimeoutMs: 2000 });
      cleanups.push(() => db.close());
      await expect(db.migrate()).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true });
      expect(await db.health()).toMatchObject({ ok: false, backend: 'postgres', detail: expect.stringContaining('ECONNREFUSED') });
    });

    it('classifies driver and server errors as transient or refused', () => {
      // Issue 15: a table renamed (42P01) or a privilege revoked (42501) is an operator's change, not the record's fault.
      const transient = [{ code: 'ECONNREFUSED' }, { code: 'ECONNRESET' }, { code: '57P01' }, { code: '53300' }, { code: '08006' }, { code: '08001' }, { code: '40001' }, { code: '40P01' }, { code: '42P01' }, { code: '42501' }, { code: '25006' }, { code: '55000' }, new Error('Connection terminated unexpectedly'), new Error('timeout exceeded when trying to connect')];
      const refused = [{ code: '23505' }, { code: '23503' }, { code: '22P02' }, { code: '54000' }, new Error('something else')];
      for (const e of transient) expect([e, isTransientPostgresError(e)]).toEqual([e, true]);
      for (const e of refused) expect([e, isTransientPostgresError(e)]).toEqual([e, false]);
      const mapped = toDbError(Object.assign(new Error('duplicate key'), { code: '23505', table: 'tasks', detail: 'Key (id)=(secret) exists' }), 'PostgreSQL write failed');
      expect(mapped).toMatchObject({ code: 'CONN_ERR_DB_REJECTED', retryable: true, details: { driverCode: '23505', table: 'tasks' } });
      expect(JSON.stringify(mapped.details)).not.toContain('secret');
    });
  });
});

// Needs no shared server: it runs its own, and skips only when PostgreSQL is not installed.
describe('PostgresDatabase across a server restart (private server)', () => {
  let server: PrivatePostgres | null = null;
  afterEach(async () => {
    await server?.destroy();
    server = null;
  });

  it('fails with retryable CONN_ERR_DB_UNAVAILABLE while the server is down, then recovers with nothing lost', async (ctx) => {
    server = await startPrivatePostgres();
    if (server === null) {
      if (process.env.CI === 'true') throw new Error('PostgreSQL binaries (initdb, pg_ctl) are required under CI=true');
      console.warn('[tests] no PostgreSQL binaries (initdb); skipping the server restart test');
      ctx.skip();
      return;
    }
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => void (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) });
    const db = new PostgresDatabase({ connectionString: server.url, schema: 'restart', poolSize: 4, connectTimeoutMs: 2000, log: pino({ level: 'warn' }, sink) });
    try {
      await db.migrate();
      const acknowledged: string[] = [];
      const errors: unknown[] = [];
      /** Writes one task, retrying retryable errors as the dispatcher would; records every error seen. */
      const writeTask = async (n: number) => {
        const deadline = Date.now() + 15_000;
        for (;;) {
          try {
            await db.upsertTask(makeTask({ id: `r${n}`, title: `task ${n}` }));
            acknowledged.push(`r${n}`);
            return;
          } catch (err) {
            errors.push(err);
            if (!(err instanceof ConnectorError) || !err.retryable || Date.now() > deadline) throw err;
            await sleep(50);
          }
        }
      };

      for (let n = 0; n < 20; n++) await writeTask(n);
      // Several idle connections in the pool when the server goes away.
      await Promise.all([0, 1, 2, 3].map((n) => db.getTask(`r${n}`)));

      // 1. A clean stop: idle connections are told, the pool reports and drops them, calls fail fast.
      await server.stop('fast');
      await sleep(100);
      const down = await db.upsertTask(makeTask({ id: 'while-down' })).catch((e: unknown) => e);
      expect(down).toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true });
      expect(await db.health()).toMatchObject({ ok: false });
      await server.start();
      for (let n = 20; n < 40; n++) await writeTask(n);
      expect(await db.health()).toMatchObject({ ok: true });

      // 2. A crash (immediate stop: no checkpoint, recovery from WAL) while writes are in flight.
      const writing = (async () => {
        for (let n = 40; n < 80; n++) {
          await writeTask(n);
          await sleep(15);
        }
      })();
      await sleep(150);
      await server.stop('immediate');
      await sleep(400);
      await server.start();
      await writing;

      expect(errors.length).toBeGreaterThan(0);
      for (const err of errors) expect(err).toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true });
      expect(lines.some((l) => l.msg === 'PostgreSQL dropped an idle connection; it will be replaced')).toBe(true);

      expect(acknowledged).toHaveLength(80);
      expect((await db.counts()).tasks).toBe(80);
      for (const id of acknowledged) expect((await db.getTask(id))?.title).toBe(`task ${id.slice(1)}`);
    } finally {
      await db.close();
    }
  });
});
