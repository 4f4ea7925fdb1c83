/**
 * The one HTTP client every vendor client is built on (Teamwork, Missive, Airtable): JSON in and out
 * over Node's global fetch (undici, keep-alive), a timeout per attempt, retries with backoff, Retry-After,
 * a shared rate limiter, and one typed `ApiError` for every failure.
 *
 * One call to `request` runs attempts until one succeeds or the call gives up:
 *
 *   acquire a limiter slot (waits out windows, concurrency and any 429 pause; caller abort rejects)
 *   -> fetch and read the whole body, under the timeout -> release the slot -> tell the limiter how
 *      it ended (answered, 429, failed: it keeps the vendor's state, see rate-limiter.ts)
 *   -> 2xx: parse JSON (empty body -> null), validate with the schema, return
 *   -> failure: classify (see api-error.ts). Try again after calculateDelay(attempt, vendor wait) when
 *      all of these hold, else throw the ApiError:
 *        - the code is retryable (network, timeout, 429, 5xx);
 *        - attempts remain (maxAttempts, counting the first);
 *        - repeating is safe: the request is idempotent, or it never left (connection refused, DNS),
 *          or the answer was 429, which says the request was not processed;
 *        - the wait is not longer than maxWaitMs (a longer one belongs to the dispatcher, which
 *          reschedules the event durably instead of holding it in memory).
 *
 * A call that ends while the vendor is paused or down (the limiter's `status()`), or whose limiter
 * slot would come later than maxWaitMs, throws CONN_ERR_VENDOR_PAUSED with `retryAfterMs` = until the
 * vendor can be asked again: not the request's fault, so the dispatcher holds the event until then and
 * spends no attempt on it. A vendor taken for down is not tried again within the call: the next request
 * after its pause is the probe, made by whichever caller comes first.
 *
 * So a POST (without `idempotent: true`) that timed out, lost its connection, or got a 5xx is NOT
 * repeated here, because the vendor may already have acted on it (a second POST could create a second
 * record). The error still says `retryable: true`; the caller decides whether redoing the whole
 * operation is safe.
 *
 * A 429 pauses the shared limiter until the vendor's Retry-After (seconds or HTTP date) or
 * X-RateLimit-Reset, or for `defaultRateLimitPauseMs` when it gave neither, so every caller in the
 * process waits, not just this one. A response saying "remaining 0" with a reset pauses it too, and so
 * does a 5xx with a Retry-After (the vendor saying when to come back).
 *
 * A caller abort (`signal`) is never retried and rejects with the signal's reason, as fetch does.
 * Timeouts run on real timers whatever the clock; waits between attempts run on the clock.
 *
 * Logging: one debug line per attempt (method, URL with secret-looking query values redacted, status,
 * ms, attempt) and one warn line per retry. Headers and bodies are never logged.
 */
import type { z } from 'zod';
import { pino } from 'pino';
import { ConnectorError, ERROR_CODES } from '../errors.ts';
import type { Logger } from '../log.ts';
import { calculateDelay, MINUTE, SECOND } from '../retry-policy.ts';
import { ApiError, codeForStatus, excerpt, type ApiErrorCode } from './api-error.ts';
import { systemClock, type Clock } from './clock.ts';
import { BudgetWait, describeVendorState, type RateLimiter } from './rate-limiter.ts';
import { exhaustedForMs, vendorWaitMs } from './rate-limit-headers.ts';
import { safePathAndQuery, safeUrl } from './safe-url.ts';

export { ApiError } from './api-error.ts';
export type { ApiErrorCode } from './api-error.ts';

