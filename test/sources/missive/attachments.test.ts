/**
 * Attachment storage against a small file server: hostile names stay inside the email's folder,
 * oversize and mistyped files are refused without leaving anything behind, an expired URL is refreshed
 * exactly once, two emails never share a file, and a stored file is not downloaded again.
 */
import { createHash, createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConnectorError } from '../../../src/errors.ts';
import type { Attachment } from '../../../src/model.ts';
import { attachmentPath, AttachmentStore, contentTypeAgrees, safeFileName } from '../../../src/sources/missive/attachments.ts';
import { createMissiveLimiter, MissiveClient } from '../../../src/sources/missive/client.ts';
import { removeTempDirs, startSystem, tempDir, type System } from '../../system/harness.ts';
import { logSink } from './helpers.ts';
import { startHarness, type Harness } from './sim-harness.ts';
import { startFakeServer, type FakeServer } from './fake-server.ts';

const EMAIL = 'e7f8a9b0-2c3d-4e5f-9a0b-1c2d3e4f5a6b';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let server: FakeServer | undefined;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'missive-attachments-'));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

interface Served {
  body: Buffer;
  type: string;
  /** Answer 403 to this many requests first (an expired signed URL). */
  expiredFor?: number;
  /** Send no content-length (chunked), so the size is known only while reading. */
  chunked?: boolean;
  status?: number;
}

