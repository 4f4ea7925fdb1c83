/**
 * Every error the connector raises on purpose carries a stable `code` and says whether trying again can
 * help. The dispatcher decides on `retryable` (and on `code` for errors that came back from disk or
 * another process), never on the class alone. Each code is listed in `docs/errors.md`; a test keeps the
 * two in step.
 */

export const ERROR_CODES = {
  CONN_ERR_CONFIG_INVALID: { retryable: false, summary: 'A setting is missing or has a bad value.' },
  CONN_ERR_WEBHOOK_SIGNATURE: { retryable: false, summary: 'A delivery had a missing or wrong signature (401).' },
  CONN_ERR_WEBHOOK_MALFORMED: { retryable: false, summary: 'A delivery body could not be parsed (400).' },
  CONN_ERR_WEBHOOK_MEDIA_TYPE: { retryable: false, summary: 'A delivery had a content type we do not accept (415).' },
  CONN_ERR_WEBHOOK_TOO_LARGE: { retryable: false, summary: 'A delivery body was over the size limit (413).' },
  CONN_ERR_WEBHOOK_BUSY: { retryable: true, summary: 'Too many delivery bodies were being received at once (503).' },
  CONN_ERR_HTTP_NETWORK: { retryable: true, summary: 'A vendor API could not be reached (connection refused, reset, DNS).' },
  CONN_ERR_HTTP_TIMEOUT: { retryable: true, summary: 'A vendor API did not answer in time.' },
  CONN_ERR_HTTP_RATE_LIMITED: { retryable: true, summary: 'A vendor API answered 429; retried after its Retry-After.' },
  CONN_ERR_HTTP_SERVER: { retryable: true, summary: 'A vendor API answered 5xx.' },
  CONN_ERR_HTTP_AUTH: { retryable: false, summary: 'A vendor API refused our credentials (401/403).' },
  CONN_ERR_HTTP_NOT_FOUND: { retryable: false, summary: 'A vendor API answered 404.' },
  CONN_ERR_HTTP_CLIENT: { retryable: false, summary: 'A vendor API rejected the request (another 4xx).' },
  CONN_ERR_HTTP_BAD_RESPONSE: { retryable: false, summary: 'A vendor API answered with a body we could not read.' },
  CONN_ERR_VENDOR_PAUSED: { retryable: true, summary: 'A vendor is paused (it rate-limited us) or down (its requests keep failing); the event waits until it can be asked again, spending no attempt.' },
  CONN_ERR_EVENT_INVALID: { retryable: false, summary: 'An event carried a payload its handler cannot use.' },
  CONN_ERR_EVENT_NOT_READY: { retryable: true, summary: 'The vendor API does not show the change yet; tried again later.' },
  CONN_ERR_SOURCE_UNKNOWN: { retryable: false, summary: 'An event names a source this process does not know.' },
  CONN_ERR_SOURCE_UNCONFIGURED: { retryable: false, summary: 'An event needs a vendor API whose credentials are not set.' },
  CONN_ERR_DB_UNAVAILABLE: { retryable: true, summary: 'The database cannot take writes for a reason not the record\'s (unreachable, busy, read-only, permissions).' },
  CONN_ERR_DB_REJECTED: { retryable: false, summary: 'The database refused this record (a constraint, a value its column does not take).' },
  CONN_ERR_QUEUE_LOCKED: { retryable: false, summary: 'Another process holds the queue lock.' },
  CONN_ERR_QUEUE_CORRUPT: { retryable: false, summary: 'A queue line could not be read; it was set aside.' },
  CONN_ERR_QUEUE_CLOSED: { retryable: true, summary: 'The queue is shutting down.' },
  CONN_ERR_QUEUE_UNAVAILABLE: { retryable: true, summary: 'The queue engine (Redis or PostgreSQL) could not be reached or did not answer in time; a delivery is answered 503.' },
  CONN_ERR_LEASE_LOST: { retryable: true, summary: 'A backfill stopped because its process lost the lease it ran under (the engine could not be reached, or the process froze past the lease time); another process goes on from the checkpoint.' },
  CONN_ERR_INTERNAL: { retryable: true, summary: 'An unexpected error; retried, then dead-lettered.' },
  CONN_ERR_ATTACHMENT_TOO_LARGE: { retryable: false, summary: 'An attachment was over ATTACHMENTS_MAX_BYTES; its metadata was kept, its content not stored.' },
  CONN_ERR_ATTACHMENT_REJECTED: { retryable: false, summary: 'An attachment download was refused (content type disagrees with the attachment, no URL, link expired); metadata kept.' },
  CONN_ERR_ATTACHMENT_URL_REFUSED: { retryable: false, summary: 'An attachment URL was refused before any request (not https, or a private, loopback or link-local address, or a redirect to one); metadata kept.' },
  // The operator console's answers (src/server/console/): HTTP refusals, never an event's fate.
  CONN_ERR_NOT_FOUND: { retryable: false, summary: 'No such console page, API route or object (404); every /dashboard URL answers it while ADMIN_TOKEN is unset.' },
  CONN_ERR_AUTH_REQUIRED: { retryable: false, summary: 'A console API request without a valid session or bearer token (401).' },
  CONN_ERR_CSRF: { retryable: false, summary: 'A console action without the session\'s CSRF token in x-csrf-token (403).' },
  CONN_ERR_LOGIN_RATE_LIMITED: { retryable: true, summary: 'Too many failed console logins from one client address (429, Retry-After).' },
  CONN_ERR_REQUEST_INVALID: { retryable: false, summary: 'A console API request with a missing or bad field (400); the message names it.' },
  CONN_ERR_BACKFILL_RUNNING: { retryable: true, summary: 'A console backfill of a source whose backfill is already running (409).' },
} as const satisfies Record<string, { retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ConnectorErrorOptions {
  cause?: unknown;
  /** Overrides the code's default. */
  retryable?: boolean;
  /** Milliseconds the other side asked us to wait (Retry-After), when it said. */
  retryAfterMs?: number;
  /** HTTP status, when the error is or came from an HTTP response. */
  status?: number;
  /** Extra facts for logs and the dead-letter file. Never secrets. */
  details?: Record<string, unknown>;
}

export class ConnectorError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: ConnectorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ConnectorError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.retryAfterMs = options.retryAfterMs;
    this.status = options.status;
    this.details = options.details;
  }
}

