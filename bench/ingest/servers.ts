/**
 * The two reference servers of the ingest benchmark, each run in a process of its own:
 * - `noop`: a bare Fastify route that reads the body as bytes and answers 200 (the ceiling: what
 *   Fastify and Node's HTTP stack cost on this machine);
 * - `serial-fsync`: the seed's queue design: each delivery's signature is checked and its body parsed,
 *   then the event is appended to inbox.jsonl under an exclusive lock with its own open, write, fsync
 *   and close, one delivery at a time. (The seed takes a file lock with portalocker; an in-process
 *   lock is used here, which is cheaper, so the baseline is if anything flattered.)
 * Prints `listening on <url>` and serves until SIGTERM.
 *
 * Usage: tsx bench/ingest/servers.ts <noop|serial-fsync> <dir> <token>
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path';
import Fastify from 'fastify';

const [kind = 'noop', dir = '.', token = ''] = process.argv.slice(2);
const app = Fastify({ logger: false, bodyLimit: 5 * 1024 * 1024 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

if (kind === 'noop') {
  app.post('/webhooks/teamwork', async () => ({ ok: true }));
} else if (kind === 'serial-fsync') {
  const inbox = path.join(dir, 'inbox.jsonl');
  let tail: Promise<unknown> = Promise.resolve();
  /** Runs `fn` after every earlier call has finished: one append at a time. */
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => {});
    return run;
  };
  app.post('/webhooks/teamwork', async (request, reply) => {
    const body = request.body as Buffer;
    const given = Buffer.from(String(request.headers['x-projects-signature'] ?? ''), 'hex');
    const expected = createHmac('sha256', token).update(body).digest();
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return reply.code(401).send({ error: 'signature' });
    const payload = JSON.parse(body.toString('utf8')) as { task?: { id?: number } };
    const line = `${JSON.stringify({ id: randomUUID(), source: 'teamwork', entityKey: `task:${payload.task?.id}`, receivedAt: new Date().toISOString(), payload })}\n`;
    await exclusive(async () => {
      const handle = await open(inbox, 'a');
      try {
        await handle.write(line);
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
    return { ok: true, events: 1 };
  });
} else {
  throw new Error(`unknown server kind ${kind}`);
}

await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
process.stdout.write(`listening on http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}\n`);
process.on('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
