import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConnectorError, ERROR_CODES, toErrorRecord } from '../../src/errors.ts';

describe('errors', () => {
  it('docs/errors.md lists every code with its retryable flag, and no other', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(CONN_ERR_[A-Z_]+)` \| (yes|no) \|/gm)].map((m) => [m[1], m[2] === 'yes'] as const);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(ERROR_CODES).map(([code, v]) => [code, v.retryable])));
  });

  it('turns anything thrown into a record the dispatcher can act on', () => {
    expect(toErrorRecord(new ConnectorError('CONN_ERR_HTTP_SERVER', 'boom', { status: 503, retryAfterMs: 5 }))).toEqual({ code: 'CONN_ERR_HTTP_SERVER', message: 'boom', retryable: true, status: 503, retryAfterMs: 5 });
    expect(toErrorRecord(new TypeError('x is undefined'))).toEqual({ code: 'CONN_ERR_INTERNAL', message: 'x is undefined', retryable: true });
    expect(toErrorRecord('plain string')).toMatchObject({ code: 'CONN_ERR_INTERNAL', message: 'plain string' });
    // A record that travelled through the dead-letter file keeps its meaning.
    expect(toErrorRecord({ code: 'CONN_ERR_DB_REJECTED', message: 'no', retryable: false })).toEqual({ code: 'CONN_ERR_DB_REJECTED', message: 'no', retryable: false });
  });
});
