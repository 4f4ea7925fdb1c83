/**
 * Attachment content, stored on disk when ATTACHMENTS_STORE=true. Metadata (id, name, type, size, URL)
 * is always kept by map.ts; this module adds `storedPath` and `sha256` for the files it stores.
 *
 * Layout: `<ATTACHMENTS_DIR>/<email id>/<attachment id>-<safe file name>`. The per-email folder means two
 * emails' files never overwrite each other; the attachment id prefix means two files of one email with
 * the same name do not either. Names come from senders and are treated as hostile: directories, control
 * characters, characters Windows forbids and reserved device names are removed, length is capped, and
 * the final path is checked to lie inside the email's folder.
 *
 * Where URLs come from. Content is fetched only from URLs Missive's API gave us: a URL that came in a
 * webhook delivery (or in any event we did not build from an API answer ourselves) is never fetched;
 * `storeAll(..., { urls: 'delivery' })` re-reads the message (GET /messages/:id) once per email and
 * takes each attachment's URL, size and type from it by id. An attachment the API does not show is
 * kept as metadata only. Every download then goes through the SSRF-guarded fetch of the client
 * (src/http/guarded-fetch.ts): https to public addresses only, checked after DNS and on every
 * redirect, unless the host is in ATTACHMENTS_ALLOWED_HOSTS.
 *
 * One attachment, step by step:
 *   already on disk (same path)          -> hash the file, done (content never changes for an id)
 *   metadata size > cap                  -> refused, CONN_ERR_ATTACHMENT_TOO_LARGE (nothing fetched)
 *   URL refused by the guard (scheme, address, a redirect's)
 *                                        -> refused, CONN_ERR_ATTACHMENT_URL_REFUSED (nothing fetched
 *                                           from the refused target)
 *   download (plain GET, no API token)   -> body over the cap: refused, CONN_ERR_ATTACHMENT_TOO_LARGE
 *                                        -> 403 (signed URL expired): re-fetch the message, take the
 *                                           attachment's fresh URL by id, download once more
 *   content type disagrees with the attachment's media_type/sub_type (and is not a generic
 *   octet-stream)                        -> refused, CONN_ERR_ATTACHMENT_REJECTED
 *   write `<folder>/.tmp-<uuid>`, fsync, rename into place, fsync the folder -> stored
 * Nothing is written before the whole body is in memory and checked, and the temp file is removed on
 * any failure: a refused or failed attachment never leaves a partial file.
 *
 * A refusal is permanent (the same file will be refused again), so `storeAll` logs it once (the URL
 * without its query, which is a credential) and keeps the metadata; the email is still written. A
 * transient failure (network, 5xx, 429 after the core's retries) is thrown, so the dispatcher retries
 * the event.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConnectorError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Attachment } from '../../model.ts';
import { mediaTypeOf } from './map.ts';
import type { MissiveAttachment, MissiveMessage } from './payloads.ts';

/** What storing attachments needs from the Missive client. */
export interface AttachmentFetcher {
  downloadAttachment(url: string, maxBytes: number, signal?: AbortSignal): Promise<{ body: Buffer; contentType: string | null }>;
  getMessages(ids: readonly string[], signal?: AbortSignal): Promise<MissiveMessage[]>;
}

/**
 * Where an email's attachment URLs came from: `api`, an answer of Missive's API read while handling
 * this event (or by our own backfill); `delivery`, anything else (a webhook body), never fetched.
 */
export type UrlOrigin = 'api' | 'delivery';

export interface StoreAllOptions {
  urls: UrlOrigin;
  signal?: AbortSignal;
  /**
   * The event's last attempt (HandlerContext.lastAttempt): a transient failure then keeps the
   * attachment's metadata instead of failing the email, which would otherwise be dead-lettered for a
   * file. Default false: transient failures throw, so the event is tried again.
   */
  lastAttempt?: boolean;
}

export interface AttachmentStoreOptions {
  /** Root folder (config.attachmentsDir). Created when needed. */
  dir: string;
  /** Largest attachment stored, in bytes (ATTACHMENTS_MAX_BYTES, default 25 MiB). 0 stores only empty files. */
  maxBytes: number;
  fetcher: AttachmentFetcher;
  log: Logger;
}

