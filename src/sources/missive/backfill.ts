/**
 * Missive backfill (reference 2.9): Missive has no "changed since" query, so we walk each mailbox's
 * conversation list newest first until `last_activity_at < since`, and for every conversation found
 * read its messages (list, then bodies in batches of 10 across the page). Each conversation with a
 * message we may read becomes one `conversation.snapshot` event carrying everything the handler needs
 * (a conversation where the token's user is only a guest lists no messages and makes no event).
 *
 * Mailboxes: `all`, `trashed` and `junked` by default (whether `all` includes Trash is not documented,
 * U7); a conversation found in several is taken once.
 *
 * Trash sweep. Trashing or restoring does not move `last_activity_at`, so a conversation trashed (or
 * restored) long after its last activity is behind `since` and the walk above never meets it. The
 * sweep mailboxes (default: `trashed`) are therefore walked whole, list pages only: a row in the
 * window is taken as above, and an older row is taken only when its trash state differs from what the
 * same listing showed at the end of the last run (trash-sweep.ts keeps that); ids no longer listed
 * (restored, or deleted for good) are read with GET /conversations/:id and taken if still there.
 * Spam needs no sweep: junk sets nothing in an email row (only trash does: map.ts), and new activity
 * there is found by the windowed `junked` walk.
 *
 * Checkpoint. The walk goes from newest to oldest, so until it reaches `since` there is a gap between
 * `since` and the oldest conversation seen: moving the checkpoint to the newest time earlier would,
 * after a crash, skip that gap for good. So every page but the last says `newestUpdate: null`, and the
 * last one carries the newest `last_activity_at` seen in the whole walk (pages are held back by one to
 * know which is last). A failure anywhere throws out of the iterator; the failed page is never yielded.
 * The sweep's record is saved only after that last page was taken (so its events are enqueued).
 */
import { randomUUID } from 'node:crypto';
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { QueueEvent } from '../../model.ts';
import type { Clock } from '../../http/clock.ts';
import type { BackfillChange, BackfillOptions, BackfillPage } from '../source.ts';
import { mapPool, MISSIVE_RATE_LIMITS, type ConversationFilter, type MissiveClient } from './client.ts';
import { SNAPSHOT_EVENT_TYPE } from './handler.ts';
import { isTrashed } from './map.ts';
import type { MissiveConversation, MissiveMessage, SnapshotPayload } from './payloads.ts';
import { TrashSweep, type SweepStore } from './trash-sweep.ts';

/**
 * The mailboxes walked by default. `all` may leave out Trash and Spam (reference 2.2, U7), and the
 * token's user may have junked a conversation that teammates still work in, so both are walked too.
 */
export const DEFAULT_BACKFILL_MAILBOXES: readonly ConversationFilter[] = [{ all: true }, { trashed: true }, { junked: true }];

/** The mailboxes walked whole to find trash and restores of inactive conversations (see the header). */
export const DEFAULT_SWEEP_MAILBOXES: readonly ConversationFilter[] = [{ trashed: true }];

export interface MissiveBackfillDeps {
  client: MissiveClient;
  clock: Clock;
  /** Default: all + trashed + junked. */
  mailboxes?: readonly ConversationFilter[];
  /** Event ids; default crypto.randomUUID. */
  newId?: () => string;
  /** Where the trash sweep keeps what it saw; without one there is no sweep (the windowed walk only). */
  sweepStore?: SweepStore;
  /** Default: trashed. */
  sweepMailboxes?: readonly ConversationFilter[];
}

export async function* backfillMissive(deps: MissiveBackfillDeps, options: BackfillOptions): AsyncGenerator<BackfillPage> {
  const sweep = deps.sweepStore === undefined ? null : await TrashSweep.start(deps.sweepStore);
  let newest: number | null = null;
  let held: BackfillPage | null = null;
  for await (const { page, newestInPage } of pages(deps, options, sweep)) {
    if (newestInPage !== null && (newest === null || newestInPage > newest)) newest = newestInPage;
    if (held !== null) yield held;
    held = page;
  }
  if (held !== null) yield { ...held, newestUpdate: newest === null ? null : new Date(newest * 1000) };
  // Every page was taken (and its events enqueued): what the sweep found may now count as handled.
  if (sweep !== null) await sweep.save(sweepMailboxes(deps).map(describe));
}

function sweepMailboxes(deps: MissiveBackfillDeps): readonly ConversationFilter[] {
  return deps.sweepStore === undefined ? [] : (deps.sweepMailboxes ?? DEFAULT_SWEEP_MAILBOXES);
}

