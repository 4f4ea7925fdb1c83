/**
 * Deliveries of every shape for both webhook endpoints, as fast-check arbitraries.
 *
 * A case is a structured description, not bytes, so that fast-check shrinks it to something a person
 * can read ("a Missive label_change whose latest_message is 7", not 40 KB of brackets): a valid base
 * in one of the vendors' shapes (Teamwork v2 JSON, v2 JSON TASK.DELETED, v2 Form, v1 Form, non-task
 * and ping bodies; Missive message rules, conversation rules, comments, validation requests), then
 * mutations of its values (fields dropped or retyped, odd ids and times, nesting far beyond 256
 * levels, huge strings, keys that reach prototypes), a layout (compact or pretty-printed JSON), damage
 * to the bytes (truncation, invalid UTF-8, a BOM, NULs, an empty body), a content type (the right one,
 * none or another) and a signature (right, absent, wrong key, garbage). `render` turns a case into
 * the exact bytes and headers sent; the signature is computed here with node:crypto, independently
 * of the product's code.
 *
 * The bases follow the shapes the simulators send (simulators/teamwork/payloads.ts,
 * simulators/missive/payloads.ts) and the vendor references; the v2 Form body is the simulator's own
 * `flattenForm` of the JSON body.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { flattenForm } from '../../simulators/teamwork/payloads.ts';
import { MISSIVE_SECRET, TEAMWORK_TOKEN } from './world.ts';

export type Endpoint = 'teamwork' | 'missive';
export type Path = ReadonlyArray<string | number>;

export type Mutation =
  | { op: 'drop'; path: Path }
  | { op: 'set'; path: Path; value: unknown }
  /** Replaces the value at `path` with nesting `depth` levels deep. */
  | { op: 'deep'; path: Path; depth: number; shape: 'array' | 'object' }
  /** Replaces the value at `path` with a string of `length` characters. */
  | { op: 'huge'; path: Path; length: number };

export type Damage =
  | { kind: 'truncate'; keep: number }
  | { kind: 'bom' }
  | { kind: 'invalid-utf8'; at: number; bytes: readonly number[] }
  | { kind: 'nul'; at: number }
  | { kind: 'empty' }
  | { kind: 'whitespace' }
  | { kind: 'append'; text: string };

export type Signing = 'valid' | 'none' | 'wrong-key' | 'garbage' | 'valid-variant';

export interface TeamworkBase {
  endpoint: 'teamwork';
  shape: 'v2-json' | 'v2-json-deleted' | 'v2-form' | 'v1-form' | 'non-task' | 'ping';
  taskId: number;
  name: string;
  status: string;
  updatedAt: number;
  /** X-Projects-Event; null sends none. */
  event: string | null;
}

export interface MissiveBase {
  endpoint: 'missive';
  shape: 'message-rule' | 'conversation-rule' | 'comment' | 'validation' | 'empty-object';
  ruleType: string | null;
  conversationId: string;
  messageId: string;
  subject: string;
  deliveredAt: number;
  trashed: boolean;
  withBody: boolean;
}

export interface Case {
  base: TeamworkBase | MissiveBase;
  mutations: Mutation[];
  layout: 'compact' | 'pretty';
  damage: Damage | null;
  /** 'natural': the content type the shape is sent with; null: no Content-Type header. */
  contentType: 'natural' | string | null;
  signing: Signing;
  /** Sent with inject() or over a real socket to the listening server. */
  via: 'inject' | 'http';
}