/** Longest file name we write, in UTF-8 bytes (most file systems allow 255). */
const MAX_NAME_BYTES = 240;
/** Longest extension kept whole when a long name is shortened, in bytes. */
const MAX_EXTENSION_BYTES = 24;
const RESERVED_NAMES = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$/i;
/** C0 and C1 control characters, DEL, and bidirectional overrides that disguise an extension. */
// eslint-disable-next-line no-control-regex -- removing control characters is the point
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const WINDOWS_FORBIDDEN = /[<>:"|?*]/g;

/**
 * A file name that is safe to create inside a folder: the last path segment only, no control or
 * forbidden characters, no leading dots (no `..`, no hidden files), no trailing dots or spaces, no
 * reserved device name, at most `maxBytes` UTF-8 bytes (the extension kept when shortened).
 * Never empty: `fallback` when nothing usable is left.
 */
export function safeFileName(name: string | null | undefined, fallback = 'attachment', maxBytes = MAX_NAME_BYTES): string {
  let n = (name ?? '').normalize('NFC').replace(UNSAFE_CHARACTERS, '');
  n = n.split(/[\\/]/).pop() ?? '';
  n = n.replace(WINDOWS_FORBIDDEN, '_').trim().replace(/^[.\s]+/, '').replace(/[.\s]+$/, '');
  if (n === '') n = fallback;
  const stem = n.split('.')[0] ?? n;
  if (RESERVED_NAMES.test(stem.trim())) n = `_${n}`;
  return truncateUtf8(n, maxBytes);
}

/** `name` cut to `maxBytes` UTF-8 bytes without splitting a character, keeping a short extension. */
function truncateUtf8(name: string, maxBytes: number): string {
  if (Buffer.byteLength(name) <= maxBytes) return name;
  const dot = name.lastIndexOf('.');
  const extension = dot > 0 && Buffer.byteLength(name.slice(dot)) <= MAX_EXTENSION_BYTES ? name.slice(dot) : '';
  const budget = maxBytes - Buffer.byteLength(extension);
  let stem = '';
  for (const ch of name.slice(0, name.length - extension.length)) {
    if (Buffer.byteLength(stem + ch) > budget) break;
    stem += ch;
  }
  return `${stem}${extension}`;
}

/** Where an attachment's content goes: `<dir>/<email id>/<attachment id>-<safe name>`. */
export function attachmentPath(dir: string, attachment: Pick<Attachment, 'id' | 'emailId' | 'filename'>): string {
  const root = path.resolve(dir);
  const folder = path.join(root, safeFileName(attachment.emailId, 'email'));
  const prefix = `${safeFileName(attachment.id, 'file', 100)}-`;
  const file = prefix + safeFileName(attachment.filename, 'attachment', MAX_NAME_BYTES - Buffer.byteLength(prefix));
  const full = path.join(folder, file);
  if (path.dirname(full) !== folder || !folder.startsWith(root + path.sep)) {
    // Unreachable after safeFileName; kept as the last line of defence.
    throw new ConnectorError('CONN_ERR_ATTACHMENT_REJECTED', `attachment ${attachment.id} would be stored outside its folder`);
  }
  return full;
}

/** Whether a download's content type agrees with what the attachment says it is. */
export function contentTypeAgrees(expected: string | null, received: string | null): boolean {
  const got = normalizeType(received);
  if (got === null || got === 'application/octet-stream' || got === 'binary/octet-stream') return true;
  const want = normalizeType(expected);
  if (want === null) return true;
  if (!want.includes('/')) return got.split('/')[0] === want;
  return got === want;
}

const TYPE_ALIASES: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'image/x-png': 'image/png',
  'application/x-pdf': 'application/pdf',
};

function normalizeType(value: string | null): string | null {
  const media = value?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (media === '') return null;
  return TYPE_ALIASES[media] ?? media;
}

export class AttachmentStore {
  private readonly root: string;

  constructor(private readonly options: AttachmentStoreOptions) {
    this.root = path.resolve(options.dir);
  }

