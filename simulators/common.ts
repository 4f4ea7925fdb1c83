/**
 * What every vendor simulator shares: a request log, run-time fault switches, a clock that tests can
 * control, a Fastify server on a port of its own, a versioned entity store (for delayed consistency), a
 * JSON text cache, a fixed-window rate counter, a webhook sender with delivery faults, an activity loop
 * and the `/__sim` control routes. Simulators are test and demo infrastructure; the product's runtime
 * never imports them.
 *
 * Faults (each switchable at run time through `faults.set({...})`):
 * - latencyMs           added to every API response (inside the vendor's concurrency slot)
 * - errorRate           share of API requests answered 5xx (0..1)
 * - rateLimitBurst      the next N API requests are answered 429 (with the vendor's 429 headers)
 * - resetRate           share of API requests whose connection is reset without an answer (0..1)
 * - dropRate            share of webhook deliveries that never leave (the change still happens)
 * - duplicateRate       share of webhook deliveries sent twice
 * - reorder             hold deliveries and send them shuffled (see `WebhookSender`)
 * - consistencyDelayMs  the API shows a change this long after its webhook was sent (`VersionedStore`)
 * Paths under `/__sim` (the simulators' control routes) and any prefix in `faultFreePrefixes` are never
 * touched by API faults.
 */
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

// ---------------------------------------------------------------------------------------------------
// Faults

export interface ApiFaults {
  /** Added to every API response, ms. Default 0. */
  latencyMs: number;
  /** Share of API requests answered 503 (0..1). Default 0. */
  errorRate: number;
  /** The next N API requests are answered 429. Counts down as requests arrive. Default 0. */
  rateLimitBurst: number;
  /** Share of API requests whose connection is reset without an answer (0..1). Default 0. */
  resetRate: number;
}

export interface WebhookFaults {
  /** Share of webhook deliveries that never leave although the change happened (0..1). Default 0. */
  dropRate: number;
  /** Share of webhook deliveries sent twice, byte for byte (0..1). Default 0. */
  duplicateRate: number;
  /**
   * Hold deliveries and send them in a shuffled order when the sender flushes (on `flush()` or after
   * its reorder window). The shuffle never keeps the original order when two or more are held.
   */
  reorder: boolean;
  /** The API shows a change only this many ms after its webhook was sent (delayed consistency). */
  consistencyDelayMs: number;
}

export type Faults = ApiFaults & WebhookFaults;

export const NO_FAULTS: Faults = {
  latencyMs: 0,
  errorRate: 0,
  rateLimitBurst: 0,
  resetRate: 0,
  dropRate: 0,
  duplicateRate: 0,
  reorder: false,
  consistencyDelayMs: 0,
};

/**
 * The fault switches of one simulator. Decisions that need chance draw from `random`, a seeded
 * generator when the simulator was given a seed, so a run with the same seed injects the same faults.
 */
export class FaultControl {
  private current: Faults = { ...NO_FAULTS };
  private readonly listeners: Array<(faults: Readonly<Faults>) => void> = [];

  constructor(readonly random: () => number = Math.random) {}

  get(): Readonly<Faults> {
    return this.current;
  }

  set(change: Partial<Faults>): void {
    this.current = { ...this.current, ...change };
    for (const listener of this.listeners) listener(this.current);
  }

  reset(): void {
    this.set({ ...NO_FAULTS });
  }

  /** Called after every change (the webhook sender uses it to release held deliveries). */
  onChange(listener: (faults: Readonly<Faults>) => void): void {
    this.listeners.push(listener);
  }

  /** Takes one request from the 429 burst; true when this request must get 429. */
  takeRateLimitBurst(): boolean {
    if (this.current.rateLimitBurst <= 0) return false;
    this.current = { ...this.current, rateLimitBurst: this.current.rateLimitBurst - 1 };
    return true;
  }

  /** True with probability `rate` (0 never, 1 always). */
  chance(rate: number): boolean {
    if (rate <= 0) return false;
    if (rate >= 1) return true;
    return this.random() < rate;
  }
}

