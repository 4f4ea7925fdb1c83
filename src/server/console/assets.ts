/**
 * The console's pages under /dashboard. This version serves one page, GET /dashboard, that names the
 * JSON API and carries the session's CSRF token (`<meta name="csrf-token">`); the console-ui branch
 * replaces this file with the pages and their static files (keep the export: routes.ts calls it inside
 * the console's scope, behind its access check).
 */
import type { FastifyInstance } from 'fastify';
import { consoleSessionOf } from './auth.ts';

export async function registerAssets(scope: FastifyInstance): Promise<void> {
  scope.get('/', async (request, reply) => {
    const csrf = consoleSessionOf(request)?.csrfToken ?? '';
    const html = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${csrf.replace(/[^A-Za-z0-9_-]/g, '')}">
<title>Connector console</title></head>
<body>
<h1>Connector console</h1>
<p>JSON API: <a href="/dashboard/api/overview">overview</a>, <a href="/dashboard/api/events">events</a>,
<a href="/dashboard/api/dead-letters">dead letters</a>, <a href="/dashboard/api/backfill">backfill</a>.</p>
<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form>
</body>
</html>
`;
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
  });
}