export interface HttpClientOptions {
  /** Vendor name for errors and logs: 'teamwork' | 'missive' | 'airtable'. */
  vendor: string;
  /** Base URL; request paths are appended to it (its own path kept), e.g. https://public.missiveapp.com/v1 */
  baseUrl: string;
  /** Headers sent on every request (auth). Never logged, never sent to `absolute` URLs. */
  headers?: Record<string, string>;
  /** Per-attempt timeout, ms, covering the answer and reading its body. Default 30 s. */
  timeoutMs?: number;
  /** Attempts for retryable failures (network, timeout, 429, 5xx), including the first. Default 5. */
  maxAttempts?: number;
  /** The vendor's shared budget; every attempt acquires a slot from it. Default: none. */
  limiter?: RateLimiter;
  /** How long to pause everyone after a 429 with no Retry-After or X-RateLimit-Reset, ms. Default 60 s. */
  defaultRateLimitPauseMs?: number;
  /**
   * Longest wait within one call, ms: for a limiter slot (a pause, a full window) or between two
   * attempts. A longer one (a vendor asking for minutes) ends the call with a retryable ApiError
   * carrying `retryAfterMs` (CONN_ERR_VENDOR_PAUSED while the vendor is paused or down), so that the
   * dispatcher reschedules the event instead of holding a lane. Default 5 min.
   */
  maxWaitMs?: number;
  /** Time source for waits between attempts and 429 pauses; share it with the limiter. Default `systemClock`. */
  clock?: Clock;
  /** Default the global fetch. */
  fetch?: typeof fetch;
  /** Default: silent. A child `{ component: 'http', vendor }` is made from it. */
  log?: Logger;
}

export interface RequestOptions<T> {
  /** Query parameters; undefined values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  /** JSON-encoded, with content-type application/json. */
  body?: unknown;
  /** Extra headers for this request; they override the client's. */
  headers?: Record<string, string>;
  /** Validates the JSON response; a mismatch -> CONN_ERR_HTTP_BAD_RESPONSE. */
  schema?: z.ZodType<T>;
  /** Aborts the call: waiting for the limiter, the request, and waits between attempts. */
  signal?: AbortSignal;
  /**
   * Whether sending the request twice does no more than sending it once; only idempotent requests are
   * repeated after they may have reached the server. Default true for GET/HEAD/OPTIONS/PUT/DELETE,
   * false for POST/PATCH.
   */
  idempotent?: boolean;
  /** Absolute URL instead of baseUrl + path (e.g. an attachment's signed URL); auth headers NOT sent. */
  absolute?: boolean;
}

export interface HttpResponse<T> {
  status: number;
  headers: Headers;
  data: T;
}

export interface DownloadOptions {
  /** Largest body accepted, bytes; a bigger one -> CONN_ERR_HTTP_BAD_RESPONSE (not retried). */
  maxBytes: number;
  /** `url` is absolute (e.g. a signed URL); auth headers NOT sent. Default false: a path on baseUrl. */
  absolute?: boolean;
  signal?: AbortSignal;
}

export interface DownloadResponse {
  status: number;
  headers: Headers;
  body: Buffer;
}

const DEFAULT_TIMEOUT_MS = 30 * SECOND;
const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_RATE_LIMIT_PAUSE_MS = 1 * MINUTE;
const DEFAULT_MAX_WAIT_MS = 5 * MINUTE;
/** Bytes of an error response read from a download (for the excerpt); the rest is discarded. */
const ERROR_BODY_MAX_BYTES = 64 * 1024;
const USER_AGENT = 'teamwork-missive-connector';

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** Connection failures that happen before any byte of the request is sent: safe to repeat any request. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Why one attempt failed; becomes an ApiError when it is the last. */
interface Failure {
  code: ApiErrorCode;
  /** Reads after "<vendor> <METHOD> <path> ": "answered 503", "timed out after 30000 ms", ... */
  what: string;
  status?: number;
  /** False only when the request certainly never left (connection refused, DNS). */
  mayHaveReachedServer: boolean;
  /** What the vendor asked for (Retry-After, X-RateLimit-Reset), ms. */
  retryAfterMs?: number;
  bodyExcerpt?: string;
  body?: unknown;
  cause?: unknown;
}

