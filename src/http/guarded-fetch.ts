/**
 * A `fetch` for URLs we did not choose (attachment downloads: signed URLs on hosts we do not know),
 * guarded against server-side request forgery. The vendor clients' own API calls do not use it: their
 * base URL is a setting.
 *
 * What one request goes through, and again for every redirect it follows:
 *
 *   the URL's host is in the allow-list       -> http or https; no address check (tests, the demo's
 *   (host, or host:port)                         simulator on 127.0.0.1); ordinary DNS
 *   otherwise: scheme is not https             -> refused (data:, file:, http:, ...)
 *              the host is an IP literal       -> checked with classifyAddress
 *              a name                          -> resolved once (all addresses); refused unless every
 *                                                 address is public; the connection is then made to
 *                                                 those checked addresses (a pinned `lookup`), with the
 *                                                 name as Host and TLS server name, so a second answer
 *                                                 from DNS (rebinding) is never asked for
 *   answer 301/302/303/307/308 with Location   -> next hop (at most `maxRedirects`), checked as above
 *   any other answer                           -> returned as a Response (body streamed, not decoded:
 *                                                 we ask for identity encoding)
 *
 * A refusal is a ConnectorError CONN_ERR_ATTACHMENT_URL_REFUSED (not retryable: the same URL will be
 * refused again) thrown before any connection to the refused target is opened. Its message shows the
 * URL without its query (a signed URL's query is a credential). DNS and connection failures are thrown
 * as Node reports them (ENOTFOUND, ECONNREFUSED, ...), which the HTTP core treats as transient.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { Readable } from 'node:stream';
import { ConnectorError } from '../errors.ts';

/** What an IP address is, for the purpose of fetching from it. Only `public` may be fetched. */
export type AddressKind =
  | 'public'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'shared'
  | 'link-local'
  | 'multicast'
  | 'reserved'
  | 'invalid';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export interface GuardedFetchOptions {
  /**
   * Hosts that may be fetched even when private or loopback, and over http: `host` (any port) or
   * `host:port`, IPv6 in brackets (ATTACHMENTS_ALLOWED_HOSTS). Default none.
   */
  allowedHosts?: readonly string[];
  /** Redirects followed per request, each checked like the first URL. Default 5. */
  maxRedirects?: number;
  /** Resolves a name to all its addresses. Default `dns.lookup(name, { all: true })`. */
  resolve?: (hostname: string) => Promise<ResolvedAddress[]>;
}

const DEFAULT_MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Statuses whose Response must have no body. */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);
/** Headers not carried to another origin on a redirect (as fetch does). */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

// ---- Addresses ----

/** An IPv4 address as 4 bytes, or null. */
function ipv4Bytes(address: string): number[] | null {
  if (isIP(address) !== 4) return null;
  return address.split('.').map(Number);
}

