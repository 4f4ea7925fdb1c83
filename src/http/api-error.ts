/**
 * A failed vendor call, as the HTTP core reports it. The code says what kind of failure it was and,
 * through `retryable`, whether the dispatcher should try the event again:
 *
 *   network error, connection refused/reset  CONN_ERR_HTTP_NETWORK       retryable
 *   no answer within the timeout             CONN_ERR_HTTP_TIMEOUT       retryable
 *   429                                      CONN_ERR_HTTP_RATE_LIMITED  retryable (retryAfterMs when said)
 *   5xx                                      CONN_ERR_HTTP_SERVER        retryable
 *   401, 403                                 CONN_ERR_HTTP_AUTH          permanent
 *   404                                      CONN_ERR_HTTP_NOT_FOUND     permanent
 *   other 4xx                                CONN_ERR_HTTP_CLIENT        permanent
 *   unreadable 2xx body, schema mismatch,
 *   download over its cap, odd status         CONN_ERR_HTTP_BAD_RESPONSE  permanent
 *   not sent: the vendor paused or down       CONN_ERR_VENDOR_PAUSED      retryable (retryAfterMs: until when),
 *   (rate-limiter.ts), or no slot in time                                not the event's fault
 */
import { ConnectorError } from '../errors.ts';

export type ApiErrorCode =
  | 'CONN_ERR_HTTP_NETWORK'
  | 'CONN_ERR_HTTP_TIMEOUT'
  | 'CONN_ERR_HTTP_RATE_LIMITED'
  | 'CONN_ERR_HTTP_SERVER'
  | 'CONN_ERR_HTTP_AUTH'
  | 'CONN_ERR_HTTP_NOT_FOUND'
  | 'CONN_ERR_HTTP_CLIENT'
  | 'CONN_ERR_HTTP_BAD_RESPONSE'
  | 'CONN_ERR_VENDOR_PAUSED';

/** Characters of a response body kept on an error. */
export const BODY_EXCERPT_CHARS = 500;

export interface ApiErrorInit {
  vendor: string;
  method: string;
  /** The request URL with secret-looking query values redacted (see safe-url.ts). */
  url: string;
  status?: number;
  /** Attempts made, including the first. */
  attempts: number;
  bodyExcerpt?: string;
  body?: unknown;
  retryAfterMs?: number;
  cause?: unknown;
}

export class ApiError extends ConnectorError {
  /** 'teamwork' | 'missive' | 'airtable' (whatever the client was built with). */
  readonly vendor: string;
  readonly method: string;
  /** The request URL, secret-looking query values redacted. */
  readonly url: string;
  /** Attempts made, including the first. */
  readonly attempts: number;
  /** The first 500 characters of the response body, for error statuses and unreadable bodies. */
  readonly bodyExcerpt: string | undefined;
  /** The parsed JSON body of an error response (e.g. Airtable's `{ error: { type } }`), when it was JSON. */
  readonly body: unknown;

  constructor(code: ApiErrorCode, message: string, init: ApiErrorInit) {
    const details: Record<string, unknown> = { vendor: init.vendor, method: init.method, url: init.url, attempts: init.attempts };
    if (init.bodyExcerpt !== undefined) details.bodyExcerpt = init.bodyExcerpt;
    super(code, message, { cause: init.cause, status: init.status, retryAfterMs: init.retryAfterMs, details });
    this.name = 'ApiError';
    this.vendor = init.vendor;
    this.method = init.method;
    this.url = init.url;
    this.attempts = init.attempts;
    this.bodyExcerpt = init.bodyExcerpt;
    this.body = init.body;
  }
}

/** The code for a final HTTP status that is not a success. */
export function codeForStatus(status: number): ApiErrorCode {
  if (status === 401 || status === 403) return 'CONN_ERR_HTTP_AUTH';
  if (status === 404) return 'CONN_ERR_HTTP_NOT_FOUND';
  if (status === 429) return 'CONN_ERR_HTTP_RATE_LIMITED';
  if (status >= 500 && status <= 599) return 'CONN_ERR_HTTP_SERVER';
  if (status >= 400 && status <= 499) return 'CONN_ERR_HTTP_CLIENT';
  return 'CONN_ERR_HTTP_BAD_RESPONSE';
}

/** A body cut to at most BODY_EXCERPT_CHARS characters, ending in "…" when cut. */
export function excerpt(text: string): string {
  return text.length <= BODY_EXCERPT_CHARS ? text : `${text.slice(0, BODY_EXCERPT_CHARS - 1)}…`;
}