class AttemptFailed extends Error {
  constructor(readonly failure: Failure) {
    super(failure.what);
  }
}

/** A finished exchange: the status, headers and the body as the reader returned it. */
interface Exchange<B> {
  status: number;
  headers: Headers;
  body: B;
}

/** What `run` needs to know about one call. */
interface Call<B, R> {
  method: string;
  url: URL;
  headers: Headers;
  body: string | undefined;
  signal: AbortSignal | undefined;
  idempotent: boolean;
  /** Reads the response body inside the timeout, before the limiter slot is released. */
  read: (response: Response) => Promise<B>;
  /** Turns a finished exchange into the result, or throws AttemptFailed. */
  finish: (exchange: Exchange<B>) => R;
}

export class HttpClient {
  private readonly vendor: string;
  private readonly base: URL;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly limiter: RateLimiter | undefined;
  private readonly defaultRateLimitPauseMs: number;
  private readonly maxWaitMs: number;
  private readonly clock: Clock;
  private readonly fetch: typeof fetch;
  private readonly log: Logger;

  constructor(options: HttpClientOptions) {
    this.vendor = options.vendor;
    try {
      this.base = new URL(options.baseUrl);
    } catch (err) {
      throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `${options.vendor} base URL is not a URL: ${JSON.stringify(options.baseUrl)}`, { cause: err });
    }
    this.headers = options.headers ?? {};
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!(this.timeoutMs > 0) || !Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) {
      throw new ConnectorError(
        'CONN_ERR_CONFIG_INVALID',
        `${options.vendor} HTTP client needs timeoutMs > 0 and an integer maxAttempts >= 1, got ${this.timeoutMs} and ${this.maxAttempts}`,
      );
    }
    this.limiter = options.limiter;
    this.defaultRateLimitPauseMs = options.defaultRateLimitPauseMs ?? DEFAULT_RATE_LIMIT_PAUSE_MS;
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
    this.clock = options.clock ?? systemClock;
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'http', vendor: options.vendor });
  }

  async request<T = unknown>(method: string, path: string, options: RequestOptions<T> = {}): Promise<HttpResponse<T>> {
    const verb = method.toUpperCase();
    const url = this.resolve(path, options.absolute ?? false);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.append(name, String(value));
    }
    const headers = this.headersFor(options.absolute ?? false, 'application/json', options.headers);
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    }
    return this.run<string, HttpResponse<T>>({
      method: verb,
      url,
      headers,
      body,
      signal: options.signal,
      idempotent: options.idempotent ?? IDEMPOTENT_METHODS.has(verb),
      read: (response) => response.text(),
      finish: (exchange) => ({
        status: exchange.status,
        headers: exchange.headers,
        data: this.parse<T>(exchange, options.schema),
      }),
    });
  }

  get<T = unknown>(path: string, options?: RequestOptions<T>): Promise<HttpResponse<T>> {
    return this.request<T>('GET', path, options);
  }

  /** Raw bytes with a size cap (CONN_ERR_HTTP_BAD_RESPONSE if over), for downloads. */
  async download(url: string, options: DownloadOptions): Promise<DownloadResponse> {
    const target = this.resolve(url, options.absolute ?? false);
    type Read = { bytes: Buffer; over: boolean };
    return this.run<Read, DownloadResponse>({
      method: 'GET',
      url: target,
      headers: this.headersFor(options.absolute ?? false, '*/*', undefined),
      body: undefined,
      signal: options.signal,
      idempotent: true,
      // An error body is only read for its excerpt: truncated, never refused.
      read: (response) =>
        response.ok ? readCapped(response, options.maxBytes, true) : readCapped(response, ERROR_BODY_MAX_BYTES, false),
      finish: (exchange) => {
        if (exchange.status < 200 || exchange.status > 299) {
          throw new AttemptFailed(this.statusFailure(exchange.status, exchange.headers, exchange.body.bytes.toString('utf8')));
        }
        if (exchange.body.over) {
          throw new AttemptFailed({
            code: 'CONN_ERR_HTTP_BAD_RESPONSE',
            what: `answered ${exchange.status} with a body over the ${options.maxBytes}-byte download cap`,
            status: exchange.status,
            mayHaveReachedServer: true,
          });
        }
        return { status: exchange.status, headers: exchange.headers, body: exchange.body.bytes };
      },
    });
  }

  /** The attempt loop (see the header comment for when it tries again). */
  private async run<B, R>(call: Call<B, R>): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      call.signal?.throwIfAborted();
      let failure: Failure;
      try {
        const exchange = await this.attempt(call, attempt);
        return call.finish(exchange);
      } catch (err) {
        if (err instanceof BudgetWait) throw this.pausedError(call, err.until, err.reason, attempt - 1);
        if (!(err instanceof AttemptFailed)) throw err;
        failure = err.failure;
      }

      if (failure.code === 'CONN_ERR_HTTP_RATE_LIMITED') {
        const waitMs = failure.retryAfterMs ?? this.defaultRateLimitPauseMs;
        this.limiter?.pauseUntil(this.clock.now() + waitMs, `answered 429, asking to wait ${seconds(waitMs)}`);
      } else if (failure.code === 'CONN_ERR_HTTP_SERVER' && failure.retryAfterMs !== undefined) {
        this.limiter?.pauseUntil(this.clock.now() + failure.retryAfterMs, `answered ${failure.status ?? '5xx'}, asking to wait ${seconds(failure.retryAfterMs)}`);
      }
      const retryable = ERROR_CODES[failure.code].retryable;
      const safeToRepeat = call.idempotent || !failure.mayHaveReachedServer || failure.code === 'CONN_ERR_HTTP_RATE_LIMITED';
      const waitAsked = failure.retryAfterMs ?? (failure.code === 'CONN_ERR_HTTP_RATE_LIMITED' ? this.defaultRateLimitPauseMs : undefined);
      const delay = calculateDelay(attempt, waitAsked);

      // The vendor's state after this failure: a vendor taken for down is not retried in-call (the
      // dispatcher holds the event, and its next claim is the probe).
      const state = retryable ? this.limiter?.status() : undefined;
      // Why this attempt is the last, if it is (read after "... answered 503 after 2 attempts").
      let stop: string | undefined;
      if (!retryable || attempt >= this.maxAttempts || state?.state === 'unavailable') stop = '';
      else if (!safeToRepeat) stop = `; not repeated: ${call.method} is not idempotent and may have reached the server`;
      else if (delay > this.maxWaitMs) stop = `; not waiting ${seconds(delay)} in-call (limit ${seconds(this.maxWaitMs)})`;
      if (stop !== undefined) {
        if (state !== undefined && state.state !== 'ok' && state.until > this.clock.now()) {
          throw this.pausedError(call, state.until, describeVendorState(state), attempt, failure);
        }
        throw this.toApiError(call, failure, attempt, `${attemptsText(attempt)}${stop}`);
      }

      this.log.warn(
        { method: call.method, url: this.logUrl(call.url), attempt, status: failure.status, code: failure.code, delayMs: delay },
        `retrying ${this.vendor} ${call.method} ${this.shortTarget(call.url)}: ${failure.what} (attempt ${attempt} of ${this.maxAttempts}); next in ${delay} ms`,
      );
      await this.clock.sleep(delay, call.signal);
    }
  }

  /** One attempt: limiter slot, fetch, body read, all under the timeout; throws AttemptFailed on failure. */
  private async attempt<B, R>(call: Call<B, R>, attempt: number): Promise<Exchange<B>> {
    const release = this.limiter === undefined ? () => {} : await this.limiter.acquire(call.signal, this.maxWaitMs);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new DOMException(`no answer within ${this.timeoutMs} ms`, 'TimeoutError'));
    }, this.timeoutMs);
    const onCallerAbort = (): void => controller.abort(call.signal?.reason);
    call.signal?.addEventListener('abort', onCallerAbort, { once: true });
    const started = performance.now();
    let status: number | undefined;
    try {
      const response = await this.fetch(call.url, {
        method: call.method,
        headers: call.headers,
        body: call.body,
        signal: controller.signal,
      });
      status = response.status;
      const body = await call.read(response);
      const exchange = { status: response.status, headers: response.headers, body };
      const outcome = status === 429 ? 'rate-limited' : status >= 500 ? 'failed' : 'answered';
      this.limiter?.record(outcome, call.url.pathname, outcome === 'failed' ? `${call.method} ${this.shortTarget(call.url)} answered ${status}` : undefined);
      // Credentials refused (401/403) or accepted (2xx): the vendor's auth state, for alerts.
      this.limiter?.recordAuth(status, `${call.method} ${this.shortTarget(call.url)} answered ${status}`);
      const now = this.clock.now();
      // (A 429's own pause, with its reason, is taken in `run`.)
      const exhausted = status === 429 ? undefined : exhaustedForMs(response.headers, now);
      if (exhausted !== undefined) this.limiter?.pauseUntil(now + exhausted, `answered with X-RateLimit-Remaining 0 (the budget resets in ${seconds(exhausted)})`);
      this.logAttempt(call, attempt, started, { status });
      return exchange;
    } catch (err) {
      if (call.signal?.aborted) {
        this.logAttempt(call, attempt, started, { status, error: 'aborted by caller' });
        throw call.signal.reason;
      }
      if (timedOut) {
        this.limiter?.record('failed', call.url.pathname, `${call.method} ${this.shortTarget(call.url)} did not answer within ${this.timeoutMs} ms`);
        this.logAttempt(call, attempt, started, { status, error: 'timeout' });
        throw new AttemptFailed({
          code: 'CONN_ERR_HTTP_TIMEOUT',
          what: `did not answer within ${this.timeoutMs} ms`,
          mayHaveReachedServer: true,
          cause: err,
        });
      }
      const code = networkCode(err);
      if (code === undefined) throw err; // not a network failure: a bug or a bad header value; not retried
      this.limiter?.record('failed', call.url.pathname, `${call.method} ${this.shortTarget(call.url)} ${NOT_SENT_CODES.has(code) ? 'could not connect' : 'lost the connection'} (${code})`);
      this.logAttempt(call, attempt, started, { status, error: code });
      const notSent = NOT_SENT_CODES.has(code);
      throw new AttemptFailed({
        code: 'CONN_ERR_HTTP_NETWORK',
        what: notSent ? `could not connect (${code})` : `lost the connection (${code}: ${innermostMessage(err)})`,
        mayHaveReachedServer: !notSent,
        cause: err,
      });
    } finally {
      clearTimeout(timer);
      call.signal?.removeEventListener('abort', onCallerAbort);
      release();
    }
  }

  /** The JSON of a finished exchange, or throws AttemptFailed. */
  private parse<T>(exchange: Exchange<string>, schema: z.ZodType<T> | undefined): T {
    const { status, headers, body: text } = exchange;
    if (status < 200 || status > 299) throw new AttemptFailed(this.statusFailure(status, headers, text));
    let data: unknown = null;
    if (text.trim() !== '') {
      try {
        data = JSON.parse(text);
      } catch (err) {
        throw new AttemptFailed({
          code: 'CONN_ERR_HTTP_BAD_RESPONSE',
          what: `answered ${status} with a body that is not JSON (${headers.get('content-type') ?? 'no content-type'})`,
          status,
          mayHaveReachedServer: true,
          bodyExcerpt: excerpt(text),
          cause: err,
        });
      }
    }
    if (schema === undefined) return data as T;
    const checked = schema.safeParse(data);
    if (checked.success) return checked.data;
    // Issues name paths and expected types, never the values: a body may hold customer data.
    const issues = checked.error.issues
      .slice(0, 3)
      .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
      .join('; ');
    const more = checked.error.issues.length > 3 ? ` (+${checked.error.issues.length - 3} more)` : '';
    throw new AttemptFailed({
      code: 'CONN_ERR_HTTP_BAD_RESPONSE',
      what: `answered ${status} with JSON of an unexpected shape: ${issues}${more}`,
      status,
      mayHaveReachedServer: true,
      cause: checked.error,
    });
  }

  /** The failure for a non-2xx answer. */
  private statusFailure(status: number, headers: Headers, text: string): Failure {
    const code = codeForStatus(status);
    const failure: Failure = { code, what: `answered ${status}${STATUS_HINTS[code] ?? ''}`, status, mayHaveReachedServer: true };
    const waitMs = vendorWaitMs(headers, this.clock.now());
    if (waitMs !== undefined) failure.retryAfterMs = waitMs;
    if (text !== '') {
      failure.bodyExcerpt = excerpt(text);
      try {
        failure.body = JSON.parse(text);
      } catch {
        // Not JSON (an HTML error page, plain text): the excerpt is all there is.
      }
    }
    return failure;
  }

  private toApiError<B, R>(call: Call<B, R>, failure: Failure, attempts: number, ending: string): ApiError {
    const asked = failure.retryAfterMs !== undefined ? `; ${this.vendor} asked to wait ${seconds(failure.retryAfterMs)}` : '';
    const message = `${this.vendor} ${call.method} ${this.shortTarget(call.url)} ${failure.what}${ending}${asked}`;
    return new ApiError(failure.code, message, {
      vendor: this.vendor,
      method: call.method,
      url: safeUrl(call.url),
      status: failure.status,
      attempts,
      bodyExcerpt: failure.bodyExcerpt,
      body: failure.body,
      retryAfterMs: failure.retryAfterMs,
      cause: failure.cause,
    });
  }

  /**
   * CONN_ERR_VENDOR_PAUSED: the call ends because the vendor cannot be asked before `until` (clock ms);
   * `failure` is the last attempt's, when one was made.
   */
  private pausedError<B, R>(call: Call<B, R>, until: number, reason: string, attempts: number, failure?: Failure): ApiError {
    const retryAfterMs = Math.max(0, until - this.clock.now());
    const last = failure === undefined ? '' : ` (last attempt: ${failure.what})`;
    const message = `${this.vendor} ${call.method} ${this.shortTarget(call.url)} not sent before ${new Date(until).toISOString()}: ${this.vendor} is ${reason}${last}`;
    return new ApiError('CONN_ERR_VENDOR_PAUSED', message, {
      vendor: this.vendor,
      method: call.method,
      url: safeUrl(call.url),
      status: failure?.status,
      attempts,
      retryAfterMs,
      cause: failure?.cause,
    });
  }

  /**
   * baseUrl + path, or `path` itself when absolute. A full URL passed without `absolute` is accepted
   * only on the base's own origin (vendors' "next page" links), so credentials never go elsewhere.
   */
  private resolve(path: string, absolute: boolean): URL {
    if (absolute) return new URL(path);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
      const url = new URL(path);
      if (url.origin !== this.base.origin) {
        throw new ConnectorError(
          'CONN_ERR_INTERNAL',
          `${this.vendor}: refusing to send credentials to ${url.origin} (not ${this.base.origin}); pass absolute: true for foreign URLs`,
        );
      }
      return url;
    }
    const basePath = this.base.pathname.replace(/\/+$/, '');
    return new URL(`${this.base.origin}${basePath}${path.startsWith('/') ? path : `/${path}`}`);
  }

  private headersFor(absolute: boolean, accept: string, extra: Record<string, string> | undefined): Headers {
    const headers = new Headers({ accept, 'user-agent': USER_AGENT });
    if (!absolute) for (const [name, value] of Object.entries(this.headers)) headers.set(name, value);
    for (const [name, value] of Object.entries(extra ?? {})) headers.set(name, value);
    return headers;
  }

  /** Method and path for messages: the base's path for our own URLs, host and path for foreign ones. */
  private shortTarget(url: URL): string {
    return url.origin === this.base.origin ? url.pathname : `${url.host}${url.pathname}`;
  }

  private logUrl(url: URL): string {
    return url.origin === this.base.origin ? safePathAndQuery(url) : safeUrl(url);
  }

  private logAttempt<B, R>(call: Call<B, R>, attempt: number, started: number, outcome: { status?: number; error?: string }): void {
    this.log.debug(
      { method: call.method, url: this.logUrl(call.url), ...outcome, ms: Math.round(performance.now() - started), attempt },
      'http request',
    );
  }
}