// ---------------------------------------------------------------------------------------------------
// Request log

/** One request a simulator saw. */
export interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  /** The status sent, or 0 when the connection was reset without an answer. */
  status: number;
  /** Clock time (ms) the request arrived and the answer left. */
  startedAt: number;
  endedAt: number;
}

/**
 * Every request a simulator answered (or reset), oldest first. Bounded: past `capacity` entries the
 * oldest are dropped, so a long `npm run sim` session does not grow without end.
 */
export class RequestLog {
  readonly entries: SeenRequest[] = [];

  /** @param capacity most entries kept; default 100,000. */
  constructor(private readonly capacity = 100_000) {}

  add(entry: SeenRequest): void {
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
  }

  clear(): void {
    this.entries.length = 0;
  }

  /** Entries matching `filter`, e.g. `requests.find((r) => r.path === '/v1/conversations')`. */
  find(filter: (r: SeenRequest) => boolean): SeenRequest[] {
    return this.entries.filter(filter);
  }

  /** The most requests in flight at the same time. */
  maxConcurrency(filter: (r: SeenRequest) => boolean = () => true): number {
    const points: Array<[number, number]> = [];
    for (const r of this.entries.filter(filter)) {
      points.push([r.startedAt, 1], [r.endedAt, -1]);
    }
    points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let now = 0;
    let max = 0;
    for (const [, delta] of points) {
      now += delta;
      max = Math.max(max, now);
    }
    return max;
  }

  /** The most requests that started within any window of `windowMs`. */
  maxInWindow(windowMs: number, filter: (r: SeenRequest) => boolean = () => true): number {
    const starts = this.entries.filter(filter).map((r) => r.startedAt).sort((a, b) => a - b);
    let max = 0;
    let lo = 0;
    for (let hi = 0; hi < starts.length; hi++) {
      while ((starts[hi] as number) - (starts[lo] as number) >= windowMs) lo++;
      max = Math.max(max, hi - lo + 1);
    }
    return max;
  }
}

// ---------------------------------------------------------------------------------------------------
// Clocks

/** A clock that can run faster than real time or be set by hand, so vendor windows pass in seconds. */
export interface SimClock {
  now(): number;
}

export const realClock: SimClock = { now: () => Date.now() };

/** A clock that only moves when told to. Starts at `start` (ms since the epoch; default now). */
export class ManualClock implements SimClock {
  private current: number;

  constructor(start: number = Date.now()) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  set(ms: number): void {
    this.current = ms;
  }

  advance(ms: number): void {
    this.current += ms;
  }
}

/** A clock that runs `speed` times faster than real time, starting at `start` (default now). */
export function acceleratedClock(speed: number, start: number = Date.now()): SimClock {
  const origin = Date.now();
  return { now: () => start + Math.round((Date.now() - origin) * speed) };
}

// ---------------------------------------------------------------------------------------------------
// Server

/** What every simulator's `start` returns. */
export interface RunningSimulator {
  /** Base URL of the API, e.g. http://127.0.0.1:43121 */
  url: string;
  requests: RequestLog;
  faults: FaultControl;
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  clock?: SimClock;
  /** Paths that faults never touch (e.g. the simulator's own control routes). Default ['/__sim']. */
  faultFreePrefixes?: readonly string[];
  /** Source of chance for faults; default Math.random. */
  random?: () => number;
  /**
   * Runs first for every faultable request, before any fault: the vendor's authentication and rate
   * limiter. It may answer (return the reply) to stop the request there. Latency injected by the
   * faults is spent after the gate, so it counts against the vendor's concurrency limit.
   */
  gate?: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | void> | FastifyReply | void;
  /**
   * Called exactly once for every request that passed through `gate`, when its answer left, its
   * connection was reset by a fault, or the client gave up: where the vendor frees a concurrency slot.
   */
  release?: (request: FastifyRequest) => void;
  /** Answers a request taken by the `rateLimitBurst` fault; default a bare 429 with Retry-After: 1. */
  rateLimitReply?: (request: FastifyRequest, reply: FastifyReply) => FastifyReply;
}

