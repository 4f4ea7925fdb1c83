/**
 * Missive backfill (reference 2.9): Missive has no "changed since" query, so we walk each mailbox's
 * conversation list newest first until `last_activity_at < since`, and for every conversation found
 * read its messages (list, then bodies in batches of 10 across the page). Each conversation with a
 * message we may read becomes one `conversation.snapshot` event carrying everything the handler needs
 * (a conversation where the token's user is only a guest lists no messages and makes no event).
 *
 * Mailboxes: `all` and `trashed` by default (whether `all` includes Trash is not documented, U7);
 * a conversation found in both is taken once.
 *
 * Checkpoint. The walk goes from newest to oldest, so until it reaches `since` there is a gap between
 * `since` and the oldest conversation seen: moving the checkpoint to the newest time earlier would,
 * after a crash, skip that gap for good. So every page but the last says `newestUpdate: null`, and the
 * last one carries the newest `last_activity_at` seen in the whole walk (pages are held back by one to
 * know which is last). A failure anywhere throws out of the iterator; the failed page is never yielded.
 */
import { randomUUID } from 'node:crypto';
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { QueueEvent } from '../../model.ts';
import type { Clock } from '../../http/clock.ts';
import type { BackfillOptions, BackfillPage } from '../source.ts';
import { mapPool, MISSIVE_RATE_LIMITS, type ConversationFilter, type ConversationPage, type MissiveClient } from './client.ts';
import { SNAPSHOT_EVENT_TYPE } from './handler.ts';
import type { MissiveConversation, MissiveMessage } from './payloads.ts';

/**
 * The mailboxes walked by default. `all` may leave out Trash and Spam (reference 2.2, U7), and the
 * token's user may have junked a conversation that teammates still work in, so both are walked too.
 */
export const DEFAULT_BACKFILL_MAILBOXES: readonly ConversationFilter[] = [{ all: true }, { trashed: true }, { junked: true }];

export interface MissiveBackfillDeps {
  client: MissiveClient;
  clock: Clock;
  /** Default: all + trashed + junked. */
  mailboxes?: readonly ConversationFilter[];
  /** Event ids; default crypto.randomUUID. */
  newId?: () => string;
}

export async function* backfillMissive(deps: MissiveBackfillDeps, options: BackfillOptions): AsyncGenerator<BackfillPage> {
  let newest: number | null = null;
  let held: BackfillPage | null = null;
  for await (const { page, newestInPage } of pages(deps, options)) {
    if (newestInPage !== null && (newest === null || newestInPage > newest)) newest = newestInPage;
    if (held !== null) yield held;
    held = page;
  }
  if (held !== null) yield { ...held, newestUpdate: newest === null ? null : new Date(newest * 1000) };
}

/** Every page of every mailbox that found conversations, with `newestUpdate: null`. */
async function* pages(deps: MissiveBackfillDeps, options: BackfillOptions): AsyncGenerator<{ page: BackfillPage; newestInPage: number | null }> {
  const taken = new Set<string>();
  const log = options.log;
  for (const filter of deps.mailboxes ?? DEFAULT_BACKFILL_MAILBOXES) {
    const mailbox = describe(filter);
    for await (const page of deps.client.walkConversations(filter, { since: options.since, ...(options.signal !== undefined ? { signal: options.signal } : {}) })) {
      const conversations = page.conversations.filter((c) => !taken.has(c.id));
      for (const c of conversations) taken.add(c.id);
      if (conversations.length === 0) continue;
      const events = await snapshotEvents(deps, conversations, page, log, options.signal);
      const times = conversations.map((c) => c.last_activity_at).filter((t): t is number => typeof t === 'number');
      log.debug({ mailbox, until: page.until, conversations: conversations.length, events: events.length }, 'missive backfill page');
      yield {
        page: { events, newestUpdate: null, cursor: `${mailbox}:${page.until ?? 'start'}` },
        newestInPage: times.length === 0 ? null : Math.max(...times),
      };
    }
  }
}

async function snapshotEvents(
  deps: MissiveBackfillDeps,
  conversations: MissiveConversation[],
  page: ConversationPage,
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
  const observedAt = new Date(page.requestedAt).toISOString();
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