/** A file server at /files/:name, and GET /v1/messages/:id answering fresh URLs (`?v=2`). */
async function fileServer(files: Record<string, Served>, message?: () => unknown): Promise<FakeServer> {
  const hits = new Map<string, number>();
  return startFakeServer((app) => {
    app.get('/files/:name', async (request, reply) => {
      const { name } = request.params as { name: string };
      const file = files[name];
      if (file === undefined) return reply.code(404).send({ error: 'no such file' });
      const n = (hits.get(name) ?? 0) + 1;
      hits.set(name, n);
      if (file.expiredFor !== undefined && n <= file.expiredFor) {
        return reply.code(403).header('content-type', 'application/xml').send('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
      }
      if (file.status !== undefined) return reply.code(file.status).send({ error: 'boom' });
      reply.header('content-type', file.type);
      if (file.chunked) {
        const { Readable } = await import('node:stream');
        return reply.send(Readable.from([file.body.subarray(0, 10), file.body.subarray(10)]));
      }
      return reply.send(file.body);
    });
    app.get('/v1/messages/:id', async () => ({ messages: message?.() ?? null }));
  });
}

/** A client for the file server; its host is allowed for downloads (it is on 127.0.0.1, over http). */
function client(url: string): MissiveClient {
  return new MissiveClient({ token: 't', baseUrl: `${url}/v1`, limiter: createMissiveLimiter({ windowMarginMs: 0 }), maxAttempts: 1, attachmentHosts: [new URL(url).host] });
}

function attachment(overrides: Partial<Attachment>): Attachment {
  return {
    id: '9a8b7c6d-0000-4000-8000-00000000a011',
    emailId: EMAIL,
    filename: 'file.pdf',
    mediaType: 'application/pdf',
    size: null,
    url: null,
    storedPath: null,
    sha256: null,
    ...overrides,
  };
}

/** Every file under `dir`, relative, including temp files. */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

describe('safe file names', () => {
  it('keeps only the last path segment and removes what a file system or a reader could trip on', () => {
    expect(safeFileName('../../etc/passwd')).toBe('passwd');
    expect(safeFileName('..\\..\\x')).toBe('x');
    expect(safeFileName('a\u0000b.txt')).toBe('ab.txt');
    expect(safeFileName('..')).toBe('attachment');
    expect(safeFileName('.bashrc')).toBe('bashrc');
    expect(safeFileName('report.pdf. . ')).toBe('report.pdf');
    expect(safeFileName('CON')).toBe('_CON');
    expect(safeFileName('nul.txt')).toBe('_nul.txt');
    expect(safeFileName('what?<>:"|*.doc')).toBe('what_______.doc');
    expect(safeFileName('invoice\u202Efdp.exe')).toBe('invoicefdp.exe');
    expect(safeFileName('Rechnung Nr. 42 – März.pdf')).toBe('Rechnung Nr. 42 – März.pdf');
    expect(safeFileName(null)).toBe('attachment');
    expect(safeFileName('   ')).toBe('attachment');
  });

  it('caps length in UTF-8 bytes without splitting a character, keeping the extension', () => {
    const long = `${'é'.repeat(300)}.pdf`;
    const safe = safeFileName(long);
    expect(Buffer.byteLength(safe)).toBeLessThanOrEqual(240);
    expect(safe.endsWith('.pdf')).toBe(true);
    expect(safe).toBe(`${'é'.repeat(118)}.pdf`);
  });

  it('places every file in <dir>/<email id>/<attachment id>-<name>, whatever the ids and names say', () => {
    expect(attachmentPath(dir, attachment({ filename: '../../etc/passwd' }))).toBe(path.join(dir, EMAIL, '9a8b7c6d-0000-4000-8000-00000000a011-passwd'));
    expect(attachmentPath(dir, attachment({ emailId: '../../../tmp', id: '../x' }))).toBe(path.join(dir, 'tmp', 'x-file.pdf'));
    const long = attachmentPath(dir, attachment({ filename: 'ß'.repeat(400) }));
    expect(Buffer.byteLength(path.basename(long))).toBeLessThanOrEqual(240);
  });

  it('content types: same type, generic octet-stream, known aliases agree; others do not', () => {
    expect(contentTypeAgrees('image/png', 'image/png')).toBe(true);
    expect(contentTypeAgrees('image/png', 'IMAGE/PNG; charset=binary')).toBe(true);
    expect(contentTypeAgrees('image/jpeg', 'image/jpg')).toBe(true);
    expect(contentTypeAgrees('image/png', 'application/octet-stream')).toBe(true);
    expect(contentTypeAgrees('image', 'image/gif')).toBe(true);
    expect(contentTypeAgrees('image/png', 'text/html')).toBe(false);
    expect(contentTypeAgrees('application/pdf', 'application/zip')).toBe(false);
    expect(contentTypeAgrees(null, 'text/html')).toBe(true);
  });
});

describe('AttachmentStore', () => {
  it('stores hostile names safely inside the email folder, with sha256 and path recorded', async () => {
    const content = (s: string) => Buffer.from(`content of ${s}`);
    const names = ['../../etc/passwd', '..\\..\\x', 'nul\u0000byte.txt', `${'長'.repeat(200)}.txt`];
    server = await fileServer(Object.fromEntries(names.map((_, i) => [`f${i}`, { body: content(`f${i}`), type: 'text/plain' }])));
    const store = new AttachmentStore({ dir, maxBytes: 1024, fetcher: client(server.url), log: logSink().log });
    const input = names.map((filename, i) => attachment({ id: `att-${i}`, filename, mediaType: 'text/plain', url: `${server!.url}/files/f${i}` }));
    const stored = await store.storeAll(input, { urls: 'api' });
    for (const [i, a] of stored.entries()) {
      expect(a.storedPath).not.toBeNull();
      expect(path.dirname(a.storedPath!)).toBe(path.join(dir, EMAIL));
      expect(readFileSync(a.storedPath!)).toEqual(content(`f${i}`));
      expect(a.sha256).toBe(sha(content(`f${i}`)));
      expect({ ...a, storedPath: null, sha256: null }).toEqual(input[i]);
    }
    expect(stored.map((a) => path.basename(a.storedPath!)).slice(0, 3)).toEqual(['att-0-passwd', 'att-1-x', 'att-2-nulbyte.txt']);
    expect(Buffer.byteLength(path.basename(stored[3]!.storedPath!))).toBeLessThanOrEqual(240);
    expect(filesUnder(dir)).toHaveLength(4);
    expect(existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : '').not.toContain('content of');
  });

  it('a transient failure fails the email so it is tried again, except on its last attempt: then the metadata is kept', async () => {
    server = await fileServer({ down: { body: Buffer.from('x'), type: 'application/pdf', status: 503 } });
    const log = logSink();
    const store = new AttachmentStore({ dir, maxBytes: 1024, fetcher: client(server.url), log: log.log });
    const input = [attachment({ url: `${server.url}/files/down` })];
    const err = await store.storeAll(input, { urls: 'api' }).catch((e: unknown) => e);
    expect((err as ConnectorError).code).toBe('CONN_ERR_HTTP_SERVER');
    expect(await store.storeAll(input, { urls: 'api', lastAttempt: true })).toEqual(input);
    expect(filesUnder(dir)).toEqual([]);
    expect(log.lines().some((l) => String(l.msg).includes('last attempt'))).toBe(true);
  });

  it('keeps two emails\' files with the same name apart', async () => {
    server = await fileServer({ a: { body: Buffer.from('first'), type: 'application/pdf' }, b: { body: Buffer.from('second'), type: 'application/pdf' } });
    const store = new AttachmentStore({ dir, maxBytes: 1024, fetcher: client(server.url), log: logSink().log });
    const one = await store.store(attachment({ emailId: 'email-1', id: 'same', url: `${server.url}/files/a` }));
    const two = await store.store(attachment({ emailId: 'email-2', id: 'same', url: `${server.url}/files/b` }));
    expect(one.storedPath).not.toBe(two.storedPath);
    expect(readFileSync(one.storedPath!, 'utf8')).toBe('first');
    expect(readFileSync(two.storedPath!, 'utf8')).toBe('second');
  });

  it('refuses an attachment whose metadata is over the cap without downloading it', async () => {
    server = await fileServer({ big: { body: Buffer.alloc(2000, 1), type: 'application/pdf' } });
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log: logSink().log });
    const err = await store.store(attachment({ size: 2000, url: `${server.url}/files/big` })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectorError);
    expect((err as ConnectorError).code).toBe('CONN_ERR_ATTACHMENT_TOO_LARGE');
    expect((err as ConnectorError).message).toMatch(/is 2000 bytes; ATTACHMENTS_MAX_BYTES is 1000/);
    expect(server.seen).toEqual([]);
    expect(filesUnder(dir)).toEqual([]);
  });

  it('refuses a body over the cap even when the metadata understated it (declared and chunked), leaving no partial file', async () => {
    const body = Buffer.alloc(5000, 7);
    server = await fileServer({ declared: { body, type: 'application/pdf' }, chunked: { body, type: 'application/pdf', chunked: true } });
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log: logSink().log });
    for (const name of ['declared', 'chunked']) {
      const err = await store.store(attachment({ id: name, size: 10, url: `${server.url}/files/${name}` })).catch((e: unknown) => e);
      expect((err as ConnectorError).code, name).toBe('CONN_ERR_ATTACHMENT_TOO_LARGE');
    }
    expect(filesUnder(dir)).toEqual([]);
  });

  it('refuses content whose type disagrees with the attachment, and accepts octet-stream', async () => {
    server = await fileServer({
      html: { body: Buffer.from('<html>login page</html>'), type: 'text/html; charset=utf-8' },
      octet: { body: Buffer.from([0x89, 0x50, 0x4e, 0x47]), type: 'application/octet-stream' },
    });
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log: logSink().log });
    const err = await store.store(attachment({ id: 'img', filename: 'logo.png', mediaType: 'image/png', url: `${server.url}/files/html` })).catch((e: unknown) => e);
    expect((err as ConnectorError).code).toBe('CONN_ERR_ATTACHMENT_REJECTED');
    expect((err as ConnectorError).message).toMatch(/served as text\/html; charset=utf-8 but is image\/png/);
    expect(filesUnder(dir)).toEqual([]);
    const ok = await store.store(attachment({ id: 'img2', filename: 'logo.png', mediaType: 'image/png', url: `${server.url}/files/octet` }));
    expect(ok.sha256).toBe(sha(Buffer.from([0x89, 0x50, 0x4e, 0x47])));
  });

  it('refreshes an expired URL once, from the message, picking the attachment by id', async () => {
    const body = Buffer.from('%PDF-1.7 fresh');
    server = await fileServer({ doc: { body, type: 'application/pdf', expiredFor: 1 } }, () => ({
      id: EMAIL,
      attachments: [
        { id: 'other', filename: 'x.txt', url: `${server!.url}/files/nothing`, media_type: 'text', sub_type: 'plain' },
        { id: 'doc-1', filename: 'file.pdf', url: `${server!.url}/files/doc?v=2`, media_type: 'application', sub_type: 'pdf', size: body.length },
      ],
    }));
    const { log, lines } = logSink();
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log });
    const stored = await store.store(attachment({ id: 'doc-1', url: `${server.url}/files/doc?v=1` }));
    expect(readFileSync(stored.storedPath!)).toEqual(body);
    expect(server.seen).toEqual(['GET /files/doc?v=1', `GET /v1/messages/${EMAIL}`, 'GET /files/doc?v=2']);
    expect(lines().some((l) => l.msg === 'attachment URL expired; refreshing it from the message')).toBe(true);
  });

  it('gives up after one refresh when the fresh URL is refused too', async () => {
    server = await fileServer({ doc: { body: Buffer.from('x'), type: 'application/pdf', expiredFor: 99 } }, () => ({
      id: EMAIL,
      attachments: [{ id: 'doc-1', filename: 'file.pdf', url: `${server!.url}/files/doc?v=2`, media_type: 'application', sub_type: 'pdf' }],
    }));
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log: logSink().log });
    const err = await store.store(attachment({ id: 'doc-1', url: `${server.url}/files/doc?v=1` })).catch((e: unknown) => e);
    expect((err as ConnectorError).code).toBe('CONN_ERR_ATTACHMENT_REJECTED');
    expect(server.seen).toEqual(['GET /files/doc?v=1', `GET /v1/messages/${EMAIL}`, 'GET /files/doc?v=2']);
  });

  it('storeAll keeps the metadata of a refused file and logs why; a transient failure is thrown', async () => {
    server = await fileServer({
      html: { body: Buffer.from('<html/>'), type: 'text/html' },
      good: { body: Buffer.from('good'), type: 'text/plain' },
      down: { body: Buffer.from(''), type: 'text/plain', status: 503 },
    });
    const { log, lines } = logSink();
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log });
    const refused = attachment({ id: 'r', mediaType: 'image/png', url: `${server.url}/files/html` });
    const good = attachment({ id: 'g', filename: 'good.txt', mediaType: 'text/plain', url: `${server.url}/files/good` });
    const result = await store.storeAll([refused, good], { urls: 'api' });
    expect(result[0]).toEqual(refused);
    expect(result[1]?.sha256).toBe(sha(Buffer.from('good')));
    const warning = lines().find((l) => l.level === 'warn');
    expect(warning).toMatchObject({ attachmentId: 'r', emailId: EMAIL, code: 'CONN_ERR_ATTACHMENT_REJECTED' });

    const err = await store.storeAll([attachment({ id: 'd', mediaType: 'text/plain', url: `${server.url}/files/down` })], { urls: 'api' }).catch((e: unknown) => e);
    expect((err as ConnectorError).code).toBe('CONN_ERR_HTTP_SERVER');
    expect((err as ConnectorError).retryable).toBe(true);
  });

  it('urls: delivery: fetches the URL the API gives by id, never the given one; one the API does not show keeps its metadata', async () => {
    server = await fileServer({ api: { body: Buffer.from('from the API'), type: 'text/plain' }, given: { body: Buffer.from('from the delivery'), type: 'text/plain' } }, () => ({
      id: EMAIL,
      attachments: [{ id: 'known', filename: 'a.txt', url: `${server!.url}/files/api`, media_type: 'text', sub_type: 'plain', size: 12 }],
    }));
    const { log, lines } = logSink();
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log });
    const known = attachment({ id: 'known', filename: 'a.txt', mediaType: 'text/plain', url: `${server.url}/files/given` });
    const unknown = attachment({ id: 'unknown', filename: 'b.txt', mediaType: 'text/plain', url: `${server.url}/files/given` });
    const [a, b] = await store.storeAll([known, unknown], { urls: 'delivery' });
    expect(readFileSync(a!.storedPath!, 'utf8')).toBe('from the API');
    // The metadata stored is the API's too (its URL, size and type), not the delivery's copy.
    expect({ ...a, storedPath: null, sha256: null }).toEqual({ ...known, url: `${server.url}/files/api`, size: 12 });
    expect(b).toEqual(unknown);
    expect(server.seen).toEqual([`GET /v1/messages/${EMAIL}`, 'GET /files/api']);
    expect(lines().find((l) => l.attachmentId === 'unknown')).toMatchObject({ level: 'warn', code: 'CONN_ERR_ATTACHMENT_REJECTED' });
  });

  it('does not download a file it already stored', async () => {
    server = await fileServer({ a: { body: Buffer.from('once'), type: 'application/pdf' } });
    const store = new AttachmentStore({ dir, maxBytes: 1000, fetcher: client(server.url), log: logSink().log });
    const first = await store.store(attachment({ url: `${server.url}/files/a` }));
    const second = await store.store(attachment({ url: `${server.url}/files/a?expired=1` }));
    expect({ storedPath: second.storedPath, sha256: second.sha256 }).toEqual({ storedPath: first.storedPath, sha256: first.sha256 });
    expect(server.seen).toEqual(['GET /files/a']);
  });
});