/**
 * A Fastify server with the request log and the API fault switches installed. Vendor routes are added
 * by `register` before it listens. Order per request: gate (vendor auth and limits), connection reset,
 * latency, 429 burst, 5xx, then the route.
 */
export async function startServer(
  register: (app: FastifyInstance, tools: { faults: FaultControl; requests: RequestLog; clock: SimClock }) => void | Promise<void>,
  options: ServerOptions = {},
): Promise<RunningSimulator & { app: FastifyInstance }> {
  const app = Fastify({ logger: false, bodyLimit: 50 * 1024 * 1024, routerOptions: { maxParamLength: 4096 } });
  const faults = new FaultControl(options.random);
  const requests = new RequestLog();
  const clock = options.clock ?? realClock;
  const faultFree = options.faultFreePrefixes ?? ['/__sim'];
  const started = new WeakMap<FastifyRequest, number>();
  const gated = new WeakSet<FastifyRequest>();
  const release = (request: FastifyRequest): void => {
    if (!gated.has(request)) return;
    gated.delete(request);
    options.release?.(request);
  };
  const sockets = new Set<Socket>();

  app.server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  const record = (request: FastifyRequest, status: number): void => {
    const [pathPart = '', queryPart = ''] = request.url.split('?');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(request.headers)) if (typeof v === 'string') headers[k] = v;
    requests.add({
      method: request.method,
      path: pathPart,
      query: Object.fromEntries(new URLSearchParams(queryPart)),
      headers,
      status,
      startedAt: started.get(request) ?? clock.now(),
      endedAt: clock.now(),
    });
  };

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    started.set(request, clock.now());
    if (faultFree.some((p) => request.url.startsWith(p))) return;
    if (options.gate) {
      gated.add(request);
      const answered = await options.gate(request, reply);
      if (answered !== undefined || reply.sent) return reply;
    }
    const f = faults.get();
    if (faults.chance(f.resetRate)) {
      record(request, 0);
      release(request);
      request.raw.socket.destroy();
      return reply.hijack();
    }
    if (f.latencyMs > 0) await new Promise((r) => setTimeout(r, f.latencyMs));
    if (faults.takeRateLimitBurst()) {
      if (options.rateLimitReply) return options.rateLimitReply(request, reply);
      return reply.code(429).header('retry-after', '1').send({ error: 'Too Many Requests' });
    }
    if (faults.chance(f.errorRate)) {
      return reply.code(503).send({ error: 'Service Unavailable (simulated)' });
    }
  });

  app.addHook('onResponse', async (request: FastifyRequest, reply: FastifyReply) => {
    release(request);
    record(request, reply.statusCode);
  });
  app.addHook('onRequestAbort', async (request: FastifyRequest) => {
    release(request);
  });

  await register(app, { faults, requests, clock });
  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    app,
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    requests,
    faults,
    stop: async () => {
      // Keep-alive clients would hold close() open until their idle timeout; end them now.
      for (const socket of sockets) socket.destroy();
      await app.close();
    },
  };
}

/** The Basic-auth user name of an `Authorization` header, or null when it is not Basic. */
export function basicAuthUser(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!match) return null;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? decoded : decoded.slice(0, colon);
}

/** The token of a `Bearer` `Authorization` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? (match[1] as string) : null;
}

// ---------------------------------------------------------------------------------------------------
// Versioned store (delayed consistency)

/**
 * Entities by id, each with the versions the API may show. A write adds a version that becomes
 * visible at `visibleAt` (now + the consistency delay); reads at time t see the newest write whose
 * `visibleAt` <= t, so during the delay the API keeps serving the previous version (or nothing, for a
 * new entity). Mutations build on `latest()`, the newest write whether visible or not. Versions older
 * than the visible one are pruned as soon as they can no longer be read.
 */