export interface Rendered {
  endpoint: Endpoint;
  body: Buffer;
  headers: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------------
// Values

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

/** Values that are wrong in interesting ways for an id, a time, a name or a container. */
export const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 1e21, 2 ** 53 + 2, 4343, -4343), weight: 3 },
  {
    arbitrary: fc.constantFrom(
      '',
      ' ',
      '004343',
      '04343',
      ' 4343 ',
      '-5',
      '+7',
      '1e3',
      '0x1F',
      '4343.0',
      '٤٣٤٣',
      '４３４３',
      '9'.repeat(400),
      'garbage',
      'NaN',
      'Infinity',
      '1e308',
      '2026-13-45T99:99:99Z',
      '2026-02-30T10:00:00Z',
      '0000-00-00T00:00:00Z',
      '275760-09-13T00:00:00.001Z',
      '20261201',
      '\u0000',
      '\uFEFF',
      '\uD800',
      '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓',
      '<script>alert(1)</script>',
      '__proto__',
      'file:///etc/passwd',
      'http://127.0.0.1:1/metrics',
    ),
    weight: 4,
  },
  { arbitrary: fc.string({ maxLength: 12 }), weight: 1 },
  { arbitrary: fc.integer(), weight: 1 },
  { arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }), weight: 1 },
  { arbitrary: fc.constantFrom<unknown>({}, [], [null], [1, '2'], { id: 1 }, { id: '007' }, [{}]), weight: 2 },
  { arbitrary: fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer(), fc.string({ maxLength: 6 }), fc.constant(null)), { maxKeys: 3 }), weight: 1 },
);

const TEAMWORK_PATHS: Path[] = [
  ['task', 'id'],
  ['task', 'dateUpdated'],
  ['task', 'dateCreated'],
  ['task', 'name'],
  ['task', 'description'],
  ['task', 'status'],
  ['task', 'priority'],
  ['task', 'tags'],
  ['task', 'tags', 0],
  ['task', 'tags', 0, 'name'],
  ['task', 'assignedUserIds'],
  ['task', 'progress'],
  ['task', 'estimatedMinutes'],
  ['task', 'parentId'],
  ['task', 'projectId'],
  ['task', 'taskListId'],
  ['task', 'startDate'],
  ['task', 'dueDate'],
  ['task', 'dateDeleted'],
  ['task', 'extra'],
  ['task'],
  ['id'],
  ['objectId'],
  ['event'],
  ['project'],
  ['project', 'id'],
  ['taskList'],
  ['taskList', 'id'],
  ['users'],
  ['users', 0, 'id'],
  ['eventCreator'],
  ['extra'],
  ['__proto__'],
  ['task', '__proto__'],
  ['constructor'],
];

const MISSIVE_PATHS: Path[] = [
  ['conversation', 'id'],
  ['conversation'],
  ['conversation', 'subject'],
  ['conversation', 'users'],
  ['conversation', 'users', 0],
  ['conversation', 'users', 0, 'trashed'],
  ['conversation', 'assignees'],
  ['conversation', 'shared_labels'],
  ['conversation', 'shared_labels', 0, 'name'],
  ['conversation', 'last_activity_at'],
  ['conversation', 'created_at'],
  ['conversation', 'web_url'],
  ['message'],
  ['message', 'id'],
  ['message', 'delivered_at'],
  ['message', 'updated_at'],
  ['message', 'created_at'],
  ['message', 'subject'],
  ['message', 'body'],
  ['message', 'from_field'],
  ['message', 'to_fields'],
  ['message', 'to_fields', 0, 'address'],
  ['message', 'attachments'],
  ['message', 'attachments', 0, 'url'],
  ['message', 'attachments', 0, 'id'],
  ['message', 'in_reply_to'],
  ['message', 'conversation'],
  ['latest_message'],
  ['latest_message', 'id'],
  ['latest_message', 'delivered_at'],
  ['rule'],
  ['rule', 'type'],
  ['comment'],
  ['comment', 'id'],
  ['extra'],
  ['__proto__'],
  ['conversation', '__proto__'],
];

const DEPTHS = fc.oneof(
  { arbitrary: fc.constantFrom(2, 8, 9, 64), weight: 2 },
  { arbitrary: fc.constantFrom(255, 256, 257, 300, 1000), weight: 2 },
  { arbitrary: fc.constantFrom(4200, 10_000, 50_000), weight: 1 },
);
const LENGTHS = fc.oneof({ arbitrary: fc.constantFrom(1_000, 100_000), weight: 5 }, { arbitrary: fc.constant(1_000_000), weight: 1 }, { arbitrary: fc.constant(5 * 1024 * 1024 + 1), weight: 1 });