/** An IPv6 address (zone id ignored, embedded IPv4 tail allowed) as 16 bytes, or null. */
function ipv6Bytes(input: string): number[] | null {
  const address = input.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (isIP(address) !== 6) return null;
  let text = address;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    tail.push(...(ipv4Bytes(v4[1] as string) ?? []));
    text = `${text.slice(0, v4.index)}0:0`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const middle = rest === undefined ? [] : new Array<number>(8 - left.length - right.length).fill(0);
  const words = [...left, ...middle, ...right];
  const bytes = words.flatMap((w) => [w >> 8, w & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** Whether the first `bits` bits of `bytes` equal those of `prefix`. */
function inPrefix(bytes: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i += 8) {
    const take = Math.min(8, bits - i);
    const mask = (0xff << (8 - take)) & 0xff;
    if (((bytes[i / 8] ?? 0) & mask) !== ((prefix[i / 8] ?? 0) & mask)) return false;
  }
  return true;
}

/** IPv4 ranges that are not public (IANA special-purpose registry), first match wins. */
const IPV4_RANGES: ReadonlyArray<readonly [number[], number, AddressKind]> = [
  [[0, 0, 0, 0], 8, 'unspecified'], // "this network", 0.0.0.0
  [[10, 0, 0, 0], 8, 'private'],
  [[100, 64, 0, 0], 10, 'shared'], // carrier-grade NAT
  [[127, 0, 0, 0], 8, 'loopback'],
  [[169, 254, 0, 0], 16, 'link-local'], // cloud metadata services live here
  [[172, 16, 0, 0], 12, 'private'],
  [[192, 0, 0, 0], 24, 'reserved'], // IETF protocol assignments
  [[192, 0, 2, 0], 24, 'reserved'], // documentation
  [[192, 88, 99, 0], 24, 'reserved'], // 6to4 relay anycast
  [[192, 168, 0, 0], 16, 'private'],
  [[198, 18, 0, 0], 15, 'reserved'], // benchmarking
  [[198, 51, 100, 0], 24, 'reserved'], // documentation
  [[203, 0, 113, 0], 24, 'reserved'], // documentation
  [[224, 0, 0, 0], 4, 'multicast'],
  [[240, 0, 0, 0], 4, 'reserved'], // future use, and 255.255.255.255 (broadcast)
];

/** IPv6 ranges inside 2000::/3 that are not public, first match wins. */
const IPV6_GLOBAL_EXCEPTIONS: ReadonlyArray<readonly [number[], number, AddressKind]> = [
  [[0x20, 0x01, 0x0d, 0xb8], 32, 'reserved'], // documentation
  [[0x20, 0x01, 0x00, 0x00], 23, 'reserved'], // IETF protocol assignments (Teredo, benchmarking, ORCHID)
  [[0x3f, 0xff], 20, 'reserved'], // documentation
];

function classifyIpv4(bytes: readonly number[]): AddressKind {
  for (const [prefix, bits, kind] of IPV4_RANGES) if (inPrefix(bytes, prefix, bits)) return kind;
  return 'public';
}

function classifyIpv6(bytes: readonly number[]): AddressKind {
  const embedded = (from: number) => classifyIpv4(bytes.slice(from, from + 4));
  const zero = (from: number, to: number) => bytes.slice(from, to).every((b) => b === 0);
  if (zero(0, 16)) return 'unspecified';
  if (zero(0, 15) && bytes[15] === 1) return 'loopback';
  // IPv4-mapped (::ffff:a.b.c.d): the IPv4 address is what the socket reaches.
  if (zero(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff) return embedded(12);
  // NAT64 well-known prefix 64:ff9b::/96: translated to the embedded IPv4 address.
  if (inPrefix(bytes, [0x00, 0x64, 0xff, 0x9b], 32) && zero(4, 12)) return embedded(12);
  // 6to4 (2002::/16): tunnelled to the IPv4 address in bytes 2-5.
  if (inPrefix(bytes, [0x20, 0x02], 16)) return embedded(2);
  if (inPrefix(bytes, [0xfc], 7)) return 'private'; // unique local
  if (inPrefix(bytes, [0xfe, 0x80], 10)) return 'link-local';
  if (inPrefix(bytes, [0xff], 8)) return 'multicast';
  // Only global unicast (2000::/3) is public; the rest (::/96 IPv4-compatible, 100::/64 discard,
  // 64:ff9b:1::/48 local NAT64, fec0::/10 site-local, unassigned space) is not.
  if (!inPrefix(bytes, [0x20], 3)) return 'reserved';
  for (const [prefix, bits, kind] of IPV6_GLOBAL_EXCEPTIONS) if (inPrefix(bytes, prefix, bits)) return kind;
  return 'public';
}

/**
 * What an IP address (IPv4, or IPv6 with or without brackets and zone) is: `public`, or why it may
 * not be fetched. IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address inside.
 */
export function classifyAddress(address: string): AddressKind {
  const v4 = ipv4Bytes(address);
  if (v4 !== null) return classifyIpv4(v4);
  const v6 = ipv6Bytes(address);
  if (v6 !== null) return classifyIpv6(v6);
  return 'invalid';
}

export function isPublicAddress(address: string): boolean {
  return classifyAddress(address) === 'public';
}

// ---- The allow-list ----

interface AllowedHost {
  /** As URL.hostname gives it: lower case, IPv4 canonical, IPv6 in brackets. */
  hostname: string;
  /** Null: any port. */
  port: number | null;
}

/**
 * One allow-list entry (`host` or `host:port`, IPv6 as `[::1]` or `[::1]:8080`), canonicalised, or
 * a string saying what is wrong with it.
 */
export function parseAllowedHost(entry: string): AllowedHost | string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:/?#@[\]\s]+)(?::(\d{1,5}))?$/.exec(entry.trim());
  if (match === null) return `"${entry}" is not host or host:port`;
  const port = match[2] === undefined ? null : Number(match[2]);
  if (port !== null && (port < 1 || port > 65535)) return `"${entry}" has a port outside 1-65535`;
  let hostname: string;
  try {
    hostname = new URL(`http://${match[1] as string}/`).hostname;
  } catch {
    return `"${entry}" is not a host name or IP address`;
  }
  return { hostname, port };
}

/** The allow-list entries of a comma-separated setting; throws on the first bad one. */
function parseAllowList(entries: readonly string[]): AllowedHost[] {
  return entries.map((entry) => {
    const parsed = parseAllowedHost(entry);
    if (typeof parsed === 'string') throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `allowed host ${parsed}`);
    return parsed;
  });
}

function effectivePort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

function isAllowed(list: readonly AllowedHost[], url: URL): boolean {
  const port = effectivePort(url);
  return list.some((h) => h.hostname === url.hostname && (h.port === null || h.port === port));
}

// ---- The fetch ----

/** The URL as it may be shown: scheme, host and path, never the query (a credential) or user info. */
export function shownUrl(url: URL): string {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `a ${url.protocol} URL`;
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function refused(url: URL, why: string, hop: number): ConnectorError {
  const where = hop > 0 ? ` (redirect ${hop})` : '';
  return new ConnectorError('CONN_ERR_ATTACHMENT_URL_REFUSED', `refused to fetch ${shownUrl(url)}${where}: ${why}`, {
    details: { url: shownUrl(url), reason: why, redirects: hop },
  });
}

async function defaultResolve(hostname: string): Promise<ResolvedAddress[]> {
  const found = await dnsLookup(hostname, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
}

/** A `lookup` for http.request that answers only with addresses already checked. */
function pinnedLookup(addresses: readonly ResolvedAddress[]): LookupFunction {
  return ((_hostname: string, options: { all?: boolean; family?: number | string }, callback: (...args: unknown[]) => void) => {
    const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
    const usable = addresses.filter((a) => family === 0 || a.family === family);
    if (usable.length === 0) {
      callback(Object.assign(new Error(`no checked IPv${family} address`), { code: 'ENOTFOUND' }));
      return;
    }
    if (options.all === true) callback(null, usable.map((a) => ({ address: a.address, family: a.family })));
    else callback(null, usable[0]?.address, usable[0]?.family);
  }) as LookupFunction;
}

/**
 * A `fetch` (string or URL input; method, headers, string body, signal) that follows the rules in the
 * header. Redirects are always followed by hand, whatever `init.redirect` says.
 */
export function createGuardedFetch(options: GuardedFetchOptions = {}): typeof fetch {
  const allowList = parseAllowList(options.allowedHosts ?? []);
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const resolve = options.resolve ?? defaultResolve;

  /** Checks one hop; returns the addresses to connect to (null: ordinary DNS, for allowed hosts). */
  const check = async (url: URL, hop: number, signal: AbortSignal | undefined): Promise<ResolvedAddress[] | null> => {
    const allowed = isAllowed(allowList, url);
    if (url.protocol !== 'https:' && !(allowed && url.protocol === 'http:')) {
      throw refused(url, url.protocol === 'http:' ? 'only https is fetched from hosts not in the allow-list' : `the ${url.protocol} scheme is never fetched`, hop);
    }
    if (allowed) return null;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) {
      const kind = classifyAddress(host);
      if (kind !== 'public') throw refused(url, `${host} is a ${kind} address`, hop);
      return [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
    }
    const addresses = await abortable(resolve(host), signal);
    if (addresses.length === 0) throw Object.assign(new Error(`${host} has no address`), { code: 'ENOTFOUND' });
    for (const { address } of addresses) {
      const kind = classifyAddress(address);
      if (kind !== 'public') throw refused(url, `${host} resolves to ${address}, a ${kind} address`, hop);
    }
    return addresses;
  };

  const guarded = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    if (typeof input !== 'string' && !(input instanceof URL)) throw new TypeError('the guarded fetch takes a URL or a string');
    let url = new URL(input);
    let method = (init.method ?? 'GET').toUpperCase();
    let body = typeof init.body === 'string' ? init.body : undefined;
    if (init.body !== undefined && init.body !== null && body === undefined) throw new TypeError('the guarded fetch sends only string bodies');
    const headers = new Headers(init.headers);
    headers.set('accept-encoding', 'identity');
    const signal = init.signal ?? undefined;
    for (let hop = 0; ; hop++) {
      signal?.throwIfAborted();
      const addresses = await check(url, hop, signal);
      const response = await sendOnce(url, method, headers, body, addresses, signal);
      const location = response.headers.get('location');
      if (!REDIRECT_STATUSES.has(response.status) || location === null) return response;
      await response.body?.cancel();
      if (hop >= maxRedirects) throw refused(url, `more than ${maxRedirects} redirects`, hop);
      const next = new URL(location, url);
      if (next.origin !== url.origin) for (const name of CREDENTIAL_HEADERS) headers.delete(name);
      if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
        method = method === 'HEAD' ? 'HEAD' : 'GET';
        body = undefined;
        headers.delete('content-type');
      }
      url = next;
    }
  };
  return guarded as typeof fetch;
}

/** `promise`, or the signal's reason as soon as it aborts (a slow DNS answer must not outlive a timeout). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * One HTTP exchange over node:http(s), no redirect followed. With `addresses`, the socket connects only
 * to them (a pinned `lookup`: the name is never resolved again) while the name stays the Host header
 * and the TLS server name; with null, ordinary DNS. Exported for tests; use `createGuardedFetch`.
 */
export function sendOnce(url: URL, method: string, headers: Headers, body: string | undefined, addresses: ResolvedAddress[] | null, signal: AbortSignal | undefined): Promise<Response> {
  return new Promise((resolvePromise, reject) => {
    const outgoing: Record<string, string> = {};
    headers.forEach((value, name) => (outgoing[name] = value));
    if (body !== undefined) outgoing['content-length'] = String(Buffer.byteLength(body));
    const request = (url.protocol === 'https:' ? https : http).request(
      {
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method,
        headers: outgoing,
        agent: false,
        ...(addresses !== null ? { lookup: pinnedLookup(addresses) } : {}),
        ...(signal !== undefined ? { signal } : {}),
      },
      (incoming) => {
        const responseHeaders = new Headers();
        for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) responseHeaders.append(incoming.rawHeaders[i] as string, incoming.rawHeaders[i + 1] as string);
        const status = incoming.statusCode ?? 502;
        const noBody = NULL_BODY_STATUSES.has(status) || method === 'HEAD';
        if (noBody) incoming.resume();
        try {
          resolvePromise(
            new Response(noBody ? null : (Readable.toWeb(incoming) as ReadableStream<Uint8Array>), {
              status,
              statusText: incoming.statusMessage ?? '',
              headers: responseHeaders,
            }),
          );
        } catch (err) {
          // A status a Response cannot carry (under 200 or over 599): a protocol error.
          incoming.destroy();
          reject(Object.assign(new Error(`answered with status ${status}`, { cause: err }), { code: 'EPROTO' }));
        }
      },
    );
    request.on('error', (err) => reject(signal?.aborted === true ? signal.reason : err));
    request.end(body);
  });
}
