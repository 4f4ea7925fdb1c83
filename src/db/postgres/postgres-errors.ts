/**
 * What a PostgreSQL failure means for the dispatcher, as data: the server or the network being away,
 * busy or restarting is `CONN_ERR_DB_UNAVAILABLE` (retryable: back off and try again, the write is an
 * idempotent upsert); anything else the server said is `CONN_ERR_DB_REJECTED` (the same write will
 * fail the same way).
 */
import { ConnectorError } from '../../errors.ts';

/** SQLSTATE classes (first two characters) that are all transient. */
export const TRANSIENT_SQLSTATE_CLASSES: readonly string[] = [
  '08', // connection exception: cannot connect, connection lost, protocol violation on reconnect
  '53', // insufficient resources: 53300 too many connections, 53100 disk full, 53200 out of memory
];

/** Single SQLSTATEs that are transient although their class is not. */
export const TRANSIENT_SQLSTATES: readonly string[] = [
  '57P01', // admin_shutdown: the server is stopping or restarting (pg_ctl stop -m fast)
  '57P02', // crash_shutdown: another backend crashed, the server is recovering
  '57P03', // cannot_connect_now: the server is starting up or in recovery
  '57P05', // idle_session_timeout
  '57014', // query_canceled: statement_timeout fired or an operator cancelled the query
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available (lock_timeout)
  '25P03', // idle_in_transaction_session_timeout
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

export function isTransientPostgresError(err: unknown): boolean {
  // Connecting to a name with several addresses (localhost: ::1 and 127.0.0.1) fails with all of them.
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.every(isTransientPostgresError);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (TRANSIENT_SOCKET_CODES.includes(code) || TRANSIENT_SQLSTATES.includes(code)) return true;
    if (/^[0-9A-Z]{5}$/.test(code)) return TRANSIENT_SQLSTATE_CLASSES.includes(code.slice(0, 2));
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
  return new ConnectorError(isTransientPostgresError(err) ? 'CONN_ERR_DB_UNAVAILABLE' : 'CONN_ERR_DB_REJECTED', message, { cause: err, details });
}
