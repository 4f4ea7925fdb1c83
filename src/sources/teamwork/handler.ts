/**
 * Teamwork events -> changes. Reads from the Teamwork API when the event carries too little; never
 * writes anywhere.
 *
 * Versions. Every task we return carries a version (`updatedAt`) the stale-write guard can order: a
 * body's `dateUpdated`, or the API's `updatedAt`, checked by map.ts `checkVersion` (present, a
 * timestamp, not before 2000, not more than an hour after the delivery arrived or the API answered). A
 * body whose `dateUpdated` fails that is never stored as it is: with the API the task is read instead
 * (and a bad body time is never compared with the API's); without it the event is dead-lettered
 * (CONN_ERR_EVENT_INVALID) naming `task.dateUpdated` and the value, for an operator to replay once the
 * API is configured (a backfill repairs too). An API answer without a usable `updatedAt` is
 * dead-lettered the same way.
 *
 * - `task.snapshot` (backfill): the v3 task and its side-loads are in the event; mapped as they are.
 * - TASK.DELETED carries its own version: the body's deletion time, else its `dateUpdated`, else (an
 *   id-only body) the time the delivery arrived. With the API, the deletion is confirmed first: 404 ->
 *   a deletion; `status: "deleted"` -> the full task, deleted; still live and updated after the
 *   deletion's version -> changed (restored) since, stored as it now is, so a captured deletion
 *   replayed later never deletes a restored task; still live and not updated since -> the API lags,
 *   retry later (CONN_ERR_EVENT_NOT_READY). Without the API: the body's task when it is complete, else
 *   a deletion at that version; either is skipped by the stale-write guard when the stored task is
 *   newer. (An id-only body replayed without the API cannot be told from a new one: Teamwork signs no
 *   time. Configure the API.)
 * - Other task events: a v2 body that carries every field we store is mapped as it is. Otherwise the
 *   task is fetched (v3, with side-loads) when the API is configured; if Teamwork shows an older
 *   version than the body's `dateUpdated`, the API has not caught up: CONN_ERR_EVENT_NOT_READY, so the
 *   dispatcher tries again later. Without the API, a v2 body is stored with what it has, and a v1
 *   body (an id and nothing else) fails with CONN_ERR_SOURCE_UNCONFIGURED.
 * - A task Teamwork no longer knows (404) for a non-delete event: the body's task if there is one with
 *   a usable version, else nothing, with a warning (a later TASK.DELETED or the backfill settles it).
 * - Unsigned deliveries (WEBHOOKS_ALLOW_UNSIGNED and no TEAMWORK_WEBHOOK_TOKEN: `trustBody` false) with
 *   the API configured: the body is not used at all, only its task id. Every event reads the task from
 *   the API and stores what it says; a 404 is a deletion for TASK.DELETED and nothing otherwise. The
 *   decision is the source's configuration when the event is handled: events queued while unsigned and
 *   handled after a token is set are trusted like signed ones (docs/teamwork.md says to let the queue
 *   drain, or run a backfill, after turning the opt-out off). Without the API the body is all there is,
 *   and is stored as above: the operator's explicit choice, warned about at start-up and by doctor.
 */
import { ConnectorError } from '../../errors.ts';
import { noChanges, type Changes, type QueueEvent, type Task } from '../../model.ts';
import type { HandlerContext } from '../source.ts';
import { SNAPSHOT_EVENT } from './backfill.ts';
import type { TeamworkClient } from './client.ts';
import { checkVersion, mapV2WebhookTask, mapV3Task, type V2MapResult, type VersionCheck } from './map.ts';
import { SnapshotEventPayload, V2WebhookBody, WebhookEventPayload, describeIssues, member, type V3Included, type V3Task } from './payloads.ts';

export interface TeamworkHandlerDeps {
  /** Null when the API is not configured. */
  client: TeamworkClient | null;
  /** For task links; null leaves `url` null. */
  baseUrl: string | null;
  /**
   * False when deliveries are taken unsigned (WEBHOOKS_ALLOW_UNSIGNED, no TEAMWORK_WEBHOOK_TOKEN): then,
   * with the API configured, nothing in a webhook body is used as data (see the header). Default true.
   */
  trustBody?: boolean;
}

