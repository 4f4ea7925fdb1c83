/**
 * A tiny Fastify server for the Missive client and attachment tests: routes are added per test, every
 * request is recorded. Listens on 127.0.0.1, port 0. (The full simulator lives in simulators/missive;
 * these tests need answers the simulator would never give: servers that ignore `until`, lying sizes,
 * wrong content types.)
 */
import Fastify, { type FastifyInstance } from 'fastify';

export interface FakeServer {
  app: FastifyInstance;
  url: string;
  /** `METHOD path?query`, in arrival order. */
  seen: string[];
  headers: Array<Record<string, string | string[] | undefined>>;
  close(): Promise<void>;
}

export async function startFakeServer(register: (app: FastifyInstance) => void): Promise<FakeServer> {
  const app = Fastify({ logger: false, routerOptions: { maxParamLength: 2000 } });
  const seen: string[] = [];
  const headers: FakeServer['headers'] = [];
  app.addHook('onRequest', async (request) => {
    seen.push(`${request.method} ${request.url}`);
    headers.push(request.headers);
  });
  register(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return { app, url: `http://127.0.0.1:${port}`, seen, headers, close: () => app.close() };
}

/**
 * Rows newest first by `time`, those with time <= until, `limit` of them plus every further row that
 * ties with the last one (Missive's paging as the reference describes it).
 */
export function pageByTime<T>(rows: readonly T[], time: (row: T) => number, limit: number, until: number | undefined): T[] {
  const eligible = rows.filter((r) => until === undefined || time(r) <= until).sort((a, b) => time(b) - time(a));
  if (eligible.length <= limit) return eligible;
  const boundary = time(eligible[limit - 1] as T);
  let end = limit;
  while (end < eligible.length && time(eligible[end] as T) === boundary) end++;
  return eligible.slice(0, end);
}
