/**
 * Database outages on the real PostgreSQL (issue 15 item 5): every condition in which the database
 * cannot take writes for a reason that is not the record's fault is a retryable
 * CONN_ERR_DB_UNAVAILABLE, and the write goes through once the condition ends. Each test works on a
 * database of its own (CREATE DATABASE conn_outage_<random>), which it changes the way an operator or a
 * failover would (connections refused, read-only, privilege revoked, table renamed, role locked, a
 * lock held), and drops afterwards. SQLSTATEs no test can cause on a shared server (disk full, a
 * system error, a corrupt index) are raised by a trigger with that ERRCODE: the real server, the real
 * driver, the real error object.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresDatabase } from '../../src/db/postgres/postgres-database.ts';
import { makeTask } from '../fixtures/records.ts';
import { requirePostgres, withPostgresClient } from '../helpers/services.ts';

const service = await requirePostgres();

const admin = <T>(fn: (client: pg.Client) => Promise<T>, connectionString = service.url): Promise<T> => withPostgresClient(connectionString, fn);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err: unknown) => console.warn('[tests] cleanup failed:', err));
});

interface Outage {
  name: string;
  url: string;
  db: PostgresDatabase;
  /** Ends every connection to the test's database but the caller's (a failover, a restart of the pool). */
  dropConnections: () => Promise<void>;
  sql: (text: string) => Promise<pg.QueryResult>;
}

/** A database of the test's own, migrated, with a PostgresDatabase on it; dropped afterwards. */
async function outageDatabase(options: { user?: string } = {}): Promise<Outage> {
  const name = `conn_outage_${process.pid}_${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const target = new URL(service.url);
  target.pathname = `/${name}`;
  const ownerUrl = target.toString();
  if (options.user !== undefined) target.username = options.user;
  const url = target.toString();
  const db = new PostgresDatabase({ connectionString: url, poolSize: 2, connectTimeoutMs: 3000, statementTimeoutMs: 10_000 });
  const dropConnections = async () => {
    await admin((c) => c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]));
    // Let the pool see its idle connections end (their 'error' event), as it would after a failover.
    await new Promise((resolve) => setTimeout(resolve, 300));
  };
  cleanups.push(async () => {
    await db.close();
    await admin(async (c) => {
      await c.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
      await c.query(`DROP DATABASE IF EXISTS ${name}`);
    });
  });
  return { name, url, db, dropConnections, sql: (text) => admin((c) => c.query(text), ownerUrl) };
}

/** A login role of the test's own and an outage database it connects as (owning its tables), migrated. */
async function roleDatabase(): Promise<{ role: string; o: Outage }> {
  const role = `conn_outage_role_${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`CREATE ROLE ${role} LOGIN`));
  cleanups.push(async () => {
    await admin((c) => c.query(`DROP ROLE IF EXISTS ${role}`));
  });
  const o = await outageDatabase({ user: role });
  await o.sql(`GRANT ALL ON SCHEMA public TO ${role}`);
  cleanups.push(async () => {
    await o.sql(`DROP OWNED BY ${role}`);
  });
  await o.db.migrate();
  return { role, o };
}

let counter = 0;
const task = () => makeTask({ id: `t${++counter}`, title: `task ${counter}` });