export async function handleTeamworkEvent(event: QueueEvent, deps: TeamworkHandlerDeps, context: HandlerContext): Promise<Changes> {
  const { client, baseUrl } = deps;
  const log = context.log;

  if (event.type === SNAPSHOT_EVENT) {
    const parsed = SnapshotEventPayload.safeParse(event.payload);
    if (!parsed.success) throw invalid(event, `a ${SNAPSHOT_EVENT} payload must be { task, included }: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    return withTask(fromApi(event, parsed.data.task, parsed.data.included, baseUrl, context));
  }
  if (!event.type.startsWith('TASK.')) throw invalid(event, `event type ${event.type} is not a Teamwork task event`);

  const parsed = WebhookEventPayload.safeParse(event.payload);
  if (!parsed.success) throw invalid(event, `a webhook payload must be { format, taskId, body }: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const { format, taskId, body } = parsed.data;

  if (deps.trustBody === false && client !== null) return fromApiOnly(event, taskId, client, baseUrl, context);

  let fromBody: V2MapResult | null = null;
  /** The body task's `dateUpdated` checked as a version; null when the body carries no task. */
  let bodyVersion: VersionCheck | null = null;
  let bodyDeleted: Date | null = null;
  if (format !== 'v1-form') {
    const rawTask = member(body, 'task');
    if (typeof rawTask === 'object' && rawTask !== null && !Array.isArray(rawTask)) {
      const task = rawTask as Record<string, unknown>;
      bodyVersion = checkVersion(member(task, 'dateUpdated'), event.receivedAt);
      bodyDeleted = checkVersion(member(task, 'dateDeleted') ?? member(task, 'deletedAt'), event.receivedAt).version;
    }
    // The webhook path checked only the task id; the rest of the body is checked here. A body that does
    // not fit (a field of an unexpected type) is not used: the task is read from the API instead, or,
    // without one, the event is dead-lettered naming the fields (never their values).
    const v2 = V2WebhookBody.safeParse(body);
    if (v2.success) {
      if (v2.data.task) fromBody = mapV2WebhookTask(v2.data, { baseUrl, eventName: event.type, receivedAt: event.receivedAt, raw: body });
    } else if (client === null) {
      if (bodyVersion !== null && bodyVersion.problem !== null && bodyVersion.problem !== 'missing') throw untrustedVersion(event, taskId, bodyVersion.problem);
      throw invalid(event, `the webhook body does not have Teamwork's v2 shape (${describeIssues(v2.error)}), and without the API the task cannot be read instead`);
    } else {
      log.warn({ taskId, eventType: event.type, problems: describeIssues(v2.error) }, 'Teamwork webhook body does not have the v2 shape; reading the task from the API instead');
    }
  }
  // A body task is stored as it is only with a version we can order against the stored one.
  const usable = fromBody !== null && bodyVersion?.problem === null ? fromBody : null;
  const versionProblem = fromBody !== null && bodyVersion !== null ? bodyVersion.problem : null;

  if (event.type === 'TASK.DELETED') {
    // The deletion's own version, so that it is ordered like any write: when the body says the task was
    // deleted, else its last update; a body with no time at all (id-only) is dated by its arrival.
    const at = usable !== null ? (bodyDeleted ?? usable.task.updatedAt ?? event.receivedAt) : event.receivedAt;
    if (client === null) {
      if (versionProblem !== null && bodyVersion?.problem !== 'missing') throw untrustedVersion(event, taskId, versionProblem);
      if (usable !== null && usable.missing.length === 0) return withTask({ ...usable.task, deletedAt: at });
      return { ...noChanges(), deletedTasks: [{ id: taskId, at }] };
    }
    // Confirmed against the API: a captured deletion replayed after a restore must not delete.
    const fetched = await client.getTask(taskId, { signal: context.signal });
    if (fetched === null) return { ...noChanges(), deletedTasks: [{ id: taskId, at }] };
    const task = fromApi(event, fetched.task, fetched.included, baseUrl, context);
    if (task.deleted) return withTask(task);
    if (task.updatedAt.getTime() > at.getTime()) {
      log.info({ taskId, updatedAt: task.updatedAt.toISOString(), deletion: at.toISOString() }, 'Teamwork task changed (restored) after this deletion; storing it as it is now');
      return withTask(task);
    }
    throw notReady(taskId, `TASK.DELETED arrived but Teamwork still shows task ${taskId} as ${task.status ?? 'live'}`);
  }

  if (usable !== null && usable.missing.length === 0) return withTask(usable.task);

  if (client === null) {
    if (versionProblem !== null) throw untrustedVersion(event, taskId, versionProblem);
    if (fromBody !== null) {
      log.debug({ taskId, missing: fromBody.missing }, 'Teamwork API not configured; storing the task as the webhook described it');
      return withTask(fromBody.task);
    }
    throw new ConnectorError('CONN_ERR_SOURCE_UNCONFIGURED', `${event.type} for task ${taskId} carries no task data (legacy v1 webhook); set TEAMWORK_API_KEY and TEAMWORK_SITE or TEAMWORK_BASE_URL so the task can be fetched`, {
      details: { eventId: event.id, taskId },
    });
  }

  if (fromBody !== null) log.debug({ taskId, missing: fromBody.missing, versionProblem }, 'Teamwork webhook lacks fields or a usable dateUpdated; fetching the task');
  const fetched = await client.getTask(taskId, { signal: context.signal });
  if (fetched === null) {
    if (usable !== null) {
      log.warn({ taskId, eventType: event.type }, 'Teamwork answered 404 for the task; storing it as the webhook described it');
      return withTask(usable.task);
    }
    if (versionProblem !== null) throw untrustedVersion(event, taskId, `${versionProblem} (and Teamwork answered 404 for the task)`);
    log.warn({ taskId, eventType: event.type }, 'Teamwork answered 404 for the task; nothing to store');
    return noChanges();
  }
  const task = fromApi(event, fetched.task, fetched.included, baseUrl, context);
  const announced = usable?.task.updatedAt ?? null;
  if (!task.deleted && announced !== null && task.updatedAt.getTime() < announced.getTime()) {
    throw notReady(taskId, `Teamwork shows task ${taskId} as of ${task.updatedAt.toISOString()}, older than the webhook's ${announced.toISOString()}`);
  }
  return withTask(task);
}

/**
 * An unsigned delivery's event (anyone could have sent it): only the task id is taken from it, to know
 * which task to read; what is stored is what the API says. Not there: a deletion for TASK.DELETED (the
 * API confirms it), else nothing. A deletion is dated by the delivery's arrival, never by a body time.
 */
async function fromApiOnly(event: QueueEvent, taskId: string, client: TeamworkClient, baseUrl: string | null, context: HandlerContext): Promise<Changes> {
  const fetched = await client.getTask(taskId, { signal: context.signal });
  if (fetched === null) {
    if (event.type === 'TASK.DELETED') return { ...noChanges(), deletedTasks: [{ id: taskId, at: event.receivedAt }] };
    context.log.warn({ taskId, eventType: event.type }, 'Teamwork answered 404 for the task of an unsigned delivery; nothing to store');
    return noChanges();
  }
  const task = fromApi(event, fetched.task, fetched.included, baseUrl, context);
  if (event.type === 'TASK.DELETED' && !task.deleted && task.updatedAt.getTime() <= event.receivedAt.getTime()) {
    throw notReady(taskId, `TASK.DELETED arrived but Teamwork still shows task ${taskId} as ${task.status ?? 'live'}`);
  }
  return withTask(task);
}

/**
 * A task read from the API (or a backfill snapshot of one), with a version checked like a body's: an
 * API answer without a usable `updatedAt` is dead-lettered naming it, never stored without a version.
 */
function fromApi(event: QueueEvent, task: V3Task, included: V3Included | undefined, baseUrl: string | null, context: HandlerContext): Task & { updatedAt: Date } {
  const mapped = mapV3Task(task, included, { baseUrl });
  const check = checkVersion(task.updatedAt, context.now());
  if (check.problem !== null) {
    throw invalid(event, `Teamwork's API gave task ${mapped.id} updatedAt ${check.problem}; a task without a version we can order is not stored`, 'updatedAt');
  }
  return { ...mapped, updatedAt: check.version };
}

function untrustedVersion(event: QueueEvent, taskId: string, problem: string): ConnectorError {
  return invalid(
    event,
    `${event.type} for task ${taskId}: task.dateUpdated is ${problem}. Without a version it cannot be ordered against the stored task, so it is not stored; ` +
      'set TEAMWORK_API_KEY and TEAMWORK_SITE or TEAMWORK_BASE_URL and replay the dead letter (the task is then read from the API), or run a backfill',
    'task.dateUpdated',
  );
}

function withTask(task: Task): Changes {
  return { ...noChanges(), tasks: [task] };
}

function invalid(event: QueueEvent, why: string, field?: string): ConnectorError {
  return new ConnectorError('CONN_ERR_EVENT_INVALID', `Teamwork event ${event.id}: ${why}`, { details: { eventId: event.id, type: event.type, ...(field === undefined ? {} : { field }) } });
}

function notReady(taskId: string, why: string): ConnectorError {
  return new ConnectorError('CONN_ERR_EVENT_NOT_READY', `${why}; trying again later`, { details: { taskId } });
}