const STATUS_HINTS: Partial<Record<ApiErrorCode, string>> = {
  CONN_ERR_HTTP_AUTH: ' (credentials refused: check the API token and its permissions)',
  CONN_ERR_HTTP_NOT_FOUND: ' (not found)',
  CONN_ERR_HTTP_RATE_LIMITED: ' (rate limited)',
  CONN_ERR_HTTP_BAD_RESPONSE: ' (not a status this client handles)',
};

function attemptsText(attempts: number): string {
  return attempts > 1 ? ` after ${attempts} attempts` : '';
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/**
 * The system or undici error code of a network failure (ECONNRESET, ECONNREFUSED, UND_ERR_SOCKET, ...),
 * looking through `cause` chains and AggregateErrors; 'FETCH_FAILED' for fetch's own network errors that
 * carry no code; undefined when the error is not a network failure at all.
 */
function networkCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  const visit = (value: unknown): string | undefined => {
    if (typeof value !== 'object' || value === null || seen.has(value)) return undefined;
    seen.add(value);
    const code = (value as { code?: unknown }).code;
    if (typeof code === 'string' && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(code)) return code;
    if (value instanceof AggregateError) {
      for (const inner of value.errors) {
        const found = visit(inner);
        if (found !== undefined) return found;
      }
    }
    return visit((value as { cause?: unknown }).cause);
  };
  const code = visit(err);
  if (code !== undefined) return code;
  if (err instanceof TypeError && (err.message === 'fetch failed' || err.message === 'terminated')) return 'FETCH_FAILED';
  return undefined;
}