/**
 * SSRF through attachment URLs (issue 14, item 6), through the running connector: signed deliveries
 * whose message carries a body and attachments, a fake Missive API answering GET /v1/messages/:id, a
 * "forbidden" server with a request log (what an attacker would like us to reach), a raw TCP server
 * counting connections (for https://localhost), and one allowed host (ATTACHMENTS_ALLOWED_HOSTS) that
 * serves a file and redirects. Each case ends with the email stored, the attachment's metadata stored
 * without content, nothing reaching the forbidden target, and nothing dead-lettered.
 */
describe('attachment URLs: only from the API, never to a private, loopback or link-local address', () => {
  const SECRET = 'ssrf-test-secret-5d1e';
  /** What the fake API answers for GET /v1/messages/:id (the message, with its attachments). */
  const apiMessages = new Map<string, Record<string, unknown>>();
  let api: FakeServer;
  let forbidden: FakeServer;
  let allowed: FakeServer;
  let tcp: net.Server;
  let tcpConnections = 0;
  let tcpPort = 0;
  let sys: System;
  let filesDir: string;
  let n = 0;

  beforeAll(async () => {
    api = await startFakeServer((app) => {
      app.get('/v1/messages/:id', async (request, reply) => {
        const message = apiMessages.get((request.params as { id: string }).id);
        return message === undefined ? reply.code(404).send({ error: 'not found' }) : { messages: message };
      });
    });
    forbidden = await startFakeServer((app) => {
      app.get('/metrics', async (_request, reply) => reply.header('content-type', 'text/plain').send('connector_secret_metric 1\n'));
    });
    allowed = await startFakeServer((app) => {
      app.get('/files/good.txt', async (_request, reply) => reply.header('content-type', 'text/plain').send('good content'));
      app.get('/to', async (request, reply) => reply.redirect((request.query as { location: string }).location, 302));
    });
    tcp = net.createServer((socket) => {
      tcpConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    tcpPort = (tcp.address() as net.AddressInfo).port;
    filesDir = path.join(tempDir('conn-ssrf'), 'attachments');
    sys = await startSystem({
      env: {
        MISSIVE_BASE_URL: `${api.url}/v1`,
        MISSIVE_API_TOKEN: 'ssrf-test-token',
        MISSIVE_WEBHOOK_SECRET: SECRET,
        ATTACHMENTS_STORE: 'true',
        ATTACHMENTS_DIR: filesDir,
        ATTACHMENTS_ALLOWED_HOSTS: new URL(allowed.url).host,
      },
    });
  });

  afterAll(async () => {
    await sys?.stop();
    await Promise.all([api?.close(), forbidden?.close(), allowed?.close(), new Promise((resolve) => tcp?.close(resolve))]);
    removeTempDirs();
  });

  /**
   * Sends a signed incoming_email delivery whose message has a body and one text attachment at
   * `deliveryUrl`; the API shows the same message with the attachment at `apiUrl`. Waits until handled.
   */
  async function deliver(deliveryUrl: string, apiUrl = deliveryUrl): Promise<{ messageId: string; attachmentId: string }> {
    n++;
    const messageId = `ssrf-message-${n}`;
    const attachmentId = `ssrf-attachment-${n}`;
    const conversation = { id: `ssrf-conversation-${n}`, subject: 'Invoice', users: [{ id: 'u1', name: 'A', email: 'a@example.com', trashed: false }] };
    const attachment = (url: string) => ({ id: attachmentId, filename: 'note.txt', extension: 'txt', media_type: 'text', sub_type: 'plain', size: 12, url });
    const message = {
      id: messageId,
      subject: 'Invoice',
      preview: 'hello',
      type: 'email',
      body: '<p>hello</p>',
      delivered_at: 1732795230,
      created_at: 1732795230,
      updated_at: 1732795230,
      from_field: { name: 'Sender', address: 'sender@example.com' },
      to_fields: [{ name: 'Us', address: 'us@example.com' }],
    };
    apiMessages.set(messageId, { ...message, attachments: [attachment(apiUrl)], conversation });
    const body = JSON.stringify({ rule: { id: 'rule-1', type: 'incoming_email' }, conversation, message: { ...message, attachments: [attachment(deliveryUrl)] } });
    const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
    const response = await fetch(`${sys.url}/webhooks/missive`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hook-signature': signature }, body });
    expect(response.status).toBe(200);
    await sys.waitIdle(30_000);
    return { messageId, attachmentId };
  }

  /** The email and the attachment's metadata are stored, its content is not, nothing dead-lettered. */
  async function expectMetadataOnly(messageId: string, attachmentId: string): Promise<void> {
    const email = await sys.db.getEmail(messageId);
    expect(email?.id).toBe(messageId);
    expect(email?.attachments).toEqual([expect.objectContaining({ id: attachmentId, filename: 'note.txt', mediaType: 'text/plain', size: 12, storedPath: null, sha256: null })]);
    expect(filesUnder(path.join(filesDir, messageId))).toEqual([]);
    expect((await sys.stats()).deadLettered).toBe(0);
  }

  it('http://127.0.0.1:<port>/metrics: refused, no request reaches it', async () => {
    const { messageId, attachmentId } = await deliver(`${forbidden.url}/metrics`);
    await expectMetadataOnly(messageId, attachmentId);
    expect(forbidden.seen).toEqual([]);
    const refusal = sys.lines.find((l) => l.attachmentId === attachmentId && l.level === 'warn');
    expect(refusal?.code).toBe('CONN_ERR_ATTACHMENT_URL_REFUSED');
    expect(sys.lines.filter((l) => l.attachmentId === attachmentId && l.level === 'warn')).toHaveLength(1);
  });

  it('a data: URL: refused, nothing stored', async () => {
    const { messageId, attachmentId } = await deliver(`data:text/plain;base64,${Buffer.from('planted content').toString('base64')}`);
    await expectMetadataOnly(messageId, attachmentId);
  });

  it('a file: URL: refused at once, not retried, the email not dead-lettered', async () => {
    const retries = sys.counters['event:retrying'];
    const { messageId, attachmentId } = await deliver('file:///etc/hostname');
    await expectMetadataOnly(messageId, attachmentId);
    expect(sys.counters['event:retrying']).toBe(retries);
  });

  it('https to a name that resolves to 127.0.0.1 (localhost): refused, no connection made', async () => {
    const { messageId, attachmentId } = await deliver(`https://localhost:${tcpPort}/file.txt`);
    await expectMetadataOnly(messageId, attachmentId);
    expect(tcpConnections).toBe(0);
  });

  it('a redirect from an allowed host to a loopback address: refused, the loopback target never asked', async () => {
    const location = `${forbidden.url}/metrics`;
    const { messageId, attachmentId } = await deliver(`${allowed.url}/to?location=${encodeURIComponent(location)}`);
    await expectMetadataOnly(messageId, attachmentId);
    expect(forbidden.seen).toEqual([]);
    expect(allowed.seen.filter((s) => s.startsWith('GET /to?'))).toHaveLength(1);
    const refusal = sys.lines.find((l) => l.attachmentId === attachmentId && l.level === 'warn');
    expect(refusal?.msg).toMatch(/redirect/);
  });

  it('the delivery\'s URL is never fetched: the content comes from the URL the API gives', async () => {
    const { messageId, attachmentId } = await deliver(`${forbidden.url}/metrics`, `${allowed.url}/files/good.txt`);
    const email = await sys.db.getEmail(messageId);
    const stored = email?.attachments.find((a) => a.id === attachmentId);
    expect(stored?.storedPath).not.toBeNull();
    expect(readFileSync(stored!.storedPath!, 'utf8')).toBe('good content');
    expect(forbidden.seen).toEqual([]);
    expect((await sys.stats()).deadLettered).toBe(0);
  });

  it('never logs the signed URL\'s query string', async () => {
    const { attachmentId } = await deliver(`${forbidden.url}/metrics?Signature=c2VjcmV0LXNpZ25hdHVyZQ&Expires=1732795230`);
    const text = JSON.stringify(sys.lines.filter((l) => JSON.stringify(l).includes(attachmentId)));
    expect(text).not.toContain('c2VjcmV0LXNpZ25hdHVyZQ');
    expect(text).not.toContain('Expires=');
  });
});

describe('ATTACHMENTS_ALLOWED_HOSTS with the Missive simulator (http on 127.0.0.1)', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function receiveAndProcess(env: Record<string, string>): Promise<{ stored: Attachment; downloads: string[] }> {
    h = await startHarness({ env: { ATTACHMENTS_STORE: 'true', ...env } });
    const { message } = await h.sim.receiveEmail({ attachments: [{ filename: 'scan.pdf', extension: 'pdf', mediaType: 'application', subType: 'pdf', size: 300 }] });
    const [event] = await h.take();
    const before = h.sim.requests.entries.length;
    await h.process(event!);
    const downloads = h.sim.requests.entries.slice(before).map((r) => r.path).filter((p) => p.startsWith('/attachments/'));
    const email = await h.db.getEmail(message.id);
    return { stored: email!.attachments[0]!, downloads };
  }

  it('allowed (as the test harness and the demo set it): the simulator\'s attachment is stored', async () => {
    const { stored, downloads } = await receiveAndProcess({});
    expect(downloads).toHaveLength(1);
    expect(stored.storedPath).not.toBeNull();
    expect(stored.sha256).toBe(sha(readFileSync(stored.storedPath!)));
  });

  it('not allowed: metadata only, the simulator never asked for the file, the refusal logged once', async () => {
    const { stored, downloads } = await receiveAndProcess({ ATTACHMENTS_ALLOWED_HOSTS: '' });
    expect(downloads).toEqual([]);
    expect(stored).toMatchObject({ filename: 'scan.pdf', size: 300, storedPath: null, sha256: null });
    const refusals = h!.lines().filter((l) => l.attachmentId === stored.id && l.level === 'warn');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ code: 'CONN_ERR_ATTACHMENT_URL_REFUSED' });
    expect(refusals[0]!.msg).toMatch(/only https is fetched from hosts not in the allow-list/);
  });
});
