/**
 * The metadata API (stack.md §1.5):
 *   GET  /v0/meta/whoami                                   {id, scopes}
 *   GET  /v0/meta/bases                                    {bases:[{id, name, permissionLevel}]}
 *   GET  /v0/meta/bases/{baseId}/tables                    {tables:[table model]}
 *   POST /v0/meta/bases/{baseId}/tables                    create a table -> table model
 *   POST /v0/meta/bases/{baseId}/tables/{tableId}/fields   add a field -> field model
 *
 * Creating: the first field becomes the primary field (and must be a type allowed there); field names
 * are unique case-insensitively, table names too; number fields need `options.precision`, checkboxes
 * `options.icon`/`color`, selects `options.choices`, dates `options.dateFormat`, dateTimes also
 * `timeFormat` and `timeZone`; computed types cannot be created. Tables and fields cannot be deleted or
 * have their type changed (there are no such routes). Adding a field takes the table's id (`tbl…`), not
 * its name.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bearerToken } from '../common.ts';
import type { Tokens } from './access.ts';
import { errors } from './errors.ts';
import type { AirtableStore, SimBase } from './store.ts';

export interface MetaApiContext {
  store: AirtableStore;
  tokens: Tokens;
}

export function registerMetaApi(app: FastifyInstance, ctx: MetaApiContext): void {
  const baseOf = (request: FastifyRequest): SimBase => {
    const base = ctx.store.base((request.params as { baseId: string }).baseId);
    if (base === undefined) throw errors.modelNotFound();
    return base;
  };

  app.get('/v0/meta/whoami', async (request) => {
    const token = bearerToken(request.headers.authorization) as string;
    return { id: 'usrSIMULATOR00001', scopes: ctx.tokens.scopes(token) };
  });

  app.get('/v0/meta/bases', async (request) => {
    const token = bearerToken(request.headers.authorization) as string;
    const bases = [...ctx.store.bases.values()].filter((b) => ctx.tokens.canSee(token, b.id));
    return { bases: bases.map((b) => ({ id: b.id, name: b.name, permissionLevel: 'create' })) };
  });

  app.get('/v0/meta/bases/:baseId/tables', async (request) => {
    const base = baseOf(request);
    return { tables: base.tables.map((t) => ctx.store.tableModel(t)) };
  });

  app.post('/v0/meta/bases/:baseId/tables', async (request) => {
    const base = baseOf(request);
    const body = request.body;
    if (typeof body === 'object' && body !== null) {
      for (const key of Object.keys(body)) if (!['name', 'description', 'fields'].includes(key)) throw errors.invalidRequest(`unknown parameter "${key}"`);
    }
    return ctx.store.tableModel(ctx.store.createTable(base, body));
  });

  app.post('/v0/meta/bases/:baseId/tables/:tableId/fields', async (request) => {
    const base = baseOf(request);
    const { tableId } = request.params as { tableId: string };
    const table = base.tables.find((t) => t.id === tableId);
    if (table === undefined) throw errors.modelNotFound();
    const body = request.body;
    if (typeof body === 'object' && body !== null) {
      for (const key of Object.keys(body)) if (!['name', 'type', 'description', 'options'].includes(key)) throw errors.invalidRequest(`unknown parameter "${key}"`);
    }
    return structuredClone(ctx.store.createField(table, body));
  });
}