/** The fields that carry times (versions), with values wrong for a time. */
const TIME_PATHS: Path[] = [
  ['task', 'dateUpdated'],
  ['task', 'dateCreated'],
  ['task', 'dueDate'],
  ['message', 'delivered_at'],
  ['message', 'updated_at'],
  ['message', 'created_at'],
  ['latest_message', 'delivered_at'],
  ['conversation', 'last_activity_at'],
  ['conversation', 'created_at'],
];
const weirdTime = fc.constantFrom<unknown>(1e308, -1e308, -1, 0, 1e21, 8.64e15 + 1, 2 ** 53 + 2, '1e308', 'garbage', '', null, '2026-02-30T10:00:00Z', '275760-09-13T00:00:00.001Z', '-000001-01-01T00:00:00Z', [], {});

function mutation(paths: Path[]): fc.Arbitrary<Mutation> {
  const path = fc.constantFrom(...paths);
  const timePath = fc.constantFrom(...TIME_PATHS.filter((t) => paths.some((p) => p.join('.') === t.join('.'))));
  return fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('set' as const), path: timePath, value: weirdTime }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('drop' as const), path }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('set' as const), path, value: weirdValue }), weight: 8 },
    { arbitrary: fc.record({ op: fc.constant('deep' as const), path, depth: DEPTHS, shape: fc.constantFrom('array' as const, 'object' as const) }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('huge' as const), path, length: LENGTHS }), weight: 1 },
  );
}

const damage: fc.Arbitrary<Damage | null> = fc.oneof(
  { withCrossShrink: true },
  { arbitrary: fc.constant(null), weight: 20 },
  { arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.double({ min: 0, max: 1, noNaN: true }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('bom' as const) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('invalid-utf8' as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      bytes: fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant('nul' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('empty' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('whitespace' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('append' as const), text: fc.constantFrom('}', ']', ',', 'x', '\n{}', '&Task.ID=2', '&objectId=3') }), weight: 1 },
);

const contentType = fc.oneof(
  { withCrossShrink: true },
  { arbitrary: fc.constant('natural' as const), weight: 16 },
  {
    arbitrary: fc.constantFrom(
      null,
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/vnd.api+json',
      'application/x-www-form-urlencoded',
      'text/plain',
      'application/xml',
      'multipart/form-data; boundary=x',
      'application/octet-stream',
      'application/json; charset=latin1',
      '',
    ),
    weight: 3,
  },
);

const signing = fc.oneof(
  { withCrossShrink: true },
  { arbitrary: fc.constant('valid' as const), weight: 12 },
  { arbitrary: fc.constantFrom('none' as const, 'wrong-key' as const, 'garbage' as const, 'valid-variant' as const), weight: 5 },
);

const TEAMWORK_EVENTS = ['TASK.CREATED', 'TASK.UPDATED', 'TASK.COMPLETED', 'TASK.REOPENED', 'TASK.DELETED', 'TASK.MOVED', 'TASK.TAGGED', 'TASK.UNTAGGED'];

const teamworkBase: fc.Arbitrary<TeamworkBase> = fc.record({
  endpoint: fc.constant('teamwork' as const),
  shape: fc.oneof(
    { withCrossShrink: true },
    { arbitrary: fc.constantFrom('v2-json' as const), weight: 6 },
    { arbitrary: fc.constantFrom('v2-json-deleted' as const, 'v2-form' as const, 'v1-form' as const), weight: 4 },
    { arbitrary: fc.constantFrom('non-task' as const, 'ping' as const), weight: 1 },
  ),
  taskId: fc.oneof({ withCrossShrink: true }, fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 2_000_000_000 })),
  name: fc.oneof({ withCrossShrink: true }, fc.constant('Fuzzed task'), fc.string({ maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 10 })),
  status: fc.constantFrom('new', 'reopened', 'completed', 'deleted'),
  updatedAt: fc.integer({ min: T0, max: T0 + 30 * DAY }),
  event: fc.oneof(
    { withCrossShrink: true },
    { arbitrary: fc.constantFrom(...TEAMWORK_EVENTS), weight: 10 },
    { arbitrary: fc.constantFrom(null, 'TASK.REMINDER', 'COMMENT.CREATED', 'PROJECT.DELETED', 'TASKLIST.DELETED', 'task.updated', 'TASK.', 'TASK.SOMETHING_NEW', ' TASK.UPDATED '), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 30 }), weight: 1 },
  ),
});

