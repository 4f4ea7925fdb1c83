/**
 * Airtable's error answers, as the reference (stack.md §1.6) describes them. The usual body is
 * `{"error":{"type":"…","message":"…"}}`; two answers break that shape on purpose, because the real
 * API does and clients must parse defensively:
 * - 429 carries an `errors` array: `{"errors":[{"error":"RATE_LIMIT_REACHED","message":"…"}]}`;
 * - some 404s carry a bare string: `{"error":"NOT_FOUND"}`.
 *
 * Route code throws `AirtableError`; the simulator's error handler turns it into the answer.
 */

export type AirtableErrorBody =
  | { error: { type: string; message: string } }
  | { error: string }
  | { errors: Array<{ error: string; message: string }> };

export class AirtableError extends Error {
  constructor(
    readonly status: number,
    readonly body: AirtableErrorBody,
  ) {
    super(typeof body === 'object' && 'error' in body && typeof body.error === 'object' ? body.error.message : `HTTP ${status}`);
  }
}

const typed = (status: number, type: string, message: string): AirtableError => new AirtableError(status, { error: { type, message } });

export const RATE_LIMIT_BODY = {
  errors: [{ error: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' }],
} as const;

/** The message Airtable gives for "no access" and "no such base or table" alike. */
export const MODEL_NOT_FOUND_MESSAGE =
  'Invalid permissions, or the requested model was not found. Check that both your user and your token have the required permissions, and that the model names and/or ids are correct.';

export const errors = {
  authenticationRequired: () => typed(401, 'AUTHENTICATION_REQUIRED', 'Authentication required'),
  modelNotFound: () => typed(403, 'INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND', MODEL_NOT_FOUND_MESSAGE),
  notFound: () => new AirtableError(404, { error: 'NOT_FOUND' }),
  rateLimited: () => new AirtableError(429, { errors: RATE_LIMIT_BODY.errors.map((e) => ({ ...e })) }),
  invalidJson: () => typed(400, 'INVALID_REQUEST_BODY', 'Could not parse request body: it is not valid JSON'),
  invalidRequest: (detail: string) => typed(422, 'INVALID_REQUEST_UNKNOWN', `Invalid request: parameter validation failed. Check your request data. (${detail})`),
  invalidRecords: (message: string) => typed(422, 'INVALID_RECORDS', message),
  unknownField: (name: string) => typed(422, 'UNKNOWN_FIELD_NAME', `Unknown field name: "${name}"`),
  invalidValue: (field: string, why = 'cannot accept the provided value') => typed(422, 'INVALID_VALUE_FOR_COLUMN', `Field "${field}" ${why}`),
  invalidChoice: (choice: string) => typed(422, 'INVALID_MULTIPLE_CHOICE_OPTIONS', `Insufficient permissions to create new select option ""${choice}""`),
  rowDoesNotExist: (id: string) => typed(422, 'ROW_DOES_NOT_EXIST', `Record ID ${id} does not exist in this table`),
  invalidFormula: (detail: string) => typed(422, 'INVALID_FILTER_BY_FORMULA', `The formula for filtering records is invalid: ${detail}`),
  iteratorNotAvailable: () => typed(422, 'LIST_RECORDS_ITERATOR_NOT_AVAILABLE', 'The offset is not valid (any more); start listing from the first page'),
  viewNotFound: (view: string) => typed(422, 'VIEW_NAME_NOT_FOUND', `Could not find view "${view}"`),
  duplicateTableName: (name: string) => typed(422, 'DUPLICATE_TABLE_NAME', `A table named "${name}" already exists in this base`),
  duplicateFieldName: (name: string) => typed(422, 'DUPLICATE_OR_EMPTY_FIELD_NAME', `Field names must be unique and non-empty (case-insensitively): "${name}"`),
  invalidFieldOptions: (detail: string) => typed(422, 'INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE', detail),
  unsupportedFieldType: (type: string) => typed(422, 'UNSUPPORTED_FIELD_TYPE_FOR_CREATE', `Field type "${type}" cannot be created through the API`),
  invalidPrimaryField: (type: string) => typed(422, 'INVALID_PRIMARY_FIELD_TYPE', `Field type "${type}" cannot be the primary field`),
} as const;