export class VersionedStore<T> {
  private readonly versions = new Map<string, Array<{ visibleAt: number; value: T }>>();
  /** Ids in insertion order, for stable iteration. */
  private readonly order: string[] = [];
  /** The earliest `visibleAt` still in the future, or Infinity when every version is visible. */
  private nextPending = Infinity;
  /** Cached visible values, valid while nothing changed and no pending version came due. */
  private visibleCache: T[] | null = null;

  constructor(private readonly clock: SimClock) {}

  put(id: string, value: T, delayMs = 0): void {
    const visibleAt = this.clock.now() + Math.max(0, delayMs);
    let list = this.versions.get(id);
    if (!list) {
      list = [];
      this.versions.set(id, list);
      this.order.push(id);
    }
    list.push({ visibleAt, value });
    if (delayMs > 0) this.nextPending = Math.min(this.nextPending, visibleAt);
    this.visibleCache = null;
    this.prune(id);
  }

  /** The version the API shows now, or undefined when none is visible yet. */
  get(id: string): T | undefined {
    const list = this.versions.get(id);
    if (!list) return undefined;
    const now = this.clock.now();
    for (let i = list.length - 1; i >= 0; i--) {
      const version = list[i] as { visibleAt: number; value: T };
      if (version.visibleAt <= now) return version.value;
    }
    return undefined;
  }

  /** The newest write, visible or not: what the next mutation builds on. */
  latest(id: string): T | undefined {
    const list = this.versions.get(id);
    return list && list.length > 0 ? (list[list.length - 1] as { value: T }).value : undefined;
  }

  has(id: string): boolean {
    return this.versions.has(id);
  }

  /** Ids of every entity ever written, oldest first. */
  ids(): readonly string[] {
    return this.order;
  }

  /** Every entity the API shows now, in insertion order. */
  visible(): readonly T[] {
    const now = this.clock.now();
    if (now >= this.nextPending) {
      this.visibleCache = null;
      this.recomputePending(now);
    }
    if (this.visibleCache) return this.visibleCache;
    const out: T[] = [];
    for (const id of this.order) {
      const value = this.get(id);
      if (value !== undefined) out.push(value);
    }
    this.visibleCache = out;
    return out;
  }

  /** Every entity's newest write, in insertion order. */
  latestAll(): T[] {
    const out: T[] = [];
    for (const id of this.order) {
      const value = this.latest(id);
      if (value !== undefined) out.push(value);
    }
    return out;
  }

  get size(): number {
    return this.order.length;
  }

  private recomputePending(now: number): void {
    let next = Infinity;
    for (const [id, list] of this.versions) {
      this.prune(id);
      for (const version of list) if (version.visibleAt > now) next = Math.min(next, version.visibleAt);
    }
    this.nextPending = next;
  }

  private prune(id: string): void {
    const list = this.versions.get(id);
    if (!list || list.length < 2) return;
    const now = this.clock.now();
    let lastVisible = -1;
    for (let i = list.length - 1; i >= 0; i--) {
      if ((list[i] as { visibleAt: number }).visibleAt <= now) {
        lastVisible = i;
        break;
      }
    }
    if (lastVisible > 0) list.splice(0, lastVisible);
  }
}

// ---------------------------------------------------------------------------------------------------
// JSON text caching

/**
 * Memoises the JSON text of one rendering per record. Records are immutable versions (a change replaces
 * the object), so a cached text is never stale; this is what lets a simulator serve thousands of requests a
 * second.
 */
export class JsonCache<T extends object> {
  private readonly cache = new WeakMap<T, { text: string; bytes: Buffer | null }>();

  constructor(private readonly render: (source: T) => unknown) {}

  private entry(source: T): { text: string; bytes: Buffer | null } {
    let entry = this.cache.get(source);
    if (entry === undefined) {
      entry = { text: JSON.stringify(this.render(source)), bytes: null };
      this.cache.set(source, entry);
    }
    return entry;
  }

  get(source: T): string {
    return this.entry(source).text;
  }