const MISSIVE_RULES = ['incoming_email', 'outgoing_email', 'incoming_sms_message', 'label_change', 'new_comment', 'conversation_closed', 'conversation_reopened', 'conversation_assignee_change', 'team_change'];

const missiveBase: fc.Arbitrary<MissiveBase> = fc.record({
  endpoint: fc.constant('missive' as const),
  shape: fc.oneof(
    { withCrossShrink: true },
    { arbitrary: fc.constantFrom('message-rule' as const, 'conversation-rule' as const), weight: 8 },
    { arbitrary: fc.constantFrom('comment' as const, 'validation' as const, 'empty-object' as const), weight: 2 },
  ),
  ruleType: fc.oneof({ withCrossShrink: true }, { arbitrary: fc.constantFrom(...MISSIVE_RULES), weight: 10 }, { arbitrary: fc.constantFrom(null, 'renamed_rule', ''), weight: 1 }),
  conversationId: fc.oneof(fc.uuid(), fc.constantFrom('c-1', 'c-2')),
  messageId: fc.oneof(fc.uuid(), fc.constantFrom('m-1', 'm-2')),
  subject: fc.oneof({ withCrossShrink: true }, fc.constant('Invoice 42'), fc.string({ maxLength: 30 })),
  deliveredAt: fc.integer({ min: T0 / 1000, max: (T0 + 30 * DAY) / 1000 }),
  trashed: fc.boolean(),
  withBody: fc.boolean(),
});

function caseOf(base: fc.Arbitrary<TeamworkBase | MissiveBase>, paths: Path[]): fc.Arbitrary<Case> {
  return fc.record({
    base,
    // Empty (a valid delivery) about a quarter of the time; shrinks towards empty.
    mutations: fc.array(mutation(paths), { maxLength: 3, size: 'small' }),
    layout: fc.constantFrom('compact' as const, 'compact' as const, 'pretty' as const),
    damage,
    contentType,
    signing,
    via: fc.oneof({ withCrossShrink: true }, { arbitrary: fc.constant('inject' as const), weight: 19 }, { arbitrary: fc.constant('http' as const), weight: 1 }),
  });
}

/** One delivery to either endpoint. */
export const deliveryCase: fc.Arbitrary<Case> = fc.oneof(caseOf(teamworkBase, TEAMWORK_PATHS), caseOf(missiveBase, MISSIVE_PATHS));

// ---------------------------------------------------------------------------------------------------
// Bases

function teamworkBody(base: TeamworkBase): Record<string, unknown> {
  const id = base.taskId;
  const updated = new Date(base.updatedAt).toISOString().replace('.000Z', 'Z');
  switch (base.shape) {
    case 'v2-json-deleted':
      return { id, eventCreator: { id: 9, firstName: 'Ada', lastName: 'Lovelace', avatar: '' } };
    case 'v1-form':
      return { accountId: '1', event: base.event ?? 'TASK.UPDATED', objectId: String(id), userId: '9' };
    case 'non-task':
      return { eventCreator: { id: 9 }, comment: { id, body: 'a comment', objectType: 'task', objectId: id } };
    case 'ping':
      return {};
    default:
      return {
        eventCreator: { id: 9, firstName: 'Ada', lastName: 'Lovelace', avatar: '' },
        task: {
          id,
          name: base.name,
          description: 'Made by the fuzz suite\n',
          priority: 'high',
          status: base.status,
          assignedUserIds: [9],
          parentId: 0,
          taskListId: 501,
          startDate: null,
          dueDate: '2026-12-24',
          progress: 0,
          estimatedMinutes: 30,
          tags: [{ id: 1, name: 'fuzz', color: '2f8de4' }],
          projectId: 77,
          dateCreated: '2026-01-01T00:00:00Z',
          dateUpdated: updated,
          hasCustomFields: false,
        },
        project: { id: 77, name: 'Operations', description: '', status: 'active', tags: [], ownerId: 9, companyId: 1, categoryId: 0, dateCreated: '2026-01-01T00:00:00Z' },
        taskList: { id: 501, name: 'Q4', description: '', status: 'new', milestoneId: 0, projectId: 77, templateId: null, tags: [] },
        users: [{ id: 9, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }],
      };
  }
}

