/**
 * A tiny webhook receiver for the simulator tests: a real Fastify server on 127.0.0.1:0 that keeps the
 * raw body bytes and headers of every delivery and answers with a status the test chooses.
 */
import Fastify, { type FastifyInstance } from 'fastify';

/** Arbitrary parsed JSON, read field by field in contract tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- contract tests read arbitrary JSON
export type Json = any;

export interface Received {
  path: string;
  headers: Record<string, string>;
  /** The exact bytes, as UTF-8 text. */
  raw: string;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** Status to answer with; a function can vary it per delivery (argument: 0-based delivery index). */
  status: number | ((index: number) => number);
  /** Resolves once at least `count` deliveries arrived; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const app: FastifyInstance = Fastify({ logger: false });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  const received: Received[] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const receiver: Receiver = {
    url: '',
    received,
    status: 200,
    waitFor: (count, timeoutMs = 5_000) =>
      new Promise<Received[]>((resolve, reject) => {
        if (received.length >= count) return resolve(received);
        const timer = setTimeout(() => reject(new Error(`expected ${count} deliveries, got ${received.length}`)), timeoutMs);
        waiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve(received);
          },
        });
      }),
    close: async () => {
      await app.close();
    },
  };
  app.post('/*', async (request, reply) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(request.headers)) if (typeof v === 'string') headers[k] = v;
    const index = received.length;
    received.push({ path: request.url, headers, raw: Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '' });
    for (const waiter of [...waiters]) {
      if (received.length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    const status = typeof receiver.status === 'function' ? receiver.status(index) : receiver.status;
    return reply.code(status).send('ok');
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  receiver.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return receiver;
}