describe.skipIf(!service.available)('PostgreSQL outages are CONN_ERR_DB_UNAVAILABLE (own database per test)', () => {
  it('a database not accepting connections (ALLOW_CONNECTIONS false, SQLSTATE 55000)', async () => {
    const o = await outageDatabase();
    await o.db.migrate();
    await admin((c) => c.query(`ALTER DATABASE ${o.name} ALLOW_CONNECTIONS false`));
    await o.dropConnections();
    await expect(o.db.upsertTask(task())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', retryable: true, details: { driverCode: '55000' } });
    expect(await o.db.health()).toMatchObject({ ok: false });
    await admin((c) => c.query(`ALTER DATABASE ${o.name} ALLOW_CONNECTIONS true`));
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });
  });

  it('a read-only database (default_transaction_read_only, as on a replica after a failover; 25006), and /health says not writable', async () => {
    const o = await outageDatabase();
    await o.db.migrate();
    expect(await o.db.health()).toMatchObject({ ok: true });
    await admin((c) => c.query(`ALTER DATABASE ${o.name} SET default_transaction_read_only = on`));
    await o.dropConnections();
    await expect(o.db.upsertTask(task())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', details: { driverCode: '25006' } });
    expect(await o.db.health()).toMatchObject({ ok: false, backend: 'postgres', detail: expect.stringMatching(/read-only/) });
    await admin((c) => c.query(`ALTER DATABASE ${o.name} RESET default_transaction_read_only`));
    await o.dropConnections();
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });
    expect(await o.db.health()).toMatchObject({ ok: true });
  });

  it('a privilege revoked (42501) and a table renamed (42P01) by an operator; /health says which', async () => {
    const { role, o } = await roleDatabase();
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });

    await o.sql('ALTER TABLE tasks OWNER TO postgres');
    await o.sql(`GRANT SELECT ON tasks TO ${role}`);
    await expect(o.db.upsertTask(task())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', details: { driverCode: '42501' } });
    expect(await o.db.health()).toMatchObject({ ok: false, detail: expect.stringMatching(/tasks/) });
    await o.sql(`GRANT ALL ON tasks TO ${role}`);
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });

    await o.sql('ALTER TABLE tasks RENAME TO tasks_moved');
    await expect(o.db.upsertTask(task())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', details: { driverCode: '42P01' } });
    expect(await o.db.health()).toMatchObject({ ok: false, detail: expect.stringMatching(/tasks/) });
    await o.sql('ALTER TABLE tasks_moved RENAME TO tasks');
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });
  });

  it('authentication failing during a credential rotation (28000: the role may not log in)', async () => {
    const { role, o } = await roleDatabase();
    await admin((c) => c.query(`ALTER ROLE ${role} NOLOGIN`));
    await o.dropConnections();
    await expect(o.db.upsertTask(task())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', details: { driverCode: '28000' } });
    await admin((c) => c.query(`ALTER ROLE ${role} LOGIN`));
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });
  });

  it('a lock timeout while another connection holds the table (55P03)', async () => {
    const o = await outageDatabase();
    await o.db.migrate();
    await o.sql(`ALTER DATABASE ${o.name} SET lock_timeout = '200ms'`);
    await o.dropConnections();
    const holder = new pg.Client({ connectionString: o.url });
    holder.on('error', () => {});
    await holder.connect();
    cleanups.push(() => holder.end());
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE');
    await expect(o.db.upsertTask(task())).rejects.toMatchObject({ code: 'CONN_ERR_DB_UNAVAILABLE', details: { driverCode: '55P03' } });
    await holder.query('ROLLBACK');
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });
  });

  // SQLSTATE -> the code the write fails with. A trigger raises each one on the real server.
  const cases: Array<[sqlstate: string, code: 'CONN_ERR_DB_UNAVAILABLE' | 'CONN_ERR_DB_REJECTED', retryable: boolean]> = [
    ['08006', 'CONN_ERR_DB_UNAVAILABLE', true], // connection failure
    ['25006', 'CONN_ERR_DB_UNAVAILABLE', true], // read-only transaction
    ['28P01', 'CONN_ERR_DB_UNAVAILABLE', true], // invalid password (a rotation)
    ['40001', 'CONN_ERR_DB_UNAVAILABLE', true], // serialization failure
    ['40P01', 'CONN_ERR_DB_UNAVAILABLE', true], // deadlock
    ['42501', 'CONN_ERR_DB_UNAVAILABLE', true], // insufficient privilege
    ['42P01', 'CONN_ERR_DB_UNAVAILABLE', true], // undefined table
    ['53100', 'CONN_ERR_DB_UNAVAILABLE', true], // disk full
    ['53300', 'CONN_ERR_DB_UNAVAILABLE', true], // too many connections
    ['55000', 'CONN_ERR_DB_UNAVAILABLE', true], // object not in prerequisite state
    ['55P03', 'CONN_ERR_DB_UNAVAILABLE', true], // lock not available
    ['57P01', 'CONN_ERR_DB_UNAVAILABLE', true], // admin shutdown
    ['57000', 'CONN_ERR_DB_UNAVAILABLE', true], // operator intervention
    ['58030', 'CONN_ERR_DB_UNAVAILABLE', true], // I/O error
    ['XX001', 'CONN_ERR_DB_UNAVAILABLE', true], // data corrupted
    ['22001', 'CONN_ERR_DB_REJECTED', false], // string data right truncation: the record
    ['22P02', 'CONN_ERR_DB_REJECTED', false], // invalid text representation: the record
    ['23502', 'CONN_ERR_DB_REJECTED', false], // not null violation: the record
    ['23505', 'CONN_ERR_DB_REJECTED', true], // unique violation: a concurrent insert races; retried with attempts
    ['54000', 'CONN_ERR_DB_REJECTED', false], // program limit exceeded (an index row too large): the record
  ];

  it('classifies by SQLSTATE class: outages are CONN_ERR_DB_UNAVAILABLE, only the record\'s fault is CONN_ERR_DB_REJECTED', async () => {
    const o = await outageDatabase();
    await o.db.migrate();
    await o.sql(`CREATE FUNCTION conn_fail() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected %', TG_ARGV[0] USING ERRCODE = TG_ARGV[0]; END $$`);
    const seen: Array<[string, string, boolean]> = [];
    for (const [sqlstate] of cases) {
      await o.sql(`CREATE TRIGGER conn_fail BEFORE INSERT OR UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION conn_fail('${sqlstate}')`);
      const err = (await o.db.upsertTask(task()).then(() => null, (e: unknown) => e)) as { code: string; retryable: boolean; details?: { driverCode?: string } } | null;
      expect(err?.details?.driverCode).toBe(sqlstate);
      seen.push([sqlstate, err?.code ?? 'none', err?.retryable ?? false]);
      await o.sql('DROP TRIGGER conn_fail ON tasks');
    }
    expect(seen).toEqual(cases);
    expect(await o.db.upsertTask(task())).toEqual({ written: 1, stale: 0 });
  });
});