  /** The same text as UTF-8 bytes, encoded once. */
  bytes(source: T): Buffer {
    const entry = this.entry(source);
    entry.bytes ??= Buffer.from(entry.text, 'utf8');
    return entry.bytes;
  }
}

/** Joins JSON fragments (text or already-encoded bytes) into one UTF-8 body without re-encoding the bytes. */
export function jsonBytes(parts: ReadonlyArray<string | Buffer>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}

/** `[a,b,c]` from encoded items. */
export function jsonArrayParts(items: readonly Buffer[]): Array<string | Buffer> {
  const parts: Array<string | Buffer> = ['['];
  items.forEach((item, i) => {
    if (i > 0) parts.push(',');
    parts.push(item);
  });
  parts.push(']');
  return parts;
}

/** `{"key": <raw json>, ...}` from already-serialised values. */
export function jsonObject(entries: Iterable<readonly [string, string]>): string {
  const parts: string[] = [];
  for (const [key, raw] of entries) parts.push(`${JSON.stringify(key)}:${raw}`);
  return `{${parts.join(',')}}`;
}

// ---------------------------------------------------------------------------------------------------
// Rate limiting

/**
 * A fixed window counter: `limit` requests per `windowMs`, the window opening with the first request
 * after the previous one closed. `resetAt` is when the current window closes (clock ms).
 */
export class FixedWindow {
  private windowStart = -Infinity;
  private used = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly clock: SimClock,
  ) {}

  private roll(): void {
    const now = this.clock.now();
    if (now >= this.windowStart + this.windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
  }

  /** Counts one request when there is room; false (and nothing counted) when the window is full. */
  take(): boolean {
    this.roll();
    if (this.used >= this.limit) return false;
    this.used++;
    return true;
  }

  remaining(): number {
    this.roll();
    return Math.max(0, this.limit - this.used);
  }

  resetAt(): number {
    this.roll();
    return this.windowStart + this.windowMs;
  }
}

// ---------------------------------------------------------------------------------------------------
// Webhook sender

/** One webhook request a simulator made (or decided not to make). */
export interface Delivery {
  /** Sequence number of the logical delivery; a duplicate or a retry keeps it. */
  seq: number;
  /** The registration (Teamwork webhook id, Missive rule id) it was sent for. */
  target: string;
  /** Vendor event name, e.g. `TASK.UPDATED` or `label_change`. */
  event: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** 1 for the first try, 2.. for retries. */
  attempt: number;
  /** `sent`: answered (see status); `failed`: no answer; `dropped`: never sent (fault); `held`: waiting (reorder). */
  outcome: 'sent' | 'failed' | 'dropped' | 'held';
  /** HTTP status of the answer, or null. */
  status: number | null;
  error: string | null;
  duplicate: boolean;
  /** Clock ms. */
  at: number;
}

export interface OutgoingDelivery {
  target: string;
  event: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** Called once per logical delivery when it is finally accepted (true) or given up (false). */
  onFinal?: (accepted: boolean) => void;
}

export interface WebhookSenderOptions {
  faults: FaultControl;
  clock: SimClock;
  /** Whether the receiver's answer counts as received. Teamwork: exactly 200; Missive: any 2xx. */
  accepts: (status: number) => boolean;
  /** Per-attempt timeout, ms. Teamwork 5 s, Missive 15 s. */
  timeoutMs: number;
  /** Waits before each retry of a failed delivery, ms; its length is the number of retries. */
  retryDelaysMs: readonly number[];
  /** How long held deliveries wait (reorder fault) before they are sent shuffled, ms. Default 250. */
  reorderWindowMs?: number;
  /** Most log entries kept; default 10,000. */
  logCapacity?: number;
}

/**
 * Sends webhook deliveries and applies the webhook faults. States of one logical delivery:
 *   dropped                       (dropRate: never sent, logged)
 *   held -> sending               (reorder: waits until flush, then goes out shuffled)
 *   sending -> sent               (receiver accepted)
 *   sending -> failed -> sending  (retry after retryDelaysMs[i]; after the last one: given up)
 * `send()` resolves when the first attempt (and its duplicate) has finished, or at once when the
 * delivery was dropped or held; `flush()` sends everything held and waits for every attempt in flight.
 * Retries run on timers that `stop()` cancels.
 */
