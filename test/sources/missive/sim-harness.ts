/**
 * The Missive simulator wired to a Missive source the way the product wires it: the simulator's rules
 * post to a small receiver (verify -> parse -> collect events, as the lead's server does), and
 * `handle` results are written to a real in-memory SQLite database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { SqliteDatabase } from '../../../src/db/sqlite/sqlite-database.ts';
import { ConnectorError } from '../../../src/errors.ts';
import { createMissiveLimiter } from '../../../src/sources/missive/client.ts';
import { createMissiveSource, type MissiveSource, type MissiveSourceDeps } from '../../../src/sources/missive/index.ts';
import type { HandlerContext } from '../../../src/sources/source.ts';
import { QueueEvent, type Changes } from '../../../src/model.ts';
import { startMissiveSimulator, type MissiveSimulator, type MissiveSimulatorOptions } from '../../../simulators/missive/index.ts';
import { config, logSink } from './helpers.ts';

export const SECRET = 'whsec-missive-test-0123456789';

const STATUS: Record<string, number> = {
  CONN_ERR_WEBHOOK_SIGNATURE: 401,
  CONN_ERR_WEBHOOK_MALFORMED: 400,
  CONN_ERR_WEBHOOK_MEDIA_TYPE: 415,
};

export interface Harness {
  sim: MissiveSimulator;
  source: MissiveSource;
  db: SqliteDatabase;
  events: QueueEvent[];
  /** Log lines of the source. */
  lines: () => Array<Record<string, unknown>>;
  attachmentsDir: string;
  context: HandlerContext;
  /** Sends pending deliveries; returns (and forgets) the events they became. */
  take(): Promise<QueueEvent[]>;
  /** Through JSON (as the queue stores events), then handle + apply, as the dispatcher does. */
  process(event: QueueEvent): Promise<{ changes: Changes; written: number; stale: number }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  sim?: MissiveSimulatorOptions;
  /** Extra settings (e.g. ATTACHMENTS_STORE). */
  env?: Record<string, string>;
  /** Leave MISSIVE_API_TOKEN unset. */
  offline?: boolean;
  deps?: Partial<MissiveSourceDeps>;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const sim = await startMissiveSimulator({ data: { conversations: 8, maxMessages: 5 }, ...options.sim });
  const attachmentsDir = mkdtempSync(path.join(os.tmpdir(), 'missive-source-'));
  const { log, lines } = logSink();
  // The simulator serves attachment content on 127.0.0.1 over http: allowed, as the demo allows it.
  const env: Record<string, string> = {
    MISSIVE_WEBHOOK_SECRET: SECRET,
    MISSIVE_BASE_URL: sim.credentials.baseUrl,
    ATTACHMENTS_DIR: attachmentsDir,
    ATTACHMENTS_ALLOWED_HOSTS: new URL(sim.credentials.baseUrl).host,
    ...options.env,
  };
  if (!options.offline) env.MISSIVE_API_TOKEN = sim.credentials.token;
  const source = createMissiveSource(config(env), { log, limiter: createMissiveLimiter({ windowMarginMs: 0 }), ...options.deps });
  const db = new SqliteDatabase({ file: ':memory:' });
  await db.migrate();

  const events: QueueEvent[] = [];
  const receiver: FastifyInstance = Fastify({ logger: false });
  receiver.removeAllContentTypeParsers();
  receiver.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  receiver.post('/webhooks/missive', async (request, reply) => {
    const delivery = { rawBody: (request.body as Buffer | undefined) ?? Buffer.alloc(0), headers: request.headers, receivedAt: new Date() };
    try {
      source.verify(delivery);
      const parsed = source.parseWebhook(delivery);
      events.push(...parsed.events);
      return reply.code(200).send({ ok: true, note: parsed.note ?? null });
    } catch (err) {
      if (err instanceof ConnectorError && STATUS[err.code] !== undefined) return reply.code(STATUS[err.code] as number).send({ error: err.message });
      throw err;
    }
  });
  await receiver.listen({ host: '127.0.0.1', port: 0 });
  const address = receiver.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await sim.createAllRules(`http://127.0.0.1:${port}/webhooks/missive`, SECRET);

  const context: HandlerContext = { log, now: () => new Date() };
  return {
    sim,
    source,
    db,
    events,
    lines,
    attachmentsDir,
    context,
    take: async () => {
      await sim.flush();
      return events.splice(0, events.length);
    },
    process: async (event) => {
      // Through JSON, as the queue stores it.
      const queued = QueueEvent.parse(JSON.parse(JSON.stringify(event)));
      const changes = await source.handle(queued, context);
      const result = await db.apply(changes);
      return { changes, ...result };
    },
    close: async () => {
      await receiver.close();
      await sim.stop();
      await db.close();
      rmSync(attachmentsDir, { recursive: true, force: true });
    },
  };
}