/** The message of the deepest `cause` ("other side closed" rather than "fetch failed"). */
function innermostMessage(err: unknown): string {
  let current: unknown = err;
  let message = err instanceof Error ? err.message : String(err);
  const seen = new Set<unknown>();
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    if (current.message !== '') message = current.message;
    current = current.cause;
  }
  return message;
}

/**
 * Reads a body up to `maxBytes`. Past the cap it stops reading (the connection is dropped rather than
 * drained) and reports `over`, keeping the first `maxBytes`. With `refuseDeclared`, a Content-Length
 * over the cap is refused before reading anything.
 */
async function readCapped(response: Response, maxBytes: number, refuseDeclared: boolean): Promise<{ bytes: Buffer; over: boolean }> {
  const declared = Number(response.headers.get('content-length') ?? '');
  if (refuseDeclared && Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    return { bytes: Buffer.alloc(0), over: true };
  }
  if (response.body === null) return { bytes: Buffer.alloc(0), over: false };
  const reader = response.body.getReader();
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes: Buffer.concat(chunks), over: false };
    if (total + value.byteLength > maxBytes) {
      chunks.push(Buffer.from(value.buffer, value.byteOffset, maxBytes - total));
      await reader.cancel();
      return { bytes: Buffer.concat(chunks), over: true };
    }
    chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    total += value.byteLength;
  }
}
