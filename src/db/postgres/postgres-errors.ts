/**
 * What a PostgreSQL failure means for the dispatcher, as data, decided on the SQLSTATE's class (its
 * first two characters; the table is in docs/errors.md). The rule: a write fails for the record's
 * fault only when the server says the data is wrong (class 22 data exception, 23 integrity constraint,
 * 21 cardinality, 54 program limit: an index row too large). Those are `CONN_ERR_DB_REJECTED`: the same
 * write fails the same way, so the event is dead-lettered. Every other SQLSTATE means the database
 * cannot take writes for now, whatever the record: unreachable, not accepting connections, read-only
 * (a replica after a failover), out of connections or disk, shutting down, a credential being rotated,
 * a table renamed or a privilege revoked by an operator, a lock or serialization conflict, a system
 * error. Those are `CONN_ERR_DB_UNAVAILABLE`, an outage: the dispatcher holds the batch and writes it
 * again until the database takes it (the write is an idempotent upsert), dead-lettering nothing.
 *
 * One exception inside class 23: a unique violation (23505) can be a concurrent insert racing ours;
 * it is `CONN_ERR_DB_REJECTED` but retryable, so the event is tried again (its attempts are counted)
 * before it is dead-lettered.
 */
import { ConnectorError } from '../../errors.ts';

/** SQLSTATE classes (first two characters) that are the record's fault: the same write fails again. */
export const REJECTED_SQLSTATE_CLASSES: readonly string[] = [
  '21', // cardinality violation: a statement touching one row twice (duplicates in the batch)
  '22', // data exception: a value the column cannot hold (too long, bad text, out of range)
  '23', // integrity constraint violation: not null, foreign key, check, unique
  '54', // program limit exceeded: an index row or a value too large
];

/** Record-fault SQLSTATEs that are still worth a retry (counted attempts, then the dead letters). */
export const RETRYABLE_REJECTED_SQLSTATES: readonly string[] = [
  '23505', // unique_violation: a concurrent insert of the same key; the next attempt takes the update path
];

/** Node socket errors: the server cannot be reached or dropped us. */
export const TRANSIENT_SOCKET_CODES: readonly string[] = [
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN', 'ENOTFOUND',
];

/**
 * Errors the `pg` driver raises itself, without a code, when a connection ends or cannot be made in
 * time (e.g. "Connection terminated unexpectedly", "timeout exceeded when trying to connect", "Query read
 * timeout" when query_timeout passes).
 */
const TRANSIENT_DRIVER_MESSAGES = /connection terminated|query read timeout|connection timeout|timeout exceeded when trying to connect|not queryable|connection ended|socket hang up|server closed the connection/i;

const isSqlstate = (code: string): boolean => /^[0-9A-Z]{5}$/.test(code);

export function isTransientPostgresError(err: unknown): boolean {
  // Connecting to a name with several addresses (localhost: ::1 and 127.0.0.1) fails with all of them.
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.every(isTransientPostgresError);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (TRANSIENT_SOCKET_CODES.includes(code)) return true;
    if (isSqlstate(code)) return !REJECTED_SQLSTATE_CLASSES.includes(code.slice(0, 2));
  }
  const message = err instanceof Error ? err.message : String(err);
  return TRANSIENT_DRIVER_MESSAGES.test(message);
}

/**
 * A ConnectorError for any failure. `context` says what we were doing ("PostgreSQL write failed").
 * Only the SQLSTATE and the table/constraint names go into details: a server error's `detail` field
 * can quote row values (an email body), which do not belong in logs or the dead-letter file.
 */
export function toDbError(err: unknown, context: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const e = (err ?? {}) as { code?: unknown; table?: unknown; constraint?: unknown; message?: unknown };
  const message = `${context}: ${typeof e.message === 'string' && e.message !== '' ? e.message : String(err)}`;
  const details: Record<string, unknown> = {};
  if (typeof e.code === 'string') details.driverCode = e.code;
  if (typeof e.table === 'string') details.table = e.table;
  if (typeof e.constraint === 'string') details.constraint = e.constraint;
  if (isTransientPostgresError(err)) return new ConnectorError('CONN_ERR_DB_UNAVAILABLE', message, { cause: err, details });
  const retryable = typeof e.code === 'string' && RETRYABLE_REJECTED_SQLSTATES.includes(e.code);
  return new ConnectorError('CONN_ERR_DB_REJECTED', message, { cause: err, details, ...(retryable ? { retryable } : {}) });
}