export class WebhookSender {
  readonly log: Delivery[] = [];
  private seq = 0;
  private held: OutgoingDelivery[] = [];
  private heldTimer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly options: WebhookSenderOptions) {
    options.faults.onChange((f) => {
      if (!f.reorder && this.held.length > 0) void this.releaseHeld();
    });
  }

  async send(delivery: OutgoingDelivery): Promise<void> {
    if (this.stopped) return;
    const faults = this.options.faults;
    if (faults.chance(faults.get().dropRate)) {
      this.record(delivery, ++this.seq, 1, 'dropped', null, null, false);
      return;
    }
    if (faults.get().reorder) {
      this.held.push(delivery);
      this.record(delivery, 0, 1, 'held', null, null, false);
      if (!this.heldTimer) {
        this.heldTimer = setTimeout(() => void this.releaseHeld(), this.options.reorderWindowMs ?? 250);
        this.heldTimer.unref();
      }
      return;
    }
    await this.track(this.dispatch(delivery, ++this.seq));
  }

  /** Sends everything held and waits until no attempt is in flight. Scheduled retries are not awaited. */
  async flush(): Promise<void> {
    await this.releaseHeld();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Deliveries retried later, not yet sent. */
  get pendingRetries(): number {
    return this.retryTimers.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heldTimer) clearTimeout(this.heldTimer);
    this.heldTimer = null;
    this.held = [];
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async releaseHeld(): Promise<void> {
    if (this.heldTimer) clearTimeout(this.heldTimer);
    this.heldTimer = null;
    const batch = shuffleNotIdentity(this.held, this.options.faults.random);
    this.held = [];
    // Sequentially, so the receiver sees exactly the shuffled order.
    const run = (async () => {
      for (const delivery of batch) await this.dispatch(delivery, ++this.seq);
    })();
    await this.track(run);
  }

  private async track(work: Promise<void>): Promise<void> {
    this.inFlight.add(work);
    try {
      await work;
    } finally {
      this.inFlight.delete(work);
    }
  }

  private async dispatch(delivery: OutgoingDelivery, seq: number, attempt = 1): Promise<void> {
    const accepted = await this.attempt(delivery, seq, attempt, false);
    const faults = this.options.faults;
    if (attempt === 1 && faults.chance(faults.get().duplicateRate)) await this.attempt(delivery, seq, attempt, true);
    if (accepted) {
      delivery.onFinal?.(true);
      return;
    }
    const delay = this.options.retryDelaysMs[attempt - 1];
    if (delay === undefined || this.stopped) {
      delivery.onFinal?.(false);
      return;
    }
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      void this.track(this.dispatch(delivery, seq, attempt + 1));
    }, delay);
    timer.unref();
    this.retryTimers.add(timer);
  }

  private async attempt(delivery: OutgoingDelivery, seq: number, attempt: number, duplicate: boolean): Promise<boolean> {
    try {
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers: delivery.headers,
        body: delivery.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      await response.arrayBuffer().catch(() => undefined);
      const ok = this.options.accepts(response.status);
      this.record(delivery, seq, attempt, 'sent', response.status, ok ? null : `HTTP ${response.status}`, duplicate);
      return ok;
    } catch (err) {
      const message = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      this.record(delivery, seq, attempt, 'failed', null, message, duplicate);
      return false;
    }
  }

  private record(
    d: OutgoingDelivery,
    seq: number,
    attempt: number,
    outcome: Delivery['outcome'],
    status: number | null,
    error: string | null,
    duplicate: boolean,
  ): void {
    this.log.push({
      seq,
      target: d.target,
      event: d.event,
      url: d.url,
      headers: d.headers,
      body: d.body,
      attempt,
      outcome,
      status,
      error,
      duplicate,
      at: this.options.clock.now(),
    });
    const cap = this.options.logCapacity ?? 10_000;
    if (this.log.length > cap) this.log.splice(0, this.log.length - cap);
  }
}

