/**
 * What an operator reads when `start`, `serve` or `work` cannot start: one line naming the cause and the
 * fix ("port 8080 is in use: set PORT ..."), and the exit code (2 for a bad setting, 1 otherwise). The
 * stack is for LOG_LEVEL=debug only; the CLI logs it at debug level. A database that cannot be reached
 * is not a start-up failure (the worker waits for it, src/main.ts), but its one line is written here
 * too (describeDatabaseFailure): the waiting worker repeats it.
 *
 * A line never carries a secret: the database is named by host and port only (never the user or the
 * password in DATABASE_URL), and the CLI scrubs every configured secret from the line as well.
 */
import type { Config } from './config.ts';
import { ConnectorError } from './errors.ts';

export interface StartupFailure {
  /** One line, no trailing newline. */
  line: string;
  /** 2: a setting is wrong (or names an engine that does not answer); 1: anything else. */
  exitCode: 1 | 2;
}

type FailureConfig = Pick<Config, 'PORT' | 'HOST' | 'DB_BACKEND'> & Partial<Pick<Config, 'DATABASE_URL' | 'sqlitePath'>>;

export function describeStartupFailure(err: unknown, config: FailureConfig): StartupFailure {
  if (err instanceof ConnectorError && err.code === 'CONN_ERR_CONFIG_INVALID') return { line: firstLine(err.message), exitCode: 2 };

  const code = errorCode(err);
  if (isListenError(err)) {
    const port = portOf(err) ?? config.PORT;
    if (code === 'EADDRINUSE') return { line: `port ${port} is in use: set PORT to a free port (or stop the process that listens on ${port})`, exitCode: 1 };
    if (code === 'EACCES') return { line: `not allowed to listen on port ${port}: set PORT to 1024 or above`, exitCode: 1 };
    if (code === 'EADDRNOTAVAIL') return { line: `cannot listen on ${config.HOST}: no such address on this machine: set HOST (127.0.0.1, or 0.0.0.0 for every interface)`, exitCode: 1 };
  }

  const database = describeDatabaseFailure(err, config);
  if (database !== null) return { line: database, exitCode: 1 };

  const prefix = err instanceof ConnectorError ? `${err.code}: ` : '';
  return { line: `could not start: ${prefix}${firstLine(messageOf(err))} (LOG_LEVEL=debug shows the details)`, exitCode: 1 };
}

/**
 * The database's failure in one line with the fix ("cannot reach the database at host:port
 * (ECONNREFUSED): check DATABASE_URL ..."), or null when `err` is not a database failure. The worker
 * waiting for the database at start-up repeats it in its waiting line.
 */
export function describeDatabaseFailure(err: unknown, config: FailureConfig): string | null {
  if (!(err instanceof ConnectorError && (err.code === 'CONN_ERR_DB_UNAVAILABLE' || err.code === 'CONN_ERR_DB_REJECTED'))) return null;
  const code = errorCode(err);
  const why = code === undefined ? '' : ` (${code})`;
  if (config.DB_BACKEND === 'postgres') {
    const where = databaseAddress(config.DATABASE_URL);
    // The SQLSTATEs first: refused credentials are an outage to the worker (a rotation may be under
    // way), but the operator wants to hear which it is.
    if (code === '28P01' || code === '28000') return `the database at ${where} refused the credentials${why}: check the user and password in DATABASE_URL`;
    if (code === '3D000') return `the database named in DATABASE_URL does not exist at ${where}${why}: create it or check DATABASE_URL`;
    if (err.code === 'CONN_ERR_DB_UNAVAILABLE') return `cannot reach the database at ${where}${why}: check DATABASE_URL and that PostgreSQL runs there`;
    return `the database at ${where} refused to start${why}: ${firstLine(err.message)}`;
  }
  if (config.DB_BACKEND === 'sqlite') return `cannot open the SQLite database ${config.sqlitePath ?? ''}${why}: check DATA_DIR (it must be a writable directory)`;
  return `${err.code}: ${firstLine(err.message)}`;
}

/** `host:port` of a database URL, without user or password; "DATABASE_URL" when it cannot be read. */
export function databaseAddress(url: string | undefined): string {
  if (url === undefined) return 'DATABASE_URL';
  try {
    const parsed = new URL(url);
    return `${parsed.hostname === '' ? 'localhost' : parsed.hostname}:${parsed.port === '' ? '5432' : parsed.port}`;
  } catch {
    return 'DATABASE_URL (not a URL)';
  }
}

function isListenError(err: unknown): boolean {
  return (err as { syscall?: unknown } | null)?.syscall === 'listen';
}

function portOf(err: unknown): number | undefined {
  const port = (err as { port?: unknown } | null)?.port;
  return typeof port === 'number' ? port : undefined;
}

/** The error's own code: a driver's (kept in details), a socket's, or the first of an AggregateError's. */
function errorCode(err: unknown): string | undefined {
  if (err instanceof ConnectorError) {
    const driverCode = err.details?.driverCode;
    if (typeof driverCode === 'string') return driverCode;
    return errorCode(err.cause);
  }
  if (err instanceof AggregateError) {
    for (const inner of err.errors) {
      const code = errorCode(inner);
      if (code !== undefined) return code;
    }
  }
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(err: unknown): string {
  try {
    return err instanceof Error ? String(err.message) : String(err);
  } catch {
    return 'a value that cannot be printed was thrown';
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]?.trim() ?? '';
}
