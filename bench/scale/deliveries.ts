/**
 * The deliveries of the scale benchmark: signed Teamwork v2 JSON bodies of about 2 KB, one task each.
 *
 * Every body carries every field the connector stores (title, description, status, priority, progress,
 * project and tasklist with their names, parent, assignees with name and email, tags, dates, estimate,
 * creator and updater with name and email, `dateUpdated`), so the Teamwork handler maps it as it is
 * (src/sources/teamwork/handler.ts: "a v2 body that carries every field we store is mapped as it is")
 * and processing it makes no vendor API call. Delivery n is about task FIRST_TASK_ID + n: distinct
 * tasks, so the entity locks never make two events wait for each other, and distinct bytes, so the
 * connector's replay window never answers one as a repeat.
 *
 * The signature is `X-Projects-Signature`: the hex HMAC-SHA256 of the body under the webhook token.
 */
import { createHmac } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

export const FIRST_TASK_ID = 10_000_000;
/** Size the bodies are padded to (the description takes the slack), bytes. */
const BODY_BYTES = 2048;

export interface SignedDelivery {
  body: string;
  signature: string;
}

/**
 * The body of delivery n. `updatedAt`: the task's `dateUpdated` (the handler refuses a version more
 * than an hour after the delivery arrived, so it is taken from the clock when the file is written).
 */
export function deliveryBody(n: number, updatedAt: Date): string {
  const id = FIRST_TASK_ID + n;
  const task = {
    id,
    name: `Scale benchmark task ${id}`,
    description: '',
    priority: 'medium',
    status: 'active',
    assignedUserIds: [9],
    parentId: 0,
    taskListId: 501,
    startDate: '2026-11-01',
    dueDate: '2026-12-01',
    progress: 20,
    estimatedMinutes: 45,
    tags: [{ id: 1, name: 'bench', color: '2f8de4' }],
    projectId: 77,
    createdBy: 9,
    dateCreated: '2026-11-01T10:00:00Z',
    dateUpdated: updatedAt.toISOString(),
    hasCustomFields: false,
  };
  const envelope = {
    eventCreator: { id: 9, firstName: 'Ada', lastName: 'Lovelace', avatar: '' },
    task,
    project: { id: 77, name: 'Operations', description: '', status: 'active', startDate: null, endDate: null, tags: [], ownerId: 9, companyId: 1, categoryId: 0, dateCreated: '2026-01-01T00:00:00Z' },
    taskList: { id: 501, name: 'Q4', description: '', status: 'new', milestoneId: 0, projectId: 77, templateId: null, tags: [] },
    users: [{ id: 9, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }],
  };
  const bare = JSON.stringify(envelope).length;
  task.description = `Delivery ${n} of the scale benchmark. `.repeat(60).slice(0, Math.max(0, BODY_BYTES - bare));
  return JSON.stringify(envelope);
}

export function signedDelivery(n: number, token: string, updatedAt: Date): SignedDelivery {
  const body = deliveryBody(n, updatedAt);
  return { body, signature: createHmac('sha256', token).update(body).digest('hex') };
}

/**
 * Writes deliveries `first` .. `first + count - 1` to `file`, one a line: the signature, a space, the
 * body (which holds no line break). This is what bench/scale/deliveries.lua reads. Resolves with the
 * bytes written.
 */
export async function writeDeliveryFile(file: string, first: number, count: number, token: string): Promise<number> {
  const out = createWriteStream(file);
  const updatedAt = new Date(Date.now() - 60_000);
  let bytes = 0;
  for (let n = first; n < first + count; n++) {
    const { body, signature } = signedDelivery(n, token, updatedAt);
    const line = `${signature} ${body}\n`;
    bytes += line.length;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return bytes;
}
