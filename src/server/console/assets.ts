/**
 * The console's pages: one HTML file and its script, style sheet and icon (src/server/console/assets/),
 * served from memory by the console routes (`registerAssets(scope)` inside their `/dashboard` scope, behind
 * its access rules). Nothing is fetched from elsewhere, and the Content-Security-Policy says so to the
 * browser: a page that tried to load a script or a style from another origin would be refused.
 *
 * Caching: the script, style sheet and icon carry a strong ETag (a hash of their bytes) and
 * `cache-control: private, no-cache`, so a browser revalidates each load and gets 304 while they are
 * unchanged. The page itself embeds the session's CSRF token, so it is never cached (`no-store`).
 *
 * The files are read once, at registration: from `./assets/` beside this module, or, in a compiled
 * dist/ that holds no assets, from the source tree's `src/server/console/assets/`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { consoleSessionOf } from './auth.ts';

/** The files served under `<prefix>/assets/`, with their media types. */
const FILES = {
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml',
} as const;

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Where the asset files are: beside this module (src/), or the source tree's copy (from dist/). */
export function assetsDir(): string {
  const candidates = [path.join(HERE, 'assets'), path.resolve(HERE, '../../../src/server/console/assets')];
  const found = candidates.find((dir) => existsSync(path.join(dir, 'index.html')));
  if (found === undefined) throw new Error(`the console's pages are missing: looked in ${candidates.join(' and ')}`);
  return found;
}

/** What every console page and asset answers with: only this origin's scripts, styles, images and API. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export interface AssetOptions {
  /**
   * The CSRF token of the request's session, embedded in the page as `<meta name="csrf-token">`. Default:
   * the session the console's access check found (auth.ts); an empty string leaves it empty, and the
   * page then asks `GET <prefix>/api/session`.
   */
  csrfToken?: (request: FastifyRequest) => string | Promise<string>;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function etagOf(body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
}

/** HTML-escapes a value placed in an attribute. */
function attribute(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Registers `GET /` (the page; with a prefix, both `<prefix>` and `<prefix>/`) and `GET /assets/<file>` on
 * `scope`. The caller decides who may reach them.
 */
export async function registerAssets(scope: FastifyInstance, options: AssetOptions = {}): Promise<void> {
  const dir = assetsDir();
  const page = readFileSync(path.join(dir, 'index.html'), 'utf8');
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(FILES)) {
    const body = readFileSync(path.join(dir, name));
    assets.set(name, { body, type, etag: etagOf(body) });
  }

  scope.get('/', async (request, reply) => {
    const token = options.csrfToken === undefined ? (consoleSessionOf(request)?.csrfToken ?? '') : await options.csrfToken(request);
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(page.replaceAll('{{csrfToken}}', attribute(token)));
  });

  scope.get<{ Params: { file: string } }>('/assets/:file', async (request, reply) => {
    const asset = assets.get(request.params.file);
    if (asset === undefined) {
      return reply.code(404).send({ error: { code: 'CONN_ERR_NOT_FOUND', message: `no console asset ${request.params.file}` } });
    }
    void reply
      .header('etag', asset.etag)
      .header('cache-control', 'private, no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CONTENT_SECURITY_POLICY);
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.type(asset.type).send(asset.body);
  });
}