  /**
   * Stores each attachment's content; returns the attachments (their metadata as given) with
   * `storedPath` and `sha256` set for those stored. With `urls: 'delivery'` the URLs are re-read from
   * the API first (see the header). Refusals are logged and leave the metadata as it was; transient
   * failures throw, except on the event's last attempt (`lastAttempt`), where they are logged and
   * leave the metadata too: an attachment never costs the email its place in the database.
   */
  async storeAll(attachments: readonly Attachment[], options: StoreAllOptions): Promise<Attachment[]> {
    const { signal } = options;
    /** Per email id: the API's attachments by id (re-read once, only when something must be fetched). */
    const fromApi = new Map<string, Map<string, MissiveAttachment>>();
    const out: Attachment[] = [];
    for (const attachment of attachments) {
      try {
        let source = attachment;
        if (options.urls === 'delivery' && (await sha256OfFile(attachmentPath(this.root, attachment))) === null) {
          let known = fromApi.get(attachment.emailId);
          if (known === undefined) {
            known = await this.apiAttachments(attachment.emailId, signal);
            fromApi.set(attachment.emailId, known);
          }
          source = withApiFacts(attachment, known.get(attachment.id));
        }
        const stored = await this.store(source, signal);
        // What the API said (URL, size, type) when it was asked: the truth, not the delivery's copy.
        out.push({ ...source, storedPath: stored.storedPath, sha256: stored.sha256 });
      } catch (err) {
        if (err instanceof ConnectorError && !err.retryable) {
          this.options.log.warn(
            { emailId: attachment.emailId, attachmentId: attachment.id, code: err.code, err },
            `attachment not stored: ${err.message}`,
          );
          out.push(attachment);
          continue;
        }
        if (options.lastAttempt === true) {
          this.options.log.warn(
            { emailId: attachment.emailId, attachmentId: attachment.id, err },
            'attachment content not stored on the event\'s last attempt; its metadata is kept (a later event or backfill of the message fetches it again)',
          );
          out.push(attachment);
          continue;
        }
        throw err;
      }
    }
    return out;
  }

  /** The attachments of message `emailId` as the API shows them now, by id (none when it is gone). */
  private async apiAttachments(emailId: string, signal?: AbortSignal): Promise<Map<string, MissiveAttachment>> {
    const messages = await this.options.fetcher.getMessages([emailId], signal);
    const message = messages.find((m) => m.id === emailId);
    return new Map((message?.attachments ?? []).map((a) => [a.id, a]));
  }

  /** Stores one attachment's content (see the header). Throws a ConnectorError when refused. */
  async store(attachment: Attachment, signal?: AbortSignal): Promise<Attachment> {
    const target = attachmentPath(this.root, attachment);
    const existing = await sha256OfFile(target);
    if (existing !== null) return { ...attachment, storedPath: target, sha256: existing };

    const { maxBytes } = this.options;
    if (attachment.size !== null && attachment.size > maxBytes) throw tooLarge(attachment, maxBytes, attachment.size);
    const { body, contentType, mediaType } = await this.download(attachment, signal);
    if (body.length > maxBytes) throw tooLarge(attachment, maxBytes, body.length);
    if (!contentTypeAgrees(mediaType, contentType)) {
      throw new ConnectorError(
        'CONN_ERR_ATTACHMENT_REJECTED',
        `attachment ${attachment.id} ("${attachment.filename ?? ''}") was served as ${contentType} but is ${mediaType}`,
        { details: { attachmentId: attachment.id, emailId: attachment.emailId, expected: mediaType, received: contentType } },
      );
    }
    await writeAtomically(target, body);
    return { ...attachment, storedPath: target, sha256: createHash('sha256').update(body).digest('hex') };
  }