/** The plain form an error takes in the dead-letter file, logs and across processes. */
export interface ErrorRecord {
  code: string;
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
  status?: number;
  details?: Record<string, unknown>;
}

/**
 * What the dispatcher knows about any thrown value. Errors we did not raise on purpose are retryable:
 * a bug or an odd failure gets its attempts, then lands in the dead-letter file with its message.
 */
export function toErrorRecord(err: unknown): ErrorRecord {
  if (err instanceof ConnectorError) {
    const record: ErrorRecord = { code: err.code, message: err.message, retryable: err.retryable };
    if (err.retryAfterMs !== undefined) record.retryAfterMs = err.retryAfterMs;
    if (err.status !== undefined) record.status = err.status;
    if (err.details !== undefined) record.details = err.details;
    return record;
  }
  if (isErrorRecord(err)) return err;
  return { code: 'CONN_ERR_INTERNAL', message: describeThrown(err), retryable: true };
}

/**
 * The message of anything thrown, never throwing itself: String() of a null-prototype object throws,
 * and a getter can throw too. Whoever records an error (a lane settling an event) must not fail on it.
 */
function describeThrown(err: unknown): string {
  try {
    return err instanceof Error ? String(err.message) : String(err);
  } catch {
    try {
      return `${Object.prototype.toString.call(err)} was thrown, which cannot be printed`;
    } catch {
      return 'a value was thrown, which cannot be printed';
    }
  }
}

function isErrorRecord(value: unknown): value is ErrorRecord {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as ErrorRecord).code === 'string' &&
    (value as ErrorRecord).code in ERROR_CODES &&
    typeof (value as ErrorRecord).message === 'string' &&
    typeof (value as ErrorRecord).retryable === 'boolean'
  );
}
