/**
 * One server of the simulator benchmark, in its own process so the load loop does not share its event
 * loop: `noop` (a bare Fastify route, the baseline), `teamwork` or `missive`. Prints one JSON line with
 * the URL, the auth header and the paths to request, then serves until killed.
 */
import Fastify from 'fastify';
import { startMissiveSimulator } from '../../simulators/missive/index.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';

export interface BenchTarget {
  url: string;
  headers: Record<string, string>;
  /** Requested round-robin. */
  paths: string[];
}

async function start(kind: string): Promise<BenchTarget> {
  if (kind === 'noop') {
    const app = Fastify({ logger: false });
    app.get('/noop', async () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, headers: {}, paths: ['/noop'] };
  }
  if (kind === 'teamwork') {
    // Limits off: the benchmark measures serving, not the vendor's rate limit.
    const sim = await startTeamworkSimulator({ seed: 1, limits: { perMinute: Number.MAX_SAFE_INTEGER } });
    const ids = sim.data().tasks.filter((t) => t.status !== 'deleted').map((t) => t.id);
    const paths: string[] = [];
    for (let i = 0; i < 10; i++) {
      const id = ids[(i * 7) % ids.length] as number;
      // The connector's mix: single tasks (v3 with sideloads, v1) and backfill pages.
      if (i < 4) paths.push(`/projects/api/v3/tasks/${id}.json?include=users,tags,tasklists,projects`);
      else if (i < 7) paths.push(`/tasks/${id}.json`);
      else paths.push(`/projects/api/v3/tasks.json?includeCompletedTasks=true&showCompletedLists=true&includeArchivedProjects=true&orderBy=updatedat&pageSize=50&page=${i - 6}&include=users,tasklists,projects`);
    }
    return { url: sim.url, headers: { authorization: `Basic ${Buffer.from(`${sim.credentials.apiKey}:x`).toString('base64')}` }, paths };
  }
  if (kind === 'missive') {
    const sim = await startMissiveSimulator({ seed: 1, limits: { concurrency: 1e9, perMinute: 1e12, perQuarterHour: 1e12 } });
    const data = sim.data();
    const paths: string[] = [];
    for (let i = 0; i < 10; i++) {
      const conversation = data.conversations[(i * 7) % data.conversations.length] as { id: string; messageIds: string[] };
      if (i < 3) paths.push(`/v1/conversations?all=true&limit=25`);
      else if (i < 6) paths.push(`/v1/conversations/${conversation.id}/messages`);
      else paths.push(`/v1/messages/${conversation.messageIds.at(-1)}`);
    }
    return { url: sim.url, headers: { authorization: `Bearer ${sim.credentials.token}` }, paths };
  }
  throw new Error(`unknown server kind ${kind}`);
}

const target = await start(process.argv[2] ?? 'noop');
process.stdout.write(`${JSON.stringify(target)}\n`);
process.on('SIGTERM', () => process.exit(0));