/** A shuffled copy that differs from the input whenever it has two or more items. */
export function shuffleNotIdentity<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  if (out.length >= 2 && out.every((item, i) => item === items[i])) out.reverse();
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Activity

/**
 * Runs one random mutation at a time at a chosen rate until stopped. A step never overlaps the
 * previous one, so the webhooks of one change are all sent before the next change is made.
 */
export class ActivityLoop {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private errors = 0;

  constructor(private readonly step: () => Promise<unknown>) {}

  /** Starts (or re-paces) the loop: `perMinute` mutations per real minute. */
  start(perMinute: number): void {
    this.stopTimer();
    if (!(perMinute > 0)) return;
    const intervalMs = Math.max(1, Math.round(60_000 / perMinute));
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.step()
        .then(() => undefined, () => void this.errors++)
        .finally(() => {
          this.running = null;
        });
    }, intervalMs);
    this.timer.unref();
  }

  get active(): boolean {
    return this.timer !== null;
  }

  /** Steps that threw (e.g. nothing left to mutate). */
  get failedSteps(): number {
    return this.errors;
  }

  async stop(): Promise<void> {
    this.stopTimer();
    if (this.running) await this.running;
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

// ---------------------------------------------------------------------------------------------------
// Control routes

/** What a simulator exposes on its `/__sim` control routes (for `npm run sim`, the demo and other processes). */
export interface SimulatorControl {
  faults: FaultControl;
  deliveries: () => readonly Delivery[];
  flush: () => Promise<void>;
  activity: ActivityLoop;
  /** Programmatic changes by name, callable as `POST /__sim/mutate {"op": name, "args": [...]}`. */
  mutations: Record<string, (...args: never[]) => Promise<unknown>>;
  /** The simulator's data as plain JSON (`GET /__sim/data`). */
  snapshot: () => unknown;
}

/**
 * Control routes, never authenticated, rate limited or faulted:
 *   GET    /__sim/faults              current switches      POST /__sim/faults {..}   change some
 *   DELETE /__sim/faults              all off               POST /__sim/activity {"perMinute": n} (0 stops)
 *   GET    /__sim/deliveries          webhook log           POST /__sim/flush         send held, wait
 *   POST   /__sim/mutate {op, args}   a programmatic change GET  /__sim/data          the data
 */
export function registerControlRoutes(app: FastifyInstance, control: SimulatorControl): void {
  app.get('/__sim/faults', async () => control.faults.get());
  app.post('/__sim/faults', async (request) => {
    control.faults.set((request.body ?? {}) as Partial<Faults>);
    return control.faults.get();
  });
  app.delete('/__sim/faults', async () => {
    control.faults.reset();
    return control.faults.get();
  });
  app.post('/__sim/activity', async (request) => {
    const perMinute = Number((request.body as { perMinute?: unknown } | null)?.perMinute ?? 0);
    if (perMinute > 0) control.activity.start(perMinute);
    else await control.activity.stop();
    return { active: control.activity.active, perMinute };
  });
  app.get('/__sim/deliveries', async () => ({ deliveries: control.deliveries() }));
  app.post('/__sim/flush', async () => {
    await control.flush();
    return { ok: true };
  });
  app.get('/__sim/data', async () => control.snapshot());
  app.post('/__sim/mutate', async (request, reply) => {
    const { op, args } = (request.body ?? {}) as { op?: string; args?: unknown[] };
    const fn = op === undefined ? undefined : control.mutations[op];
    if (!fn) return reply.code(404).send({ error: `unknown op ${op}; known: ${Object.keys(control.mutations).join(', ')}` });
    try {
      return { result: await (fn as (...a: unknown[]) => Promise<unknown>)(...(args ?? [])) };
    } catch (err) {
      return reply.code(422).send({ error: err instanceof Error ? err.message : String(err) });
    }
  });
}
