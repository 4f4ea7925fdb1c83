/**
 * The load generator of the ingest benchmark, in a process of its own: signed Teamwork v2 JSON
 * deliveries of about 2 KB over Node's http with a keep-alive Agent, CONNECTIONS requests in flight,
 * for SECONDS seconds. Bodies (distinct tasks and versions) and their signatures are made before the
 * clock starts, so the generator spends its time on HTTP only.
 *
 * Usage: tsx bench/ingest/load.ts <url> <token> <seconds> <connections>
 * Prints one JSON line: { requests, non200, errors, seconds, perSecond, p50Ms, p99Ms, statuses }.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';

const [url = '', token = '', secondsArg = '10', connectionsArg = '50'] = process.argv.slice(2);
const seconds = Number(secondsArg);
const connections = Number(connectionsArg);
const target = new URL('/webhooks/teamwork', url);

const BODIES = 4096;
/** A Teamwork v2 webhook body (reference §1.4) padded with a description to about 2 KB. */
function body(n: number): Buffer {
  const id = 1_000_000 + (n % 2000);
  const task = {
    id,
    name: `Benchmark task ${id}`,
    description: '',
    priority: 'medium',
    status: 'active',
    assignedUserIds: [9],
    parentId: 0,
    taskListId: 501,
    startDate: null,
    dueDate: '2026-12-01',
    progress: 20,
    estimatedMinutes: 45,
    tags: [{ id: 1, name: 'bench', color: '2f8de4' }],
    projectId: 77,
    dateCreated: '2026-11-01T10:00:00Z',
    dateUpdated: new Date(Date.UTC(2026, 10, 2) + n * 1000).toISOString(),
    hasCustomFields: false,
  };
  const envelope = {
    eventCreator: { id: 9, firstName: 'Ada', lastName: 'Lovelace', avatar: '' },
    task,
    project: { id: 77, name: 'Operations', description: '', status: 'active', startDate: null, endDate: null, tags: [], ownerId: 9, companyId: 1, categoryId: 0, dateCreated: '2026-01-01T00:00:00Z' },
    taskList: { id: 501, name: 'Q4', description: '', status: 'new', milestoneId: 0, projectId: 77, templateId: null, tags: [] },
    users: [{ id: 9, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }],
  };
  const bare = JSON.stringify(envelope).length;
  task.description = `Version ${n} of a task made by the ingest benchmark. `.repeat(40).slice(0, Math.max(0, 2048 - bare));
  return Buffer.from(JSON.stringify(envelope));
}

const prepared = Array.from({ length: BODIES }, (_, n) => {
  const b = body(n);
  return { body: b, signature: createHmac('sha256', token).update(b).digest('hex') };
});

const agent = new http.Agent({ keepAlive: true, maxSockets: connections });

function post(n: number): Promise<number> {
  const { body: b, signature } = prepared[n % BODIES] as { body: Buffer; signature: string };
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': b.length, 'x-projects-signature': signature, 'x-projects-event': 'TASK.UPDATED' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(b);
  });
}

const latencies = new Float64Array(4_000_000);
let count = 0;
let errors = 0;
let next = 0;
const statuses: Record<string, number> = {};
const started = performance.now();
const deadline = started + seconds * 1000;

await Promise.all(
  Array.from({ length: connections }, async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        const status = await post(next++);
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (count < latencies.length) latencies[count] = performance.now() - t0;
        count++;
      } catch {
        errors++;
      }
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
agent.destroy();
const sorted = latencies.subarray(0, Math.min(count, latencies.length)).sort();
const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
const non200 = count - (statuses['200'] ?? 0);
process.stdout.write(`${JSON.stringify({ requests: count, non200, errors, seconds: elapsed, perSecond: count / elapsed, p50Ms: at(0.5), p99Ms: at(0.99), statuses })}\n`);