function missiveBody(base: MissiveBase): Record<string, unknown> {
  if (base.shape === 'empty-object') return {};
  const rule: Record<string, unknown> = { id: 'rule-1', description: 'fuzz', ...(base.ruleType === null ? {} : { type: base.ruleType }) };
  if (base.shape === 'validation') return { rule };
  const user = { id: 'u-1', name: 'Ada Lovelace', email: 'ada@example-org.com', unassigned: false, closed: false, archived: false, trashed: base.trashed, junked: false, assigned: true, flagged: false, snoozed: false };
  const conversation = {
    id: base.conversationId,
    created_at: base.deliveredAt - 3600,
    subject: base.subject,
    latest_message_subject: base.subject,
    organization: { id: 'org-1', name: 'Example Org' },
    color: null,
    assignees: [user],
    assignee_names: 'Ada Lovelace',
    assignee_emails: 'ada@example-org.com',
    users: [user],
    attachments_count: 1,
    messages_count: 1,
    authors: [{ name: 'Grace Hopper', address: 'grace@example.com' }],
    shared_labels: [{ id: 'l-1', name: 'Billing' }],
    shared_label_names: 'Billing',
    app_url: `missive://mail.missiveapp.com/#inbox/conversations/${base.conversationId}`,
    web_url: `https://mail.missiveapp.com/#inbox/conversations/${base.conversationId}`,
  };
  if (base.shape === 'comment') {
    return { rule, conversation, comment: { id: base.messageId, body: 'a comment', created_at: base.deliveredAt, author: { id: 'u-1', name: 'Ada Lovelace', email: 'ada@example-org.com' } } };
  }
  const message: Record<string, unknown> = {
    id: base.messageId,
    subject: base.subject,
    preview: 'Hello there',
    type: 'email',
    delivered_at: base.deliveredAt,
    created_at: base.deliveredAt,
    updated_at: base.deliveredAt,
    email_message_id: `<${base.messageId}@example.com>`,
    in_reply_to: [],
    references: [],
    from_field: { name: 'Grace Hopper', address: 'grace@example.com' },
    to_fields: [{ name: 'Ada Lovelace', address: 'ada@example-org.com' }],
    cc_fields: [],
    bcc_fields: [],
    reply_to_fields: [],
    attachments: [{ id: `a-${base.messageId}`, filename: 'invoice.pdf', extension: 'pdf', url: 'https://files.example.com/invoice.pdf', media_type: 'application', sub_type: 'pdf', size: 1234 }],
  };
  if (base.withBody) message.body = '<p>Hello there</p>';
  return { rule, conversation, [base.shape === 'message-rule' ? 'message' : 'latest_message']: message };
}

// ---------------------------------------------------------------------------------------------------
// Rendering

const MARK = '\u0000fuzz-mark-';

/** Sets `value` at `path`, making containers on the way; own properties even for `__proto__`. */
function setAt(root: Record<string, unknown>, path: Path, value: unknown, drop: boolean): void {
  let node: Record<string, unknown> | unknown[] = root;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string | number;
    let next = (node as Record<string | number, unknown>)[key];
    if (!Object.hasOwn(node, key) || typeof next !== 'object' || next === null) {
      if (drop) return;
      next = typeof path[i + 1] === 'number' ? [] : {};
      Object.defineProperty(node, key, { value: next, enumerable: true, writable: true, configurable: true });
    }
    node = next as Record<string, unknown>;
  }
  const last = path[path.length - 1] as string | number;
  if (drop) {
    if (Array.isArray(node) && typeof last === 'number') node.splice(last, 1);
    else delete (node as Record<string | number, unknown>)[last];
    return;
  }
  Object.defineProperty(node, last, { value, enumerable: true, writable: true, configurable: true });
}

