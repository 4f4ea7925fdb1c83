/**
 * The console's pages as served (src/server/console/assets.ts): the page with the session's CSRF token
 * (escaped) and never cached; the script, style sheet and icon with their types, an ETag and 304 on a
 * match; a same-origin-only Content-Security-Policy on all; 404 for any other name. Access rules are the
 * console routes' (test/server/console-access.test.ts); here the files are registered on a bare scope.
 */
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { assetsDir, CONTENT_SECURITY_POLICY, registerAssets } from '../../src/server/console/assets.ts';

let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

async function serve(csrfToken: string): Promise<FastifyInstance> {
  app = Fastify();
  await app.register(async (scope) => registerAssets(scope, { csrfToken: () => csrfToken }), { prefix: '/dashboard' });
  return app;
}

describe('console assets', () => {
  it('serves the page at /dashboard and /dashboard/ with the CSRF token escaped, never cached, same-origin only', async () => {
    const server = await serve('abc"><script>x</script>');
    for (const url of ['/dashboard', '/dashboard/']) {
      const response = await server.inject({ url });
      expect(response.statusCode, url).toBe(200);
      expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
      expect(response.body).toContain('<meta name="csrf-token" content="abc&#34;&#62;&#60;script&#62;x&#60;/script&#62;">');
      expect(response.body).not.toContain('<script>x');
      expect(response.body).not.toContain('{{csrfToken}}');
    }
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
  });

  it('serves the script, style sheet and icon with their types and an ETag, and 304 when it matches', async () => {
    const server = await serve('t');
    const types = { 'console.js': 'text/javascript; charset=utf-8', 'console.css': 'text/css; charset=utf-8', 'icon.svg': 'image/svg+xml' };
    for (const [file, type] of Object.entries(types)) {
      const response = await server.inject({ url: `/dashboard/assets/${file}` });
      expect(response.statusCode, file).toBe(200);
      expect(response.headers['content-type'], file).toBe(type);
      expect(response.rawPayload.equals(readFileSync(`${assetsDir()}/${file}`)), file).toBe(true);
      const etag = response.headers.etag as string;
      expect(etag).toMatch(/^"[\w-]{22}"$/);
      expect(response.headers['cache-control']).toBe('private, no-cache');
      const again = await server.inject({ url: `/dashboard/assets/${file}`, headers: { 'if-none-match': etag } });
      expect(again.statusCode, file).toBe(304);
      expect(again.body).toBe('');
      const stale = await server.inject({ url: `/dashboard/assets/${file}`, headers: { 'if-none-match': '"other"' } });
      expect(stale.statusCode, file).toBe(200);
    }
  });

  it('answers 404 for any other asset name, including paths out of the folder', async () => {
    const server = await serve('t');
    for (const url of ['/dashboard/assets/index.html', '/dashboard/assets/nope.js', '/dashboard/assets/..%2F..%2Fauth.ts', '/dashboard/assets/%2e%2e%2fassets.ts']) {
      const response = await server.inject({ url });
      expect(response.statusCode, url).toBe(404);
      expect(response.json()).toMatchObject({ error: { code: 'CONN_ERR_NOT_FOUND' } });
    }
  });

  it('the page loads only its own files: no URL in it or in the style sheet points elsewhere', () => {
    const dir = assetsDir();
    const page = readFileSync(`${dir}/index.html`, 'utf8');
    const css = readFileSync(`${dir}/console.css`, 'utf8');
    const js = readFileSync(`${dir}/console.js`, 'utf8');
    expect(page.match(/(?:src|href)="([^"#]+)"/g)?.map((m) => m.replace(/^(?:src|href)="|"$/g, ''))).toEqual(
      expect.arrayContaining(['/dashboard/assets/icon.svg', '/dashboard/assets/console.css', '/dashboard/assets/console.js']),
    );
    for (const text of [page, css, js]) expect(text).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(css).not.toMatch(/@import|url\(/);
  });
});
