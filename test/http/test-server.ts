/**
 * A tiny real HTTP server for the HTTP-core tests: Fastify on 127.0.0.1:0 that records every request it
 * sees (at arrival, on the given clock) before the route answers.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import net from 'node:net';

export interface SeenRequest {
  method: string;
  /** Path and query as sent. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** Clock time of arrival. */
  at: number;
}

export interface TestServer {
  url: string;
  app: FastifyInstance;
  seen: SeenRequest[];
  /** Requests seen whose path (without query) is `path`. */
  hits(path: string): SeenRequest[];
  close(): Promise<void>;
}

export async function startTestServer(
  register: (app: FastifyInstance) => void,
  clock: { now(): number } = { now: () => Date.now() },
): Promise<TestServer> {
  const app = Fastify({ logger: false });
  const seen: SeenRequest[] = [];
  app.addHook('onRequest', async (request) => {
    seen.push({ method: request.method, url: request.url, headers: { ...request.headers }, at: clock.now() });
  });
  register(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    app,
    seen,
    hits: (path) => seen.filter((r) => r.url.split('?')[0] === path),
    close: () => app.close(),
  };
}

/** A port that was just free and is now closed: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolves after `ms`, or as soon as the request's socket closes (the client gave up). */
export function holdUnlessClosed(socket: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
