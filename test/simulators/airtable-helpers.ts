/** Small helpers for the Airtable simulator's contract tests: raw HTTP, as a client would send it. */
import type { AirtableSimulator } from '../../simulators/airtable/index.ts';

export interface Answer {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- contract tests read arbitrary JSON
  body: any;
}

export interface CallOptions {
  body?: unknown;
  /** Default the simulator's all-scopes token; null sends no Authorization header. */
  token?: string | null;
  /** Raw body text (for invalid JSON). */
  raw?: string;
}

export async function call(sim: AirtableSimulator, method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? sim.token : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${sim.url}${path}`, { method, headers, body });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? null : JSON.parse(text) };
}

/** The fields of the "Tasks" table the tests use (first = primary). */
export const TASK_FIELDS = [
  { name: 'Task ID', type: 'singleLineText' },
  { name: 'Title', type: 'singleLineText' },
  { name: 'Notes', type: 'multilineText' },
  { name: 'Count', type: 'number', options: { precision: 0 } },
  { name: 'Done', type: 'checkbox', options: { icon: 'check', color: 'greenBright' } },
  { name: 'Status', type: 'singleSelect', options: { choices: [{ name: 'new' }, { name: 'active' }] } },
  { name: 'Tags', type: 'multipleSelects', options: { choices: [] } },
  { name: 'Due', type: 'date', options: { dateFormat: { name: 'iso' } } },
  { name: 'Updated At', type: 'dateTime', options: { dateFormat: { name: 'iso' }, timeFormat: { name: '24hour' }, timeZone: 'utc' } },
  { name: 'Files', type: 'multipleAttachments' },
  { name: 'Email', type: 'email' },
];

/** Creates the "Tasks" table through the metadata API; returns its id. */
export async function createTasksTable(sim: AirtableSimulator): Promise<string> {
  const answer = await call(sim, 'POST', `/v0/meta/bases/${sim.baseId}/tables`, { body: { name: 'Tasks', fields: TASK_FIELDS } });
  if (answer.status !== 200) throw new Error(`table creation failed: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.id as string;
}
