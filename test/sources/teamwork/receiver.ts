/**
 * A minimal webhook receiver for integration tests: a Fastify server on 127.0.0.1:0 that hands the raw
 * bytes of each POST to a Source's `verify` and `parseWebhook`, keeps the events, and answers the way the
 * product's server does (200; 401/400/415 for the source's refusals). It stands in for the lead's server
 * so that the Teamwork simulator's real deliveries reach the source.
 */
import Fastify from 'fastify';
import { ConnectorError } from '../../../src/errors.ts';
import type { QueueEvent } from '../../../src/model.ts';
import type { Source } from '../../../src/sources/source.ts';

const STATUS_FOR: Record<string, number> = {
  CONN_ERR_WEBHOOK_SIGNATURE: 401,
  CONN_ERR_WEBHOOK_MALFORMED: 400,
  CONN_ERR_WEBHOOK_MEDIA_TYPE: 415,
};

export interface Receiver {
  /** Base URL (use as PUBLIC_URL). */
  url: string;
  /** Events parsed from accepted deliveries, in arrival order; tests take them off the front. */
  events: QueueEvent[];
  /** Every answer's status, in order. */
  statuses: number[];
  stop(): Promise<void>;
}

export async function startReceiver(source: Source, path = '/webhooks/teamwork'): Promise<Receiver> {
  const app = Fastify({ logger: false });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  const events: QueueEvent[] = [];
  const statuses: number[] = [];
  app.post(path, async (request, reply) => {
    const delivery = { rawBody: (request.body as Buffer | undefined) ?? Buffer.alloc(0), headers: request.headers, receivedAt: new Date() };
    try {
      source.verify(delivery);
      const parsed = source.parseWebhook(delivery);
      events.push(...parsed.events);
      statuses.push(200);
      return reply.code(200).send({ ok: true, events: parsed.events.length });
    } catch (err) {
      const status = err instanceof ConnectorError ? (STATUS_FOR[err.code] ?? 500) : 500;
      statuses.push(status);
      return reply.code(status).send({ error: (err as Error).message });
    }
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, events, statuses, stop: () => app.close() };
}
