/**
 * The Missive source: webhook verification and parsing, the handler (-> Email), and the backfill.
 * The API client exists only when MISSIVE_API_TOKEN is set (`apiConfigured`); without it deliveries are
 * still verified, parsed and stored from their bodies, and there is no backfill.
 *
 * Without MISSIVE_WEBHOOK_SECRET every delivery is refused (401) unless WEBHOOKS_ALLOW_UNSIGNED=true;
 * then, with the API configured, no delivery body is trusted: every webhook event is re-read from the
 * API (handler.ts, `trustBody`).
 */
import path from 'node:path';
import type { Config } from '../../config.ts';
import type { Logger } from '../../log.ts';
import { systemClock, type Clock } from '../../http/clock.ts';
import type { RateLimiter } from '../../http/rate-limiter.ts';
import { BACKFILL_MAX_WAIT_MS, HANDLER_MAX_WAIT_MS, type BackfillOptions, type BackfillPage, type Delivery, type HandlerContext, type ParsedDelivery, type Source } from '../source.ts';
import type { Changes, QueueEvent } from '../../model.ts';
import { AttachmentStore } from './attachments.ts';
import { backfillMissive, snapshotChanges } from './backfill.ts';
import { MissiveClient, type ConversationFilter, type MissiveRateLimitOptions } from './client.ts';
import { MissiveHandler } from './handler.ts';
import { FileSweepStore, type SweepStore } from './trash-sweep.ts';
import { parseMissiveDelivery, verifyMissiveSignature } from './webhook.ts';

export interface MissiveSourceDeps {
  log: Logger;
  /** Default the global fetch. */
  fetch?: typeof fetch;
  /** Default the system clock. */
  clock?: Clock;
  /** The budget to draw from; default the process-wide Missive limiter for this base URL and token. */
  limiter?: RateLimiter;
  /** How the process-wide limiter is made (tests scale the windows). */
  rateLimit?: MissiveRateLimitOptions;
  /** Mailboxes the backfill walks; default all + trashed + junked. */
  backfillMailboxes?: readonly ConversationFilter[];
  /** Where the backfill's trash sweep keeps what it saw; default `${DATA_DIR}/checkpoints/missive-mailboxes.json`. */
  sweepStore?: SweepStore;
  /** Event ids; default crypto.randomUUID. */
  newId?: () => string;
}

export interface MissiveSource extends Source {
  readonly name: 'missive';
  /** The API client, when MISSIVE_API_TOKEN is set. */
  readonly client: MissiveClient | null;
}

export function createMissiveSource(config: Config, deps: MissiveSourceDeps): MissiveSource {
  // The caller names the source (createSources makes the child with `source`), as for Teamwork: a second
  // child here wrote the key twice in every line.
  const log = deps.log;
  const clock = deps.clock ?? systemClock;
  const token = config.MISSIVE_API_TOKEN;
  // Two clients on one budget (the process-wide limiter): the handler's gives a long wait back to the
  // dispatcher (HANDLER_MAX_WAIT_MS), the backfill's waits it out.
  const newClient = (maxWaitMs: number): MissiveClient | null =>
    token === undefined
      ? null
      : new MissiveClient({
          token,
          baseUrl: config.MISSIVE_BASE_URL,
          attachmentHosts: config.ATTACHMENTS_ALLOWED_HOSTS ?? [],
          clock,
          log,
          maxWaitMs,
          ...(deps.fetch !== undefined ? { fetch: deps.fetch } : {}),
          ...(deps.limiter !== undefined ? { limiter: deps.limiter } : {}),
          ...(deps.rateLimit !== undefined ? { rateLimit: deps.rateLimit } : {}),
        });
  const client = newClient(HANDLER_MAX_WAIT_MS);
  const attachments =
    client !== null && config.ATTACHMENTS_STORE
      ? new AttachmentStore({ dir: config.attachmentsDir, maxBytes: config.ATTACHMENTS_MAX_BYTES, fetcher: client, log })
      : null;
  if (config.ATTACHMENTS_STORE && client === null) {
    log.warn('ATTACHMENTS_STORE is on but MISSIVE_API_TOKEN is not set: attachment content cannot be fetched; metadata only');
  }
  const secret = config.MISSIVE_WEBHOOK_SECRET;
  const allowUnsigned = config.WEBHOOKS_ALLOW_UNSIGNED;
  // Taking deliveries nobody signed (the operator's explicit opt-out): their bodies are never trusted
  // while the API can say what the conversation really is.
  const acceptsUnsigned = secret === undefined && allowUnsigned;
  const handler = new MissiveHandler({ client, attachments, log, trustBody: !acceptsUnsigned });
  const parseOptions = { apiConfigured: client !== null, ...(deps.newId !== undefined ? { newId: deps.newId } : {}) };

  const source: MissiveSource = {
    name: 'missive',
    apiConfigured: client !== null,
    acceptsUnsigned,
    client,
    verify: (delivery: Delivery): void => verifyMissiveSignature(delivery, secret, { allowUnsigned }),
    parseWebhook: (delivery: Delivery): ParsedDelivery => parseMissiveDelivery(delivery, parseOptions),
    handle: (event: QueueEvent, context: HandlerContext): Promise<Changes> => handler.handle(event, context),
    ...(client !== null ? { vendor: client.limiter } : {}),
  };
  const backfillClient = newClient(BACKFILL_MAX_WAIT_MS);
  if (backfillClient !== null) {
    const sweepStore = deps.sweepStore ?? new FileSweepStore(path.join(config.checkpointDir, 'missive-mailboxes.json'));
    source.backfill = (options: BackfillOptions): AsyncIterable<BackfillPage> =>
      backfillMissive(
        {
          client: backfillClient,
          clock,
          sweepStore,
          ...(deps.backfillMailboxes !== undefined ? { mailboxes: deps.backfillMailboxes } : {}),
          ...(deps.newId !== undefined ? { newId: deps.newId } : {}),
        },
        options,
      );
    source.backfillChanges = snapshotChanges;
  }
  return source;
}

export { MissiveClient } from './client.ts';
export { SNAPSHOT_EVENT_TYPE } from './handler.ts';
