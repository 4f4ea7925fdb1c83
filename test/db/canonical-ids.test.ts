/**
 * One id rule on every side (issue 14, item 4): model.ts canonicalTaskId / canonicalEmailId, which
 * every new write goes through, and their SQL in migration 2 (SQLite and PostgreSQL), which rewrote
 * the rows stored before, give the same canonical id for the same input, whitespace of every kind
 * included. A row the migration left under one id and a delivery canonicalised in JS must meet.
 */
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { POSTGRES_CANONICAL_ID } from '../../src/db/postgres/migrations.ts';
import { SQLITE_CANONICAL_ID } from '../../src/db/sqlite/migrations.ts';
import { canonicalEmailId, canonicalTaskId } from '../../src/model.ts';
import { requirePostgres } from '../helpers/services.ts';

const UUID = '0f3a6c2e-1b7d-4c88-9e2f-5a1b2c3d4e5f';
const INPUTS = [
  '4343', '04343', ' 004343 ', '\t0\r\n', '000', '0', '', '   ', '\n\t',
  // Whitespace String.prototype.trim strips and the SQL does not: one rule means neither does.
  '\u00a04343', '4343\u00a0', '\v4343', '4343\f', '\ufeff4343', '\u20284343', '\u30004343', ' \u00a0 04343 ',
  // Not whole numbers: only trimmed.
  ' abc ', ' x y ', '12 34', '+12', '-1', '1e3', '0x10', '\u0664\u0663', '\uff14\uff13', '４３', '00ab', 'Ä ',
  UUID, UUID.toUpperCase(), ` ${UUID.toUpperCase()}\n`, `\u00a0${UUID}`, `${UUID}x`, UUID.replaceAll('-', ''), '0F3A6C2E-1B7D-4C88-9E2F-5A1B2C3D4E5G',
];

const expected = INPUTS.map((input) => ({ input, task: canonicalTaskId(input), email: canonicalEmailId(input) }));

describe('canonical ids: model.ts and the SQL of migration 2 agree', () => {
  it('on SQLite', () => {
    const db = new BetterSqlite3(':memory:');
    try {
      db.exec('CREATE TABLE ids (n INTEGER PRIMARY KEY, v TEXT NOT NULL)');
      const insert = db.prepare('INSERT INTO ids (n, v) VALUES (?, ?)');
      INPUTS.forEach((input, n) => insert.run(n, input));
      const rows = db.prepare(`SELECT v AS input, ${SQLITE_CANONICAL_ID.task('v')} AS task, ${SQLITE_CANONICAL_ID.email('v')} AS email FROM ids ORDER BY n`).all();
      expect(rows).toEqual(expected);
    } finally {
      db.close();
    }
  });

  it('on PostgreSQL', async (context) => {
    const service = await requirePostgres();
    if (!service.available) return context.skip();
    const client = new pg.Client({ connectionString: service.url });
    await client.connect();
    try {
      const { rows } = await client.query({
        text: `SELECT v AS input, ${POSTGRES_CANONICAL_ID.task('v')} AS task, ${POSTGRES_CANONICAL_ID.email('v')} AS email
          FROM unnest($1::text[]) WITH ORDINALITY AS ids (v, n) ORDER BY n`,
        values: [INPUTS],
      });
      expect(rows).toEqual(expected);
    } finally {
      await client.end();
    }
  });

  it('trims only space, tab, line feed and carriage return, in linear time', () => {
    expect(canonicalTaskId(' \t\r\n04343\n')).toBe('4343');
    expect(canonicalTaskId('\u00a04343')).toBe('\u00a04343');
    const hostile = `a${' '.repeat(200_000)}b`;
    const started = performance.now();
    expect(canonicalEmailId(hostile)).toBe(hostile);
    expect(performance.now() - started).toBeLessThan(200);
  });
});
