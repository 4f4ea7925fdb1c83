/**
 * What one unauthenticated client can hold. A delivery is read whole before its signature can be
 * checked, so anyone who can reach the port can make the process hold sockets and bytes; these limits
 * bound both, whatever the headers say, while leaving room for the vendors' deliveries (a few KB each,
 * sent with Content-Length, answered by us in milliseconds; vendors give up after 5 s (Teamwork) or
 * 15 s (Missive) and deliver again).
 *
 * - Time. Headers must arrive within `headersTimeoutMs`, the whole request within `requestTimeoutMs`
 *   (Node answers 408 and closes; checked every second), a connection silent for `requestTimeoutMs`
 *   is closed, and an idle keep-alive connection after `keepAliveTimeoutMs`. A trickling or half-sent
 *   request therefore holds its socket for at most `requestTimeoutMs`.
 * - Sockets. At most `maxConnections` at once (Node closes the rest as they arrive), so half-sent
 *   requests cannot take every file descriptor the queue and the database need; and at most
 *   `maxConnectionsPerClient` per client, so one client cannot take all of those.
 * - Bytes. Before a webhook body is read, its size (Content-Length, capped at the body limit; the body
 *   limit itself when the length is not declared) is reserved from a budget of `bodyBytesInFlight` for
 *   the process and `clientBodyBytesInFlight` per client; a request that does not fit is answered 503
 *   (Retry-After: 1, connection closed) without reading its body, and the vendor delivers again. The
 *   reservation is returned when the response ends or the connection dies.
 *
 * A client is its remote address; an IPv6 client is its /64 (one host usually has the whole /64).
 * Behind a reverse proxy or the ngrok tunnel every client has the proxy's address, and the per-client
 * limits act as overall ones.
 *
 * State: two tables (connections and reserved bytes per client), each entry removed when it drops to
 * zero, so their size is bounded by the connections open.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export interface HttpLimits {
  /** Time to receive a request's headers, ms (HTTP_HEADERS_TIMEOUT_MS). Default 3,000. */
  headersTimeoutMs: number;
  /** Time to receive a whole request, ms; also how long a connection may stay silent (HTTP_REQUEST_TIMEOUT_MS). Default 5,000. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this many ms (HTTP_KEEP_ALIVE_TIMEOUT_MS). Default 5,000. */
  keepAliveTimeoutMs: number;
  /** Connections open at once (HTTP_MAX_CONNECTIONS). Default: half the open-file limit, at most 4,096. */
  maxConnections: number;
  /** Connections open at once from one client; 0 = no limit (HTTP_MAX_CONNECTIONS_PER_CLIENT). Default 64. */
  maxConnectionsPerClient: number;
  /** Webhook body bytes being received at once, in all (WEBHOOK_BODIES_IN_FLIGHT_BYTES). Default 64 MiB. */
  bodyBytesInFlight: number;
  /** Webhook body bytes being received at once from one client (WEBHOOK_CLIENT_BODIES_IN_FLIGHT_BYTES). Default 16 MiB. */
  clientBodyBytesInFlight: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 3_000,
  requestTimeoutMs: 5_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: defaultMaxConnections(),
  maxConnectionsPerClient: 64,
  bodyBytesInFlight: 64 * 1024 * 1024,
  clientBodyBytesInFlight: 16 * 1024 * 1024,
};

/** How often Node looks for requests past their time, ms. */
const CHECK_INTERVAL_MS = 1_000;

/** The Fastify options that carry the time limits (given when the app is created). */
export function serverOptions(limits: HttpLimits) {
  return {
    connectionTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    http: { headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: Math.min(CHECK_INTERVAL_MS, limits.headersTimeoutMs) },
  };
}

/** Why the server itself turned a client away (for metrics and sampled log lines). */
export type HttpRefusalReason = 'timeout' | 'connections';

export interface LimitHooks {
  /** A connection was closed for a reason of the server's own. */
  onRefused(reason: HttpRefusalReason, client: string): void;
  /** A webhook request's body does not fit in the budget: answer it (503) and send nothing more. */
  refuseBody(request: FastifyRequest, reply: FastifyReply, message: string): FastifyReply;
}

/**
 * Applies the socket and byte limits to `app` (before it listens); `isWebhook` tells which requests
 * carry a delivery body.
 */
export function installHttpLimits(app: FastifyInstance, limits: HttpLimits, maxBodyBytes: number, hooks: LimitHooks, isWebhook: (url: string) => boolean): void {
  const server = app.server;
  server.maxConnections = limits.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => hooks.onRefused('connections', clientKey(data?.remoteAddress)));

  const connections = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const client = clientKey(socket.remoteAddress);
    const open = (connections.get(client) ?? 0) + 1;
    if (limits.maxConnectionsPerClient > 0 && open > limits.maxConnectionsPerClient) {
      socket.destroy();
      hooks.onRefused('connections', client);
      return;
    }
    connections.set(client, open);
    socket.once('close', () => {
      const left = (connections.get(client) ?? 1) - 1;
      if (left <= 0) connections.delete(client);
      else connections.set(client, left);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') hooks.onRefused('timeout', clientKey(socket.remoteAddress));
  });

  const budget = new BodyBudget(Math.max(limits.bodyBytesInFlight, maxBodyBytes), Math.max(limits.clientBodyBytesInFlight, maxBodyBytes));
  app.addHook('onRequest', async (request, reply) => {
    if (request.method !== 'POST' || !isWebhook(request.url)) return;
    const declared = Number(request.headers['content-length']);
    const bytes = request.headers['content-length'] !== undefined && Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, maxBodyBytes) : maxBodyBytes;
    if (bytes === 0) return;
    const client = clientKey(request.socket.remoteAddress);
    if (!budget.reserve(client, bytes)) {
      return hooks.refuseBody(request, reply, 'too many delivery bodies are being received at once; try again shortly');
    }
    reply.raw.once('close', () => budget.release(client, bytes));
  });
}

/** Body bytes reserved in all and per client. */
class BodyBudget {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerClient: number,
  ) {}

  reserve(client: string, bytes: number): boolean {
    const mine = this.perClient.get(client) ?? 0;
    if (this.total + bytes > this.maxTotal || mine + bytes > this.maxPerClient) return false;
    this.total += bytes;
    this.perClient.set(client, mine + bytes);
    return true;
  }

  release(client: string, bytes: number): void {
    this.total -= bytes;
    const left = (this.perClient.get(client) ?? bytes) - bytes;
    if (left <= 0) this.perClient.delete(client);
    else this.perClient.set(client, left);
  }
}

/** The client an address belongs to: an IPv4 address (IPv4-mapped too) as is, an IPv6 one by its /64. */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1] as string;
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.toLowerCase().split('%')[0]!.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = address.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** Half the soft limit on open files (Linux: /proc/self/limits), at most 4,096; 512 when unknown. */
export function defaultMaxConnections(limitsFile = '/proc/self/limits'): number {
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(readFileSync(limitsFile, 'utf8'))?.[1];
    if (soft !== undefined) return Math.max(16, Math.min(4_096, Math.floor(Number(soft) / 2)));
  } catch {
    // not Linux: fall through
  }
  return 512;
}
