/**
 * The SSRF guard for URLs we did not choose (src/http/guarded-fetch.ts): the address classifier as a
 * table, the allow-list entries, and the fetch itself against real local servers whose request logs
 * show that a refused target is never reached (refusals happen before any connection).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { ConnectorError } from '../../src/errors.ts';
import { classifyAddress, createGuardedFetch, parseAllowedHost, sendOnce, type AddressKind, type ResolvedAddress } from '../../src/http/guarded-fetch.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(register: Parameters<typeof startTestServer>[0]): Promise<TestServer> {
  const s = await startTestServer(register);
  servers.push(s);
  return s;
}

const host = (s: TestServer) => new URL(s.url).host;

async function refusal(promise: Promise<unknown>): Promise<ConnectorError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectorError);
  expect((err as ConnectorError).code).toBe('CONN_ERR_ATTACHMENT_URL_REFUSED');
  expect((err as ConnectorError).retryable).toBe(false);
  return err as ConnectorError;
}

describe('classifyAddress', () => {
  const table: Array<[string, AddressKind]> = [
    // IPv4
    ['8.8.8.8', 'public'],
    ['93.184.216.34', 'public'],
    ['1.1.1.1', 'public'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', 'public'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'shared'],
    ['100.127.255.255', 'shared'],
    ['100.128.0.1', 'public'],
    ['169.254.169.254', 'link-local'],
    ['192.0.0.8', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['198.51.100.7', 'reserved'],
    ['203.0.113.9', 'reserved'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    // IPv6
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['::ffff:8.8.8.8', 'public'],
    ['::127.0.0.1', 'reserved'],
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::8.8.8.8', 'public'],
    ['2002:7f00:1::', 'loopback'],
    ['2002:0808:0808::1', 'public'],
    ['fc00::1', 'private'],
    ['fd12:3456:789a::1', 'private'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    ['fec0::1', 'reserved'],
    ['ff02::1', 'multicast'],
    ['100::1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['2001::1', 'reserved'],
    ['3fff::1', 'reserved'],
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001:82b::200e', 'public'],
    // Not addresses
    ['localhost', 'invalid'],
    ['', 'invalid'],
    ['127.1', 'invalid'],
    ['1.2.3.256', 'invalid'],
  ];
  it.each(table)('%s is %s', (address, kind) => {
    expect(classifyAddress(address)).toBe(kind);
  });
});

describe('allow-list entries', () => {
  it('reads host and host:port, IPv6 in brackets, canonicalised as URL hostnames', () => {
    expect(parseAllowedHost('127.0.0.1:4011')).toEqual({ hostname: '127.0.0.1', port: 4011 });
    expect(parseAllowedHost('LocalHost')).toEqual({ hostname: 'localhost', port: null });
    expect(parseAllowedHost('[0:0::1]:8080')).toEqual({ hostname: '[::1]', port: 8080 });
    expect(parseAllowedHost('files.example.com')).toEqual({ hostname: 'files.example.com', port: null });
    for (const bad of ['http://127.0.0.1', '127.0.0.1:0', 'a:70000', 'user@host', 'host/path', '::1', '']) {
      expect(typeof parseAllowedHost(bad), bad).toBe('string');
    }
  });

  it('ATTACHMENTS_ALLOWED_HOSTS is a list; a bad entry stops start-up naming the setting', () => {
    expect(parseConfig({}).ATTACHMENTS_ALLOWED_HOSTS).toBeUndefined();
    expect(parseConfig({ ATTACHMENTS_ALLOWED_HOSTS: '127.0.0.1:4011, [::1]:4011 ,localhost' }).ATTACHMENTS_ALLOWED_HOSTS).toEqual(['127.0.0.1:4011', '[::1]:4011', 'localhost']);
    expect(() => parseConfig({ ATTACHMENTS_ALLOWED_HOSTS: '127.0.0.1:4011,http://x' })).toThrow(/^Invalid setting ATTACHMENTS_ALLOWED_HOSTS: must be comma-separated host or host:port entries/);
  });
});

describe('createGuardedFetch', () => {
  it('refuses every scheme but https, and http to a host not allowed, before resolving anything', async () => {
    const resolved: string[] = [];
    const guarded = createGuardedFetch({ resolve: async (h) => (resolved.push(h), [{ address: '8.8.8.8', family: 4 }]) });
    for (const url of ['data:text/plain;base64,aGk=', 'file:///etc/passwd', 'ftp://files.example.com/a', 'gopher://x/', 'http://files.example.com/a']) {
      const err = await refusal(guarded(url));
      expect(err.message, url).toMatch(/scheme is never fetched|only https/);
    }
    expect(resolved).toEqual([]);
  });

  it('refuses IP literals that are not public, however they are written', async () => {
    const target = await server((app) => app.get('/*', async () => 'secret'));
    const port = new URL(target.url).port;
    const guarded = createGuardedFetch();
    for (const url of [
      `https://127.0.0.1:${port}/metrics`,
      `https://2130706433:${port}/`,
      `https://0x7f.1:${port}/`,
      `https://[::1]:${port}/`,
      `https://[::ffff:127.0.0.1]:${port}/`,
      'https://0.0.0.0/',
      'https://[::]/',
      'https://169.254.169.254/latest/meta-data/',
      'https://100.64.0.1/',
      'https://10.0.0.1/',
      'https://[fe80::1]/',
      'https://[fd00::1]/',
      'https://224.0.0.1/',
    ]) {
      await refusal(guarded(url));
    }
    expect(target.seen).toEqual([]);
  });

  it('resolves a name once and refuses it when any address is not public (localhost; mixed answers)', async () => {
    const tcp = net.createServer((socket) => socket.destroy());
    let connections = 0;
    tcp.on('connection', () => connections++);
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    try {
      const port = (tcp.address() as net.AddressInfo).port;
      const err = await refusal(createGuardedFetch()(`https://localhost:${port}/file`));
      expect(err.message).toMatch(/localhost resolves to (127\.0\.0\.1|::1), a loopback address/);

      const asked: string[] = [];
      const mixed = async (name: string): Promise<ResolvedAddress[]> => {
        asked.push(name);
        return [
          { address: '8.8.8.8', family: 4 },
          { address: '127.0.0.1', family: 4 },
        ];
      };
      await refusal(createGuardedFetch({ resolve: mixed })(`https://files.example.com:${port}/x`));
      expect(asked).toEqual(['files.example.com']);
      expect(connections).toBe(0);
    } finally {
      await new Promise((resolve) => tcp.close(resolve));
    }
  });

  it('fetches an allowed host over http; the port must match when the entry has one', async () => {
    const files = await server((app) => app.get('/f', async (_req, reply) => reply.header('content-type', 'text/plain').send('content')));
    const port = Number(new URL(files.url).port);
    const ok = await createGuardedFetch({ allowedHosts: [host(files)] })(`${files.url}/f`);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('content');
    const anyPort = await createGuardedFetch({ allowedHosts: ['127.0.0.1'] })(`${files.url}/f`);
    expect(await anyPort.text()).toBe('content');
    await refusal(createGuardedFetch({ allowedHosts: [`127.0.0.1:${port + 1}`] })(`${files.url}/f`));
    expect(files.seen).toHaveLength(2);
  });

  it('checks every redirect: an allowed host redirecting to a loopback one is refused before it is asked', async () => {
    const target = await server((app) => app.get('/metrics', async () => 'connector_metric 1'));
    const allowed = await server((app) => {
      app.get('/to', async (req, reply) => reply.redirect((req.query as { location: string }).location, 302));
      app.get('/here', async (_req, reply) => reply.redirect('/file', 301));
      app.get('/file', async () => 'fine');
    });
    const guarded = createGuardedFetch({ allowedHosts: [host(allowed)] });
    for (const location of [`${target.url}/metrics`, `https://${host(target)}/metrics`, 'file:///etc/passwd', 'https://169.254.169.254/latest/meta-data/']) {
      const err = await refusal(guarded(`${allowed.url}/to?location=${encodeURIComponent(location)}`));
      expect(err.message).toMatch(/\(redirect 1\)/);
    }
    expect(target.seen).toEqual([]);
    // A redirect within the allowed host is followed.
    const followed = await guarded(`${allowed.url}/here`);
    expect(await followed.text()).toBe('fine');
  });

  it('follows at most maxRedirects redirects', async () => {
    const loop = await server((app) => app.get('/loop', async (_req, reply) => reply.redirect('/loop', 302)));
    const err = await refusal(createGuardedFetch({ allowedHosts: [host(loop)], maxRedirects: 3 })(`${loop.url}/loop`));
    expect(err.message).toMatch(/more than 3 redirects/);
    expect(loop.hits('/loop')).toHaveLength(4);
  });

  it('never shows a URL\'s query (a signed URL\'s credential) or user info', async () => {
    const err = await refusal(createGuardedFetch()('https://user:pw@127.0.0.1/file.pdf?X-Amz-Signature=abc123def456&Expires=99'));
    const shown = JSON.stringify({ message: err.message, details: err.details });
    expect(shown).toContain('https://127.0.0.1/file.pdf');
    expect(shown).not.toMatch(/abc123def456|Expires|user|pw@/);
  });
});

describe('sendOnce (the pinned connection)', () => {
  it('connects to the checked address, never resolving the name again, with the name as Host', async () => {
    const files = await server((app) => app.get('/f', async (req) => `host=${req.headers.host}`));
    const port = new URL(files.url).port;
    // files.example.invalid does not resolve: the request arrives only because the lookup is pinned.
    const url = new URL(`http://files.example.invalid:${port}/f`);
    const response = await sendOnce(url, 'GET', new Headers(), undefined, [{ address: '127.0.0.1', family: 4 }], undefined);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(`host=files.example.invalid:${port}`);
    const unpinned = await sendOnce(url, 'GET', new Headers(), undefined, null, undefined).catch((e: unknown) => e);
    expect((unpinned as { code?: string }).code).toMatch(/ENOTFOUND|EAI_AGAIN/);
    expect(files.seen).toHaveLength(1);
  });

  it('a caller abort during a slow DNS answer ends the request at once', async () => {
    const controller = new AbortController();
    const never = () => new Promise<ResolvedAddress[]>(() => {});
    const pending = createGuardedFetch({ resolve: never })('https://slow.example.invalid/f', { signal: controller.signal });
    controller.abort(new Error('timed out'));
    await expect(pending).rejects.toThrow('timed out');
  });
});
