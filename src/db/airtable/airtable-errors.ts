/**
 * Airtable failures as Database errors that say what to fix. The dispatcher decides on the code:
 * - CONN_ERR_DB_UNAVAILABLE (retryable): Airtable could not be reached, timed out, answered 429 or
 *   5xx after the HTTP core's own retries, or answered with a body we could not read. Upserts are
 *   idempotent, so the event is simply tried again later.
 * - also CONN_ERR_DB_UNAVAILABLE: 401, 403, 404, an unknown field and a refused select option. The
 *   token, the base or the schema needs an operator (a token rotated, access or a table removed, a
 *   field renamed): none of it is the record's fault, and no record could be written meanwhile, so
 *   the worker holds its batch until the operator has fixed it (as for PostgreSQL's SQLSTATE classes
 *   28 and 42, docs/errors.md), logging the message, which names the token scope, base, table or
 *   field, and the command to run.
 * - CONN_ERR_DB_REJECTED (permanent): a value Airtable refuses for its column (422) or another refusal
 *   of this record: the event is dead-lettered, the others go on.
 */
import { ConnectorError } from '../../errors.ts';
import { ApiError } from '../../http/http-client.ts';
import { DEFAULT_RATE_LIMIT_PAUSE_MS, airtableErrorOf } from './airtable-client.ts';

export const SETUP_COMMAND = 'npm run airtable-setup';

export type AirtableAction = 'read' | 'write' | 'schema-read' | 'schema-write';

export interface ErrorContext {
  baseId: string;
  /** The table the request was about, when one. */
  table?: string;
  action: AirtableAction;
}

const SCOPE_FOR: Record<AirtableAction, string> = {
  read: 'data.records:read',
  write: 'data.records:write',
  'schema-read': 'schema.bases:read',
  'schema-write': 'schema.bases:write',
};

/** Any failure of an Airtable call as a ConnectorError for the Database contract. */
export function toDatabaseError(err: unknown, ctx: ErrorContext): ConnectorError {
  if (!(err instanceof ApiError)) {
    if (err instanceof ConnectorError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new ConnectorError('CONN_ERR_DB_UNAVAILABLE', `Airtable ${ctx.action} failed: ${message}`, { cause: err, details: { baseId: ctx.baseId, action: ctx.action } });
  }
  const { type, message: airtableMessage } = airtableErrorOf(err.body);
  const details: Record<string, unknown> = { baseId: ctx.baseId, action: ctx.action, status: err.status, airtableType: type, httpCode: err.code };
  if (ctx.table !== undefined) details.table = ctx.table;
  const where = ctx.table === undefined ? `base ${ctx.baseId}` : `table ${ctx.table} of base ${ctx.baseId}`;
  const said = airtableMessage === undefined ? '' : `: ${airtableMessage}`;
  const rejected = (message: string): ConnectorError => new ConnectorError('CONN_ERR_DB_REJECTED', message, { cause: err, status: err.status, details });
  const operator = (message: string): ConnectorError => new ConnectorError('CONN_ERR_DB_UNAVAILABLE', message, { cause: err, status: err.status, details });

  if (err.retryable || err.code === 'CONN_ERR_HTTP_BAD_RESPONSE') {
    // Airtable sends no Retry-After; after a 429 it refuses the base for 30 s, so say so to the dispatcher.
    const retryAfterMs = err.retryAfterMs ?? (err.code === 'CONN_ERR_HTTP_RATE_LIMITED' ? DEFAULT_RATE_LIMIT_PAUSE_MS : undefined);
    const options = { cause: err, status: err.status, details, retryable: true, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    return new ConnectorError('CONN_ERR_DB_UNAVAILABLE', `Airtable is unavailable for ${where} (${err.message})`, options);
  }
  if (err.status === 401) {
    return operator(`Airtable rejected the token (401 ${type ?? 'AUTHENTICATION_REQUIRED'}): check AIRTABLE_TOKEN; it must be a valid personal access token`);
  }
  if (err.status === 403) {
    const table = ctx.table === undefined ? '' : `, or table ${ctx.table} does not exist (run \`${SETUP_COMMAND}\`)`;
    return operator(
      `Airtable refused access to ${where} (403 ${type ?? 'INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND'}): the token cannot see base ${ctx.baseId} or lacks scope ${SCOPE_FOR[ctx.action]}${table}. ` +
        `Grant the token access to the base with the scopes data.records:read, data.records:write and schema.bases:read (schema.bases:write for setup)`,
    );
  }
  if (err.status === 404) return operator(`Airtable answered 404 for ${where}${said}: check AIRTABLE_BASE_ID and AIRTABLE_BASE_URL`);
  switch (type) {
    case 'UNKNOWN_FIELD_NAME': {
      const field = /"([^"]*)"/.exec(airtableMessage ?? '')?.[1] ?? '(unnamed)';
      return operator(`Airtable says field '${field}' does not exist in table ${ctx.table ?? '(unknown)'}: run \`${SETUP_COMMAND}\``);
    }
    case 'INVALID_VALUE_FOR_COLUMN':
      return rejected(
        `Airtable refused a value in table ${ctx.table ?? '(unknown)'}${said}. The field's type was probably changed in Airtable; \`${SETUP_COMMAND}\` lists the fields whose type differs from what the connector writes`,
      );
    case 'INVALID_MULTIPLE_CHOICE_OPTIONS':
      return operator(`Airtable refused a new select option in table ${ctx.table ?? '(unknown)'}${said}: the token's user needs editor rights that allow creating options`);
    default:
      return rejected(`Airtable refused the ${ctx.action} on ${where} (${err.status ?? 'no status'} ${type ?? 'unknown error'})${said}`);
  }
}