  /** Downloads the content; on 403 (expired signed URL) refreshes the URL from the message, once. */
  private async download(attachment: Attachment, signal?: AbortSignal): Promise<{ body: Buffer; contentType: string | null; mediaType: string | null }> {
    const { fetcher, maxBytes } = this.options;
    if (attachment.url === null) {
      throw new ConnectorError('CONN_ERR_ATTACHMENT_REJECTED', `attachment ${attachment.id} has no download URL`, {
        details: { attachmentId: attachment.id, emailId: attachment.emailId },
      });
    }
    try {
      return { ...(await this.fetch(attachment.url, attachment, signal)), mediaType: attachment.mediaType };
    } catch (err) {
      if (!(err instanceof ConnectorError && err.status === 403)) throw err;
    }
    this.options.log.info({ emailId: attachment.emailId, attachmentId: attachment.id }, 'attachment URL expired; refreshing it from the message');
    const [message] = await fetcher.getMessages([attachment.emailId], signal);
    const fresh = message?.attachments?.find((a) => a.id === attachment.id);
    if (fresh === undefined || fresh.url === null || fresh.url === undefined) {
      throw new ConnectorError('CONN_ERR_ATTACHMENT_REJECTED', `attachment ${attachment.id} is no longer on message ${attachment.emailId}`, {
        details: { attachmentId: attachment.id, emailId: attachment.emailId },
      });
    }
    if (fresh.size !== null && fresh.size !== undefined && fresh.size > maxBytes) throw tooLarge(attachment, maxBytes, fresh.size);
    try {
      return { ...(await this.fetch(fresh.url, attachment, signal)), mediaType: mediaTypeOf(fresh) ?? attachment.mediaType };
    } catch (err) {
      if (err instanceof ConnectorError && err.status === 403) {
        throw new ConnectorError('CONN_ERR_ATTACHMENT_REJECTED', `attachment ${attachment.id}: download refused (403) even after refreshing its URL`, {
          cause: err,
          status: 403,
          details: { attachmentId: attachment.id, emailId: attachment.emailId },
        });
      }
      throw err;
    }
  }

  private async fetch(url: string, attachment: Attachment, signal?: AbortSignal): Promise<{ body: Buffer; contentType: string | null }> {
    const { fetcher, maxBytes } = this.options;
    try {
      return await fetcher.downloadAttachment(url, maxBytes, signal);
    } catch (err) {
      if (err instanceof ConnectorError && err.code === 'CONN_ERR_HTTP_BAD_RESPONSE' && isOverCap(err)) {
        throw tooLarge(attachment, maxBytes, null, err);
      }
      throw err;
    }
  }
}

/**
 * The attachment with the URL, size and type the API gives for it; refused when the API does not show
 * it (the delivery's URL is never used).
 */
function withApiFacts(attachment: Attachment, api: MissiveAttachment | undefined): Attachment {
  if (api === undefined || typeof api.url !== 'string' || api.url === '') {
    throw new ConnectorError(
      'CONN_ERR_ATTACHMENT_REJECTED',
      `attachment ${attachment.id} is not on message ${attachment.emailId} as Missive's API shows it; URLs from a delivery are never fetched`,
      { details: { attachmentId: attachment.id, emailId: attachment.emailId } },
    );
  }
  return { ...attachment, url: api.url, size: api.size ?? attachment.size, mediaType: mediaTypeOf(api) ?? attachment.mediaType };
}

/** Whether the HTTP core refused a download for going over its byte cap. */
function isOverCap(err: ConnectorError): boolean {
  return err.details?.overCap === true || /cap|exceed|larger|too large|limit/i.test(err.message);
}

function tooLarge(attachment: Attachment, maxBytes: number, size: number | null, cause?: unknown): ConnectorError {
  const seen = size === null ? 'more than that' : `${size} bytes`;
  return new ConnectorError(
    'CONN_ERR_ATTACHMENT_TOO_LARGE',
    `attachment ${attachment.id} ("${attachment.filename ?? ''}") is ${seen}; ATTACHMENTS_MAX_BYTES is ${maxBytes}`,
    { cause, details: { attachmentId: attachment.id, emailId: attachment.emailId, maxBytes, size } },
  );
}

/** sha256 of a regular file, or null when there is none. */
async function sha256OfFile(file: string): Promise<string | null> {
  try {
    if (!(await stat(file)).isFile()) return null;
  } catch {
    return null;
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Writes `body` to a temp file beside `target`, fsyncs, renames into place and fsyncs the folder. */
async function writeAtomically(target: string, body: Buffer): Promise<void> {
  const folder = path.dirname(target);
  await mkdir(folder, { recursive: true });
  const temp = path.join(folder, `.tmp-${randomUUID()}`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  const dir = await open(folder, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