function deepText(depth: number, shape: 'array' | 'object', pretty: boolean): string {
  const nl = pretty ? '\n' : '';
  return shape === 'array' ? `${`[${nl}`.repeat(depth)}1${`${nl}]`.repeat(depth)}` : `${`{${nl}"a":`.repeat(depth)}1${`${nl}}`.repeat(depth)}`;
}

function natural(base: TeamworkBase | MissiveBase): string {
  return base.endpoint === 'teamwork' && (base.shape === 'v2-form' || base.shape === 'v1-form') ? 'application/x-www-form-urlencoded' : 'application/json';
}

export function render(c: Case): Rendered {
  const base = c.base;
  // A tree of its own (a body builder may share sub-objects between places).
  const object = structuredClone(base.endpoint === 'teamwork' ? teamworkBody(base) : missiveBody(base));
  // Deep and huge values are put in as markers and spliced into the text: the suite's own
  // JSON.stringify must not be what fails on a deep value.
  const splices = new Map<string, { deep?: { depth: number; shape: 'array' | 'object' }; huge?: number }>();
  c.mutations.forEach((m, i) => {
    if (m.op === 'drop') setAt(object, m.path, undefined, true);
    // A copy of the value: the generator may hand out one object for two mutations, and setting it
    // inside itself would make the body circular (the suite's own JSON.stringify then throws).
    else if (m.op === 'set') setAt(object, m.path, structuredClone(m.value), false);
    else {
      const mark = `${MARK}${i}`;
      splices.set(mark, m.op === 'deep' ? { deep: { depth: m.depth, shape: m.shape } } : { huge: m.length });
      setAt(object, m.path, mark, false);
    }
  });
  const pretty = c.layout === 'pretty';

  let text: string;
  const form = base.endpoint === 'teamwork' && (base.shape === 'v2-form' || base.shape === 'v1-form');
  if (form) {
    const fields = base.shape === 'v2-form' ? flattenForm(object) : Object.entries(object).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v) ?? ''] as [string, string]);
    const params = new URLSearchParams();
    for (const [key, value] of fields) {
      const splice = splices.get(value);
      if (splice?.deep !== undefined) params.append(`${key}${'.A'.repeat(Math.min(splice.deep.depth, 5000))}`, '1');
      else if (splice?.huge !== undefined) params.append(key, 'x'.repeat(splice.huge));
      else params.append(key, value);
    }
    text = params.toString();
  } else {
    text = JSON.stringify(object, null, pretty ? 2 : undefined);
    for (const [mark, splice] of splices) {
      const quoted = JSON.stringify(mark);
      const replacement = splice.deep !== undefined ? deepText(splice.deep.depth, splice.deep.shape, pretty) : JSON.stringify('x'.repeat(splice.huge ?? 0));
      text = text.split(quoted).join(replacement);
    }
  }

  let body = Buffer.from(text, 'utf8');
  const d = c.damage;
  if (d !== null) {
    const at = (f: number) => Math.min(body.length, Math.floor(f * body.length));
    if (d.kind === 'truncate') body = body.subarray(0, at(d.keep));
    else if (d.kind === 'bom') body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]);
    else if (d.kind === 'invalid-utf8') body = Buffer.concat([body.subarray(0, at(d.at)), Buffer.from(d.bytes), body.subarray(at(d.at))]);
    else if (d.kind === 'nul') body = Buffer.concat([body.subarray(0, at(d.at)), Buffer.from([0]), body.subarray(at(d.at))]);
    else if (d.kind === 'empty') body = Buffer.alloc(0);
    else if (d.kind === 'whitespace') body = Buffer.from(' \n\t\r\n ');
    else body = Buffer.concat([body, Buffer.from(d.text)]);
  }

  const headers: Record<string, string> = {};
  const type = c.contentType === 'natural' ? natural(base) : c.contentType;
  if (type !== null) headers['content-type'] = type;
  if (base.endpoint === 'teamwork' && base.event !== null) headers['x-projects-event'] = base.event;
  const signature = sign(base.endpoint, body, c.signing);
  if (signature !== undefined) headers[base.endpoint === 'teamwork' ? 'x-projects-signature' : 'x-hook-signature'] = signature;
  return { endpoint: base.endpoint, body, headers };
}

