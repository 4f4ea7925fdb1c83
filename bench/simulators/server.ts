/**
 * One server of the simulator benchmark, in its own process so the load loop does not share its event
 * loop: `noop` (a bare Fastify route, the baseline), `teamwork`, `missive` or `airtable`. Prints one
 * JSON line with the URL, the auth header and the requests to make, then serves until killed.
 */
import Fastify from 'fastify';
import { startAirtableSimulator } from '../../simulators/airtable/index.ts';
import { startMissiveSimulator } from '../../simulators/missive/index.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';

/** A GET of a path, or a request with a method and a JSON body. */
export type BenchRequest = string | { method: string; path: string; body: string };

export interface BenchTarget {
  url: string;
  headers: Record<string, string>;
  /** Requested round-robin. */
  paths: BenchRequest[];
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
  if (kind === 'airtable') {
    // Limits off: the benchmark measures serving, not the 5 requests/s budget.
    const sim = await startAirtableSimulator({ rateLimit: { enabled: false } });
    sim.tables.create({
      name: 'Tasks',
      fields: [
        { name: 'Task ID', type: 'singleLineText' },
        { name: 'Title', type: 'singleLineText' },
        { name: 'Description', type: 'multilineText' },
        { name: 'Updated At', type: 'dateTime', options: { timeZone: 'utc', dateFormat: { name: 'iso' }, timeFormat: { name: '24hour' } } },
      ],
    });
    for (let i = 0; i < 500; i++) sim.tables.insert('Tasks', { 'Task ID': `teamwork:task:${i}`, Title: `Task ${i}`, Description: 'x'.repeat(500), 'Updated At': '2026-11-28T10:00:00.000Z' });
    const table = `/v0/${sim.baseId}/Tasks`;
    const keys = (from: number) => Array.from({ length: 10 }, (_, k) => `{Task ID}='teamwork:task:${from + k}'`).join(',');
    const paths: BenchRequest[] = [];
    for (let i = 0; i < 10; i++) {
      // The connector's mix: the stale-write read of a batch's stored versions, then its upsert.
      if (i < 5) paths.push(`${table}?filterByFormula=${encodeURIComponent(`OR(${keys(i * 10)})`)}&fields[]=Task%20ID&fields[]=Updated%20At`);
      else {
        const records = Array.from({ length: 10 }, (_, k) => ({ fields: { 'Task ID': `teamwork:task:${i * 10 + k}`, Title: `Task ${i * 10 + k} (edited)`, 'Updated At': '2026-11-28T11:00:00.000Z' } }));
        paths.push({ method: 'PATCH', path: table, body: JSON.stringify({ performUpsert: { fieldsToMergeOn: ['Task ID'] }, typecast: true, records }) });
      }
    }
    return { url: sim.url, headers: { authorization: `Bearer ${sim.token}`, 'content-type': 'application/json' }, paths };
  }
  throw new Error(`unknown server kind ${kind}`);
}

const target = await start(process.argv[2] ?? 'noop');
process.stdout.write(`${JSON.stringify(target)}\n`);
process.on('SIGTERM', () => process.exit(0));
