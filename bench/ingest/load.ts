/**
 * The load generator of the ingest benchmark, in a process of its own: signed Teamwork v2 JSON
 * deliveries of about 2 KB over Node's http with a keep-alive Agent, CONNECTIONS requests in flight,
 * for SECONDS seconds. Bodies (distinct tasks and versions) are made before the clock starts; each
 * request appends its own number (`"benchRequest":N`), so that no two deliveries are byte for byte the
 * same (the connector's replay window would answer a repeat without queueing it, which would flatter
 * its figures). The HMAC of each body's common part is computed once too: a request finishes it from a
 * copy of that state (HMAC = H(K^opad || H(K^ipad || prefix || suffix))), about a microsecond, so the
 * generator still spends its time on HTTP.
 *
 * Usage: tsx bench/ingest/load.ts <url> <token> <seconds> <connections>
 * Prints one JSON line: { requests, non200, errors, seconds, perSecond, p50Ms, p99Ms, statuses }.
 */
import { createHash, type Hash } from 'node:crypto';
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

/** HMAC-SHA256 key pads (RFC 2104); a key longer than the block is hashed first. */
const BLOCK = 64;
const rawKey = Buffer.from(token);
const key = Buffer.alloc(BLOCK);
(rawKey.length > BLOCK ? createHash('sha256').update(rawKey).digest() : rawKey).copy(key);
const ipad = Buffer.from(key.map((b) => b ^ 0x36));
const opad = Buffer.from(key.map((b) => b ^ 0x5c));

/** Each body without its closing brace, and the inner hash state over the key pad and that prefix. */
const prepared: Array<{ prefix: Buffer; inner: Hash }> = Array.from({ length: BODIES }, (_, n) => {
  const prefix = body(n).subarray(0, -1);
  return { prefix, inner: createHash('sha256').update(ipad).update(prefix) };
});

/** The body of request n (body n modulo BODIES, with n appended) and its signature. */
function signed(n: number): { body: Buffer; signature: string } {
  const { prefix, inner } = prepared[n % BODIES] as { prefix: Buffer; inner: Hash };
  const suffix = Buffer.from(`,"benchRequest":${n}}`);
  const innerDigest = inner.copy().update(suffix).digest();
  return { body: Buffer.concat([prefix, suffix]), signature: createHash('sha256').update(opad).update(innerDigest).digest('hex') };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: connections });

function post(n: number): Promise<number> {
  const { body: b, signature } = signed(n);
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
