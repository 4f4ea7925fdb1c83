/**
 * Teamwork events -> changes. Reads from the Teamwork API when the event carries too little; never
 * writes anywhere.
 *
 * - `task.snapshot` (backfill): the v3 task and its side-loads are in the event; mapped as they are.
 * - TASK.DELETED: with the API, the task is fetched: 404 -> a deletion; `status: "deleted"` -> the
 *   full task, deleted; still live and last updated before the delivery -> the API lags, retry later
 *   (CONN_ERR_EVENT_NOT_READY); still live and updated after the delivery -> restored since, stored
 *   as it now is. Without the API: the body's task when it is complete, else a deletion at the time
 *   the body gives, or when the delivery arrived.
 * - Other task events: a v2 body that carries every field we store is mapped as it is. Otherwise the
 *   task is fetched (v3, with side-loads) when the API is configured; if Teamwork shows an older
 *   version than the body's `dateUpdated`, the API has not caught up: CONN_ERR_EVENT_NOT_READY, so the
 *   dispatcher tries again later. Without the API, a v2 body is stored with what it has, and a v1
 *   body (an id and nothing else) fails with CONN_ERR_SOURCE_UNCONFIGURED.
 * - A task Teamwork no longer knows (404) for a non-delete event: the body's task if there is one,
 *   else nothing, with a warning (a later TASK.DELETED or the backfill settles it).
 */
import { ConnectorError } from '../../errors.ts';
import { noChanges, type Changes, type QueueEvent, type Task } from '../../model.ts';
import type { HandlerContext } from '../source.ts';
import { SNAPSHOT_EVENT } from './backfill.ts';
import type { TeamworkClient } from './client.ts';
import { mapV2WebhookTask, mapV3Task, type V2MapResult } from './map.ts';
import { SnapshotEventPayload, V2WebhookBody, WebhookEventPayload, describeIssues } from './payloads.ts';

export interface TeamworkHandlerDeps {
  /** Null when the API is not configured. */
  client: TeamworkClient | null;
  /** For task links; null leaves `url` null. */
  baseUrl: string | null;
}

export async function handleTeamworkEvent(event: QueueEvent, deps: TeamworkHandlerDeps, context: HandlerContext): Promise<Changes> {
  const { client, baseUrl } = deps;
  const log = context.log;

  if (event.type === SNAPSHOT_EVENT) {
    const parsed = SnapshotEventPayload.safeParse(event.payload);
    if (!parsed.success) throw invalid(event, `a ${SNAPSHOT_EVENT} payload must be { task, included }: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    return withTask(mapV3Task(parsed.data.task, parsed.data.included, { baseUrl }));
  }
  if (!event.type.startsWith('TASK.')) throw invalid(event, `event type ${event.type} is not a Teamwork task event`);

  const parsed = WebhookEventPayload.safeParse(event.payload);
  if (!parsed.success) throw invalid(event, `a webhook payload must be { format, taskId, body }: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const { format, taskId, body } = parsed.data;

  let fromBody: V2MapResult | null = null;
  if (format !== 'v1-form') {
    // The webhook path checked only the task id; the rest of the body is checked here. A body that does
    // not fit (a field of an unexpected type) is not used: the task is read from the API instead, or,
    // without one, the event is dead-lettered naming the fields (never their values).
    const v2 = V2WebhookBody.safeParse(body);
    if (v2.success) {
      if (v2.data.task) fromBody = mapV2WebhookTask(v2.data, { baseUrl, eventName: event.type, receivedAt: event.receivedAt, raw: body });
    } else if (client === null) {
      throw invalid(event, `the webhook body does not have Teamwork's v2 shape (${describeIssues(v2.error)}), and without the API the task cannot be read instead`);
    } else {
      log.warn({ taskId, eventType: event.type, problems: describeIssues(v2.error) }, 'Teamwork webhook body does not have the v2 shape; reading the task from the API instead');
    }
  }

  if (event.type === 'TASK.DELETED') {
    const deletedAt = fromBody?.task.deletedAt ?? event.receivedAt;
    if (client === null) {
      if (fromBody !== null && fromBody.missing.length === 0) return withTask(fromBody.task);
      return { ...noChanges(), deletedTasks: [{ id: taskId, at: deletedAt }] };
    }
    const fetched = await client.getTask(taskId, { signal: context.signal });
    if (fetched === null) return { ...noChanges(), deletedTasks: [{ id: taskId, at: deletedAt }] };
    const task = mapV3Task(fetched.task, fetched.included, { baseUrl });
    if (task.deleted) return withTask(task);
    if (task.updatedAt !== null && task.updatedAt.getTime() > event.receivedAt.getTime()) {
      log.info({ taskId, updatedAt: task.updatedAt.toISOString() }, 'Teamwork task deleted and restored since; storing it as it is now');
      return withTask(task);
    }
    throw notReady(taskId, `TASK.DELETED arrived but Teamwork still shows task ${taskId} as ${task.status ?? 'live'}`);
  }

  if (fromBody !== null && fromBody.missing.length === 0) return withTask(fromBody.task);

  if (client === null) {
    if (fromBody !== null) {
      log.debug({ taskId, missing: fromBody.missing }, 'Teamwork API not configured; storing the task as the webhook described it');
      return withTask(fromBody.task);
    }
    throw new ConnectorError('CONN_ERR_SOURCE_UNCONFIGURED', `${event.type} for task ${taskId} carries no task data (legacy v1 webhook); set TEAMWORK_API_KEY and TEAMWORK_SITE or TEAMWORK_BASE_URL so the task can be fetched`, {
      details: { eventId: event.id, taskId },
    });
  }

  if (fromBody !== null) log.debug({ taskId, missing: fromBody.missing }, 'Teamwork webhook lacks fields; fetching the task');
  const fetched = await client.getTask(taskId, { signal: context.signal });
  if (fetched === null) {
    if (fromBody !== null) {
      log.warn({ taskId, eventType: event.type }, 'Teamwork answered 404 for the task; storing it as the webhook described it');
      return withTask(fromBody.task);
    }
    log.warn({ taskId, eventType: event.type }, 'Teamwork answered 404 for the task; nothing to store');
    return noChanges();
  }
  const task = mapV3Task(fetched.task, fetched.included, { baseUrl });
  const announced = fromBody?.task.updatedAt ?? null;
  if (!task.deleted && announced !== null && task.updatedAt !== null && task.updatedAt.getTime() < announced.getTime()) {
    throw notReady(taskId, `Teamwork shows task ${taskId} as of ${task.updatedAt.toISOString()}, older than the webhook's ${announced.toISOString()}`);
  }
  return withTask(task);
}

function withTask(task: Task): Changes {
  return { ...noChanges(), tasks: [task] };
}

function invalid(event: QueueEvent, why: string): ConnectorError {
  return new ConnectorError('CONN_ERR_EVENT_INVALID', `Teamwork event ${event.id}: ${why}`, { details: { eventId: event.id, type: event.type } });
}

function notReady(taskId: string, why: string): ConnectorError {
  return new ConnectorError('CONN_ERR_EVENT_NOT_READY', `${why}; trying again later`, { details: { taskId } });
}