function hmac(key: string, body: Buffer): string {
  return createHmac('sha256', key).update(body).digest('hex');
}

function sign(endpoint: Endpoint, body: Buffer, signing: Signing): string | undefined {
  const key = endpoint === 'teamwork' ? TEAMWORK_TOKEN : MISSIVE_SECRET;
  switch (signing) {
    case 'none':
      return undefined;
    case 'wrong-key':
      return endpoint === 'teamwork' ? hmac('not-the-token', body) : `sha256=${hmac('not-the-secret', body)}`;
    case 'garbage':
      return endpoint === 'teamwork' ? 'zz' + hmac(key, body).slice(2) : 'sha256=';
    case 'valid-variant':
      // Upper-case hex; for Missive a bare hex value (both accepted by the product).
      return hmac(key, body).toUpperCase();
    case 'valid':
      return endpoint === 'teamwork' ? hmac(key, body) : `sha256=${hmac(key, body)}`;
  }
}

/** Whether a delivery carries a signature the product accepts for the configured secrets. */
export function signedCorrectly(c: Case): boolean {
  return c.signing === 'valid' || c.signing === 'valid-variant';
}

/** The case in a line or a few, for failure messages (values cut short). */
export function describeCase(c: Case): string {
  const cut = (v: unknown) => {
    const s = JSON.stringify(v) ?? String(v);
    return s.length > 80 ? `${s.slice(0, 80)}…` : s;
  };
  const muts = c.mutations.map((m) => {
    const p = m.path.join('.');
    if (m.op === 'drop') return `drop ${p}`;
    if (m.op === 'set') return `${p} = ${cut(m.value)}`;
    if (m.op === 'deep') return `${p} = ${m.shape} nested ${m.depth} levels`;
    return `${p} = string of ${m.length} chars`;
  });
  const base = c.base.endpoint === 'teamwork' ? `teamwork ${c.base.shape} event=${cut(c.base.event)} task ${c.base.taskId}` : `missive ${c.base.shape} rule=${cut(c.base.ruleType)} conversation ${c.base.conversationId} message ${c.base.messageId}`;
  const extras = [c.layout === 'pretty' ? 'pretty-printed' : null, c.damage === null ? null : `damage ${cut(c.damage)}`, c.contentType === 'natural' ? null : `content-type ${cut(c.contentType)}`, `signature ${c.signing}`, `via ${c.via}`].filter((x) => x !== null);
  return `${base}${muts.length > 0 ? `; ${muts.join('; ')}` : ''}; ${extras.join(', ')}`;
}

// ---------------------------------------------------------------------------------------------------
// The normal deliveries sent after each batch

let sentinels = 0;

/** A valid, signed delivery of each vendor with fresh ids, and how to recognise its row. */
export function sentinelDeliveries(): Array<{ rendered: Rendered; row: { table: 'tasks' | 'emails'; id: string; title: string } }> {
  sentinels++;
  const taskId = 1_900_000_000 + sentinels;
  const now = Date.now();
  const tw = render({
    base: { endpoint: 'teamwork', shape: 'v2-json', taskId, name: `Sentinel ${sentinels}`, status: 'new', updatedAt: now, event: 'TASK.UPDATED' },
    mutations: [],
    layout: 'compact',
    damage: null,
    contentType: 'natural',
    signing: 'valid',
    via: 'inject',
  });
  const messageId = `sentinel-message-${sentinels}-${now}`;
  const mv = render({
    base: { endpoint: 'missive', shape: 'message-rule', ruleType: 'incoming_email', conversationId: `sentinel-conversation-${sentinels}-${now}`, messageId, subject: `Sentinel ${sentinels}`, deliveredAt: Math.floor(now / 1000), trashed: false, withBody: true },
    mutations: [],
    layout: 'compact',
    damage: null,
    contentType: 'natural',
    signing: 'valid',
    via: 'inject',
  });
  return [
    { rendered: tw, row: { table: 'tasks', id: String(taskId), title: `Sentinel ${sentinels}` } },
    { rendered: mv, row: { table: 'emails', id: messageId, title: `Sentinel ${sentinels}` } },
  ];
}
