/**
 * What every vendor simulator shares: a request log, run-time fault switches, a clock that tests can
 * scale, and a Fastify server on a port of its own. Simulators are test and demo infrastructure; the
 * product's runtime never imports them.
 *
 * Faults (each switchable at run time through `faults.set({...})`):
 * - latencyMs         added to every API response
 * - errorRate         share of API requests answered 5xx (0..1)
 * - rateLimitBurst    the next N API requests are answered 429
 * - resetRate         share of API requests whose connection is reset without an answer (0..1)
 * Webhook faults are applied by each vendor's webhook sender (see `WebhookFaults`).
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

export interface ApiFaults {
  latencyMs: number;
  errorRate: number;
  rateLimitBurst: number;
  resetRate: number;
}

export interface WebhookFaults {
  /** Share of changes that happen without a webhook (0..1). */
  dropRate: number;
  /** Share of webhooks delivered twice (0..1). */
  duplicateRate: number;
  /** Deliver webhooks in a shuffled order within each flush window. */
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

export class FaultControl {
  private current: Faults = { ...NO_FAULTS };

  get(): Readonly<Faults> {
    return this.current;
  }

  set(change: Partial<Faults>): void {
    this.current = { ...this.current, ...change };
  }

  reset(): void {
    this.current = { ...NO_FAULTS };
  }

  /** Takes one request from the 429 burst; true when this request must get 429. */
  takeRateLimitBurst(): boolean {
    if (this.current.rateLimitBurst <= 0) return false;
    this.current = { ...this.current, rateLimitBurst: this.current.rateLimitBurst - 1 };
    return true;
  }
}

/** One request a simulator saw. */
export interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  status: number;
  /** Clock time (ms) the request arrived and the answer left. */
  startedAt: number;
  endedAt: number;
}

export class RequestLog {
  readonly entries: SeenRequest[] = [];

  add(entry: SeenRequest): void {
    this.entries.push(entry);
  }

  clear(): void {
    this.entries.length = 0;
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

/** A clock that can run faster than real time, so minute-long vendor windows pass in seconds. */
export interface SimClock {
  now(): number;
}

export const realClock: SimClock = { now: () => Date.now() };

/** What every simulator's `start` returns. */
export interface RunningSimulator {
  /** Base URL of the API, e.g. http://127.0.0.1:43121 */
  url: string;
  requests: RequestLog;
  faults: FaultControl;
  stop(): Promise<void>;
}

export interface ServerOptions {
  host?: string;
  port?: number;
  clock?: SimClock;
  /** Paths that faults never touch (e.g. the simulator's own control routes). */
  faultFreePrefixes?: readonly string[];
}

/**
 * A Fastify server with the request log and the API fault switches installed. Vendor routes are added
 * by `register` before it listens.
 */
export async function startServer(
  register: (app: FastifyInstance, tools: { faults: FaultControl; requests: RequestLog; clock: SimClock }) => void | Promise<void>,
  options: ServerOptions = {},
): Promise<RunningSimulator & { app: FastifyInstance }> {
  const app = Fastify({ logger: false, bodyLimit: 50 * 1024 * 1024 });
  const faults = new FaultControl();
  const requests = new RequestLog();
  const clock = options.clock ?? realClock;
  const faultFree = options.faultFreePrefixes ?? ['/__sim'];
  const started = new WeakMap<FastifyRequest, number>();

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    started.set(request, clock.now());
    if (faultFree.some((p) => request.url.startsWith(p))) return;
    const f = faults.get();
    if (f.latencyMs > 0) await new Promise((r) => setTimeout(r, f.latencyMs));
    if (f.resetRate > 0 && Math.random() < f.resetRate) {
      request.raw.socket.destroy();
      return reply.hijack();
    }
    if (faults.takeRateLimitBurst()) {
      return reply.code(429).header('retry-after', '1').send({ error: 'Too Many Requests' });
    }
    if (f.errorRate > 0 && Math.random() < f.errorRate) {
      return reply.code(503).send({ error: 'Service Unavailable (simulated)' });
    }
  });

  app.addHook('onResponse', async (request: FastifyRequest, reply: FastifyReply) => {
    const [pathPart = '', queryPart = ''] = request.url.split('?');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(request.headers)) if (typeof v === 'string') headers[k] = v;
    requests.add({
      method: request.method,
      path: pathPart,
      query: Object.fromEntries(new URLSearchParams(queryPart)),
      headers,
      status: reply.statusCode,
      startedAt: started.get(request) ?? clock.now(),
      endedAt: clock.now(),
    });
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
      await app.close();
    },
  };
}