/** Every page of every mailbox that found conversations, with `newestUpdate: null`. */
async function* pages(deps: MissiveBackfillDeps, options: BackfillOptions, sweep: TrashSweep | null): AsyncGenerator<{ page: BackfillPage; newestInPage: number | null }> {
  const taken = new Set<string>();
  const log = options.log;
  const signal = options.signal !== undefined ? { signal: options.signal } : {};
  const sinceSeconds = options.since.getTime() / 1000;
  const inWindow = (c: MissiveConversation) => c.last_activity_at === null || c.last_activity_at === undefined || c.last_activity_at >= sinceSeconds;
  const swept = new Set(sweepMailboxes(deps).map(describe));
  const mailboxes = [...(deps.mailboxes ?? DEFAULT_BACKFILL_MAILBOXES)];
  for (const filter of sweepMailboxes(deps)) if (!mailboxes.some((m) => describe(m) === describe(filter))) mailboxes.push(filter);
  for (const filter of mailboxes) {
    const mailbox = describe(filter);
    const whole = sweep !== null && swept.has(mailbox);
    // A swept mailbox is walked to its end (no `since`): its old rows are compared with the last run's.
    for await (const page of deps.client.walkConversations(filter, whole ? signal : { since: options.since, ...signal })) {
      const conversations = page.conversations.filter((c) => {
        if (!whole) return !taken.has(c.id);
        const deleted = isTrashed(c);
        sweep.saw(mailbox, c.id, deleted);
        return !taken.has(c.id) && (inWindow(c) || sweep.changed(mailbox, c.id, deleted));
      });
      for (const c of conversations) taken.add(c.id);
      if (conversations.length === 0) continue;
      const events = await snapshotEvents(deps, conversations, page.requestedAt, log, options.signal);
      // Only rows in the window say how far the checkpoint may move (an old trashed row says nothing).
      const times = conversations.filter(inWindow).map((c) => c.last_activity_at).filter((t): t is number => typeof t === 'number');
      log.debug({ mailbox, until: page.until, conversations: conversations.length, events: events.length }, 'missive backfill page');
      yield {
        page: { events, newestUpdate: null, cursor: `${mailbox}:${page.until ?? 'start'}` },
        newestInPage: times.length === 0 ? null : Math.max(...times),
      };
    }
    if (whole) {
      const gone = sweep.gone(mailbox).filter((id) => !taken.has(id));
      if (gone.length === 0) continue;
      const requestedAt = deps.clock.now();
      const found = await mapPool(gone, MISSIVE_RATE_LIMITS.concurrency, (id) => deps.client.getConversation(id, options.signal));
      const back = found.filter((c): c is MissiveConversation => c !== null && !taken.has(c.id));
      for (const c of back) taken.add(c.id);
      log.info({ mailbox, gone: gone.length, found: back.length }, 'missive backfill: conversations gone from a swept mailbox since the last run (restored, or deleted for good) read again');
      if (back.length === 0) continue;
      const events = await snapshotEvents(deps, back, requestedAt, log, options.signal);
      yield { page: { events, newestUpdate: null, cursor: `${mailbox}:gone` }, newestInPage: null };
    }
  }
}

async function snapshotEvents(
  deps: MissiveBackfillDeps,
  conversations: MissiveConversation[],
  requestedAt: number,
  log: Logger,
  signal: AbortSignal | undefined,
): Promise<QueueEvent[]> {
  const { client } = deps;
  const listed = await mapPool(conversations, MISSIVE_RATE_LIMITS.concurrency, async (conversation) => {
    try {
      return await client.listConversationMessages(conversation.id, signal);
    } catch (err) {
      // Gone since it was listed, or a guest row the token may not read: nothing to mirror.
      if (err instanceof ConnectorError && (err.code === 'CONN_ERR_HTTP_NOT_FOUND' || err.status === 403)) {
        log.warn({ conversationId: conversation.id, code: err.code }, 'missive backfill: cannot read the messages of a listed conversation; skipped');
        return [];
      }
      throw err;
    }
  });
  const full = new Map((await client.getMessages(listed.flat().map((m) => m.id), signal)).map((m) => [m.id, m]));
  const observedAt = new Date(requestedAt).toISOString();
  const newId = deps.newId ?? randomUUID;
  const receivedAt = new Date(deps.clock.now());
  const events: QueueEvent[] = [];
  conversations.forEach((conversation, i) => {
    const messages: MissiveMessage[] = [];
    for (const summary of listed[i] ?? []) {
      const message = full.get(summary.id);
      if (message === undefined) {
        log.warn({ conversationId: conversation.id, messageId: summary.id }, 'missive backfill: a listed message was not returned; skipped');
        continue;
      }
      // The conversation travels once, beside the messages, not inside each of them.
      const { conversation: _conversation, ...rest } = message;
      messages.push(rest);
    }
    // Nothing to mirror (no message we may read): no event.
    if (messages.length === 0) return;
    events.push({
      id: newId(),
      source: 'missive',
      type: SNAPSHOT_EVENT_TYPE,
      entityKey: `conversation:${conversation.id}`,
      origin: 'backfill',
      receivedAt,
      payload: { conversation, messages, observedAt },
    });
  });
  return events;
}

function describe(filter: ConversationFilter): string {
  return Object.entries(filter)
    .map(([k, v]) => (v === true ? k : `${k}=${String(v)}`))
    .join('&');
}

/**
 * The messages a snapshot brings, each at the time it was delivered (or made). Their versions cannot
 * tell a webhook's row from the backfill's (a Missive version is when we read the conversation, not
 * when it changed), so only a message with no row at all counts as one no webhook brought.
 */
export function snapshotChanges(event: QueueEvent): BackfillChange[] {
  if (event.type !== SNAPSHOT_EVENT_TYPE) return [];
  const { messages } = event.payload as SnapshotPayload;
  const changes: BackfillChange[] = [];
  for (const message of messages) {
    const seconds = message.delivered_at ?? message.created_at;
    if (seconds == null) continue;
    changes.push({ table: 'emails', id: message.id, changedAt: new Date(seconds * 1000), version: null });
  }
  return changes;
}
