/**
 * FileQueue: the embedded durable queue (QUEUE_BACKEND=file), in `${DATA_DIR}/queue`.
 *
 * Files
 *   inbox.jsonl      an append-only log of sealed records (record.ts): a header, event copies, acks,
 *                    dead-letter marks. It is the only truth about what is pending.
 *   offset.json      where the consumed prefix of inbox.jsonl ends: {v, q, gen, offset, next, at}. A hint
 *                    that saves re-reading done records on open; always replaced whole (temp, fsync,
 *                    rename, directory fsync), never rewritten in place, and ignored unless its queue
 *                    uid and generation match the inbox header.
 *   dlq.jsonl        dead letters (dead-letters.ts).
 *   quarantine.jsonl unreadable lines set aside, byte for byte (base64), with where and why.
 *   write.lock       held for each write to any of these files; kept from one group commit to the next
 *                    while commits follow each other and nobody else waits for it (write.lock.wait).
 *   consumer.lock    held by the one process that claims (long; see file-lock.ts).
 *
 * An event copy's life (one line `e` in the inbox; a slot in memory, slot-table.ts):
 *
 *                enqueue, replay          claim               ack: an `ack` line
 *   (nothing) ─────────────────▶ PENDING ─────────▶ IN FLIGHT ───────────────────────────▶ DONE
 *                                 ▲   ▲               │  │  │
 *                                 │   └── restart ────┘  │  └─ deadLetter: a line in dlq.jsonl (fsynced),
 *                                 │                      │     then a `dead` line ─────────────────▶ DONE
 *                    backoff ends │                retry │
 *                                 │                      ▼
 *                                 └───────────── DELAYED: a NEW copy (attempt+1, or the same attempt
 *                                                when the retry spends none; not-before; `sup` = the old
 *                                                seq) in ONE line; writing it is what makes the old
 *                                                copy DONE, so a crash leaves one or the other, not both
 *                                                and not neither.
 *
 * Claims are memory only: a restart makes every IN FLIGHT copy PENDING again (at least once).
 * Acks and retries are written at once (a process crash keeps them: they are in the page cache) and
 * fsynced by the next group commit or the next checkpoint (`checkpointIntervalMs`); power loss in that
 * window can only hand out again something already handled. offset.json is written only after that
 * fsync, so it never runs ahead of the log. Dead letters reach dlq.jsonl (fsynced) before the inbox
 * says `dead`; on open the consumer finishes any move a crash interrupted (a live copy whose key is in
 * dlq.jsonl is marked dead). A replay appends the replayed copies (`rep` = the dead letter's key) and
 * fsyncs them before rewriting dlq.jsonl without them, under one hold of the write lock; a crash
 * between the two is finished by the consumer (a dead letter whose key was replayed is dropped). A
 * replay first finishes any interrupted move among the dead letters it takes (their `dead` lines go in
 * the same write as the replayed copies): once a dead letter has left dlq.jsonl, nobody could tell that
 * its live inbox copy was half-moved, and the event would run twice.
 *
 * Writing (group commit). Every write goes through one in-process pipeline. Writes that arrive while a
 * batch is being written, and all those made in the same turn of the event loop, go together in the
 * next batch: one write(2), one fsync for any number of enqueues (`counters.fsyncs` shows it; under
 * the ingest benchmark's load a commit carries about 17 deliveries, 9 before commits waited for the
 * end of the loop's turn). Under the write lock the writer first reads whatever other processes
 * appended (so sequence numbers stay increasing), sets aside a torn tail (bytes after the last newline:
 * a writer that died mid-write) and truncates it, then appends. That critical section (lock, stat,
 * write, unlock) uses synchronous syscalls: each costs microseconds, and through the thread pool every
 * step waited for the event loop to come round again, behind the deliveries being parsed. While
 * commits follow each other the lock is kept from one to the next (a lease: withWriteLock): a
 * stream of deliveries takes it about once a second instead of once a commit, and lets it go at the
 * end of a commit when another process waits. The fsync is outside the critical section,
 * asynchronous; that is safe because a compaction copies the old file's tail under the lock, from the
 * page cache, into a file it fsyncs before renaming. Commits are pipelined (drain): the next batch is
 * written while the previous fsync is in flight, and a commit is confirmed only once its own fsync and
 * the one before it succeeded.
 *
 * Several processes. `serve` appends and `work` claims, acks and compacts. Any instance keeps the same
 * index by tailing inbox.jsonl; a process that is not the consumer reports in-flight events as pending.
 * The consumer lock is taken on the first `claim` (or `tryConsume`, which a worker calls before it starts and, on
 * standby, every second while another live process holds it). When inbox.jsonl is replaced (a compaction), other
 * processes notice the new inode and re-read it.
 *
 * Compaction (consumer only), when done bytes pass `compactThresholdBytes` and outweigh live ones:
 *   A. without any lock: write inbox.jsonl.compact = new header (gen+1, same uid, next seq) + every copy
 *      not done, byte for byte;
 *   B. under the write lock: copy the old file's tail written since A began (acks, new events), fsync,
 *      rename over inbox.jsonl, fsync the directory, re-point the index, write offset.json.
 *   A crash before the rename leaves the old file whole (the consumer deletes the .compact on open);
 *   after it, the new file is complete and durable, and the stale offset.json is ignored (generation).
 *
 * Reading never loads the file: the index holds 34 bytes a copy; bodies are read on claim and peek.
 * Each slot knows its copy's source as a one-byte code (see sourceCode), so a claim limited to some
 * sources (a worker's lane for one vendor) passes over the others' slots without reading their lines;
 * where the scan of each source may start is remembered per source (firstLiveOf), so the lane of a
 * quiet source does not walk the backlog of a busy or paused one at every claim.
 * Unreadable lines anywhere are skipped with a log line and set aside in quarantine.jsonl by the
 * consumer; the next compaction drops them. Everything before and after them is kept.
 *
 * The four ways a public Python implementation of this design lost data, and why this one does not:
 * 1. a crash between compaction's rename and the offset reset: offset.json names the queue uid and the
 *    generation; for any other generation it is ignored and the file is read from its header;
 * 2. compaction racing appends: every append and compaction's swap hold the write lock, and the swap
 *    first copies every byte appended since the copy began;
 * 3. a retry re-append not atomic with the offset move: a retry is one line (above);
 * 4. an offset file rewritten in place: it is replaced whole, and it is only a hint.
 * It also serialised every request on one lock and one fsync; group commit shares them.
 *
 * Crash points (`crashPoint` option) are named moments where tests (or the SIGKILL harness) stop the
 * queue as if the process had died there; see CRASH_POINTS.
 */
import { randomBytes } from 'node:crypto';
import { statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ConnectorError, type ErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { QueueEvent, checkQueueEvent, eventJson, type SourceName } from '../model.ts';
import type { ClaimedEvent, ClaimOptions, DeadLetter, DeadLetterFilter, Queue, QueueStats, RetryOptions } from './queue.ts';
import { deadLetterEventJson, deadLetterKey, matchesFilter, readDeadLetterFile, sealDeadLetter, toDeadLetter, uniqueByKey, type StoredDeadLetter, type UnreadableLine } from './dead-letters.ts';
import { appendDurably, fsyncDir, replaceFile, writeAll, writeAllSync } from '../durable-file.ts';
import { describeHolder, FileLock, type Owner } from './file-lock.ts';
import { BufferedWriter, lastLineEnd, readAt, readLines } from './line-reader.ts';
import {
  checkLine,
  hashKey,
  lineType,
  parseEventHead,
  parseLine,
  sealEvent,
  sealObject,
  storedEventJson,
  type DoneRecord,
  type EventDraft,
  type EventHead,
  type EventRecord,
  type HeaderRecord,
} from './record.ts';
import { SLOT_CLAIMED, SLOT_DONE, SLOT_LIVE, SlotTable } from './slot-table.ts';

/** Named moments at which a test can stop the queue as if the process died there. */
export const CRASH_POINTS = [
  /** A batch is written to inbox.jsonl, not yet fsynced (write lock still held). */
  'append:written',
  /** A batch is fsynced; its callers have not been told. */
  'append:synced',
  /** A dead letter is fsynced in dlq.jsonl; the inbox does not yet say `dead`. */
  'dead-letter:dlq-synced',
  /** Replayed copies are fsynced in the inbox; dlq.jsonl still holds them. */
  'replay:inbox-synced',
  /** The new dlq.jsonl is a durable temp file, not yet renamed. */
  'replay:dlq-tmp-synced',
  /** The new offset.json is a durable temp file, not yet renamed. */
  'checkpoint:tmp-synced',
  /** offset.json was renamed; the directory is not yet fsynced. */
  'checkpoint:renamed',
  /** Compaction phase A wrote the live copies to inbox.jsonl.compact. */
  'compact:copied',
  /** inbox.jsonl.compact is complete and fsynced, not yet renamed. */
  'compact:synced',
  /** inbox.jsonl.compact was renamed over inbox.jsonl; the directory is not yet fsynced. */
  'compact:renamed',
  /** The rename is durable; offset.json still names the old generation. */
  'compact:dir-synced',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export interface FileQueueOptions {
  /** The queue directory (`${DATA_DIR}/queue`); created if missing. */
  dir: string;
  log: Logger;
  lifecycle?: Lifecycle;
  /**
   * Compact inbox.jsonl once this many of its bytes belong to done records (and they outweigh the live
   * ones). Default 64 MiB.
   */
  compactThresholdBytes?: number;
  /** Write offset.json after this many copies are done. Default 1000. */
  checkpointEveryEvents?: number;
  /** ...or this long after the first copy done since the last one, ms. Default 1 s. */
  checkpointIntervalMs?: number;
  /** A lock not refreshed for this long may be taken over, ms. Default 10 s. */
  lockStaleMs?: number;
  /** How long a write waits for the write lock before failing, ms. Default lockStaleMs + 5 s. */
  lockWaitMs?: number;
  /** How often a waiting worker looks for appends by other processes (besides fs.watch), ms. Default 500. */
  pollIntervalMs?: number;
  /** Let concurrent writes share one write and one fsync. Default true (false: for benchmarks). */
  groupCommit?: boolean;
  /** Called at each crash point; a throw stops the queue there as if the process had died. */
  crashPoint?: (point: CrashPoint) => void;
  /** Awaited before each fsync of inbox.jsonl; a rejection stands for the fsync failing (tests: EIO). */
  beforeInboxSync?: () => Promise<void>;
}

/** What the queue has done since it was opened (for tests, benchmarks and metrics). */
export interface FileQueueCounters {
  /** write(2) batches to inbox.jsonl. */
  writes: number;
  /** Records in those batches. */
  records: number;
  /** fsyncs of inbox.jsonl. */
  fsyncs: number;
  /** Times the write lock was taken (fewer than `writes` while group commits keep it: a lease). */
  writeLocks: number;
  compactions: number;
  checkpoints: number;
  /** Lines set aside in quarantine.jsonl. */
  quarantined: number;
}

interface Claim {
  slot: number;
  seq: number;
  id: string;
  src: string;
  key: string | null;
  receivedAt: number;
  attempt: number;
  firstAttemptAt: number;
  /** The event as stored (plain JSON), for the retry copy or the dead letter. */
  ev: Record<string, unknown>;
  /** The copy's sealed line as read on claim, and its parsed `err`: the event's stored text (eventText). */
  line: Buffer;
  err: unknown;
}

type PendingRecord = { kind: 'event'; draft: EventDraft } | { kind: 'done'; t: 'ack' | 'dead'; seq: number; id: string };

/** What a group commit's write did, for its confirmation. */
interface Written {
  durable: boolean;
  /** The sources of the event copies written (empty: none). */
  eventSources: ReadonlySet<string>;
  wroteDone: boolean;
}

interface AppendOp {
  kind: 'append';
  records: PendingRecord[];
  dlqLines: Buffer[];
  durable: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface ExclusiveOp {
  kind: 'exclusive';
  run: () => Promise<void>;
  reject: (err: unknown) => void;
}

interface Fault {
  offset: number;
  length: number;
  fault: string;
}

type State = 'open' | 'closing' | 'closed' | 'crashed';

const HEADER_PROBE = 64 * 1024;
const WRITE_CHUNK = 4 << 20;
/** Group commits written but not yet confirmed by their fsync, at most (drain). */
const SYNCS_IN_FLIGHT = 2;
/** Longest the write lock is kept from one group commit to the next before it is let go and taken anew, ms. */
const WRITE_LEASE_MS = 1000;
const COPY_CHUNK = 1 << 20;
/** The highest source code a slot can hold (SlotTable.source is one byte). */
const MAX_SOURCE_CODE = 255;

/** Serialises async sections (never nest `run` on one mutex). */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => {});
    return result;
  }
}

export class FileQueue implements Queue {
  readonly backend = 'file' as const;
  readonly dir: string;
  readonly counters: FileQueueCounters = { writes: 0, records: 0, fsyncs: 0, writeLocks: 0, compactions: 0, checkpoints: 0, quarantined: 0 };

  private readonly log: Logger;
  private readonly lifecycle: Lifecycle | undefined;
  private readonly files: Record<'inbox' | 'offset' | 'dlq' | 'quarantine' | 'compact' | 'writeLock' | 'consumerLock', string>;
  private readonly compactThresholdBytes: number;
  private readonly checkpointEveryEvents: number;
  private readonly checkpointIntervalMs: number;
  private readonly lockStaleMs: number;
  private readonly pollIntervalMs: number;
  private readonly groupCommit: boolean;
  private readonly crashPoint: ((point: CrashPoint) => void) | undefined;
  private readonly beforeInboxSync: (() => Promise<void>) | undefined;
  /** Resolves drain()'s wait for an op or a confirmation (wakeDrain). */
  private drainAsleep: (() => void) | null = null;
  private readonly writeLock: FileLock;
  private state: State = 'open';
  private closing: Promise<void> | null = null;

  // The index of inbox.jsonl (every instance keeps one).
  private readonly viewMutex = new Mutex();
  private handle: FileHandle | null = null;
  private ino = -1;
  private uid: string | null = null;
  private gen = 0;
  private headerEnd = 0;
  /** Offset just past the last complete line indexed. */
  private viewEnd = 0;
  private nextSeq = 1;
  private maxSeq = 0;
  private table = new SlotTable();
  /** Not-before times (ms) of retried copies, by slot. */
  private notBefore = new Map<number, number>();
  /** Copies whose seq arrived out of order (only a second writer with a compromised lock makes them). */
  private strays = new Map<number, Array<{ slot: number; id: string }>>();
  private liveCount = 0;
  private liveBytes = 0;
  private claimedCount = 0;
  /** No LIVE slot lies before this one. */
  private firstLive = 0;
  /** By source code: no LIVE slot of that source lies before this one. */
  private firstLiveOf = new Float64Array(MAX_SOURCE_CODE + 1);
  /**
   * Source names to the codes the slot table keeps (SlotTable.source): each name gets the next code,
   * 1..MAX_SOURCE_CODE, the first time a copy of it is indexed, and keeps it while this object lives
   * (across re-reads of the file). A name seen after MAX_SOURCE_CODE others shares code 0, and a claim
   * limited to sources reads such a slot's line to tell (never, with the sources there are).
   */
  private readonly sourceCodes = new Map<string, number>();
  /** Some slot was given code 0 (sourceCodes was full). */
  private uncodedSources = false;
  /** Dead-letter keys that replayed copies in the index came from. */
  private replayKeys = new Set<string>();
  /** ...that dlq.jsonl may still hold (a replay that crashed, or one by another process). */
  private unrepairedReplays = new Set<string>();
  /** Unreadable lines waiting to be set aside (by the consumer). */
  private faults: Fault[] = [];
  private readonly reported = new Set<string>();
  private changes = 0;
  private oldestCache: { changes: number; value: number | null } = { changes: -1, value: null };
  private dlqCache: { ino: number; end: number; keys: Set<string> } = { ino: -1, end: 0, keys: new Set() };

  // The consumer's state.
  private consumerLock: FileLock | null = null;
  private consumerStarting: Promise<void> | null = null;
  private consumerReady = false;
  private readonly claims = new Map<string, Claim>();
  private doneSinceCheckpoint = 0;
  private lastCheckpoint = '';
  private checkpointTimer: NodeJS.Timeout | null = null;
  private compaction: Promise<void> | null = null;
  /** Set after lines were quarantined: compact whatever the thresholds. */
  private compactSoon = false;

  // The write pipeline.
  private readonly ops: Array<AppendOp | ExclusiveOp> = [];
  private draining: Promise<void> | null = null;

  // Waiting for work. `version` counts the copies indexed, `versionOf` those of each source code, so
  // that a wait for some sources neither sleeps through their arrivals nor wakes for another's.
  private version = 0;
  private readonly versionOf = new Float64Array(MAX_SOURCE_CODE + 1);
  /**
   * Per `sources` of a claim (claimKey), their version (versionFor) at its last empty claim; and the
   * whole version at the last empty claim of any (for a wait with sources no claim has asked for).
   */
  private readonly emptyClaimVersions = new Map<string, number>();
  private lastEmptyClaimVersion = -1;
  /** Waiters, with the source codes they wait for (null: any). */
  private readonly waiters = new Map<() => void, Uint8Array | null>();
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;

  private constructor(options: FileQueueOptions) {
    this.dir = path.resolve(options.dir);
    this.log = options.log;
    this.lifecycle = options.lifecycle;
    const at = (name: string) => path.join(this.dir, name);
    this.files = {
      inbox: at('inbox.jsonl'),
      offset: at('offset.json'),
      dlq: at('dlq.jsonl'),
      quarantine: at('quarantine.jsonl'),
      compact: at('inbox.jsonl.compact'),
      writeLock: at('write.lock'),
      consumerLock: at('consumer.lock'),
    };
    this.compactThresholdBytes = options.compactThresholdBytes ?? 64 * 1024 * 1024;
    this.checkpointEveryEvents = options.checkpointEveryEvents ?? 1000;
    this.checkpointIntervalMs = options.checkpointIntervalMs ?? 1000;
    this.lockStaleMs = options.lockStaleMs ?? 10_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.groupCommit = options.groupCommit ?? true;
    this.crashPoint = options.crashPoint;
    this.beforeInboxSync = options.beforeInboxSync;
    this.writeLock = new FileLock(this.files.writeLock, {
      name: 'write',
      staleMs: this.lockStaleMs,
      waitMs: options.lockWaitMs ?? this.lockStaleMs + 5_000,
      log: this.log,
    });
  }

  /** Opens (creating if needed) the queue in `options.dir`, recovering from whatever a crash left. */
  static async open(options: FileQueueOptions): Promise<FileQueue> {
    const queue = new FileQueue(options);
    try {
      await queue.init();
    } catch (err) {
      await queue.handle?.close().catch(() => {});
      throw err;
    }
    return queue;
  }

  private async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    if (await inboxMissing(this.files.inbox)) await this.withWriteLock(() => this.createInboxIfMissing());
    await this.viewMutex.run(() => this.reload());
    await this.withWriteLock(() =>
      this.viewMutex.run(async () => {
        await removeMatching(this.dir, /^(dlq\.jsonl|inbox\.jsonl)\.\d+\.tmp$/);
        await this.refreshLocked();
      }),
    );
  }

  // ───────────────────────────── the Queue contract ─────────────────────────────

  async enqueue(events: readonly QueueEvent[]): Promise<void> {
    this.assertOpen();
    if (events.length === 0) return;
    const records: PendingRecord[] = events.map((input) => {
      const parsed = checkQueueEvent(input);
      if (!parsed.success) {
        const id = typeof (input as { id?: unknown } | null)?.id === 'string' ? (input as { id: string }).id : '?';
        throw new ConnectorError('CONN_ERR_EVENT_INVALID', `cannot enqueue event ${id}: ${parsed.error.issues[0]?.message ?? 'invalid'}`, { details: { eventId: id } });
      }
      const ev = parsed.data;
      let evJson: string;
      try {
        evJson = eventJson(ev);
      } catch (err) {
        // The event's content, not the storage: a cycle, a BigInt, nesting too deep for JSON.stringify.
        throw new ConnectorError('CONN_ERR_EVENT_INVALID', `cannot enqueue event ${ev.id}: its payload cannot be written as JSON (${(err as Error).message})`, {
          cause: err,
          details: { eventId: ev.id },
        });
      }
      return { kind: 'event', draft: { id: ev.id, src: ev.source, k: ev.entityKey, r: ev.receivedAt.getTime(), a: 1, evJson } };
    });
    await this.append(records, [], true);
    this.lifecycle?.emit('queue:appended', { count: events.length });
  }

  async claim(options: ClaimOptions = {}): Promise<ClaimedEvent[]> {
    this.assertOpen();
    const limit = options.limit ?? 1;
    if (limit <= 0) return [];
    await this.becomeConsumer();
    return this.viewMutex.run(async () => {
      await this.refreshUnlocked();
      const handle = this.handle;
      if (handle === null) return [];
      const now = Date.now();
      const busy = options.busyKeys ?? new Set<string>();
      const busyHashes = new Set<number>();
      for (const key of busy) busyHashes.add(hashKey(key));
      // An entity with an event in flight here is busy too, whatever the caller passed.
      for (const c of this.claims.values()) if (c.key !== null) busyHashes.add(hashKey(c.key));
      // After the refresh, which may have indexed a source's first copies.
      const only = options.sources === undefined ? null : this.sourceFilter(options.sources);
      const mask = only === null ? null : only.mask;
      const claimed: ClaimedEvent[] = [];
      const t = this.table;
      let i = this.firstToScan(only);
      while (claimed.length < limit && i < t.end) {
        // Pick candidates from the index alone, then read their lines (adjacent ones in one read).
        // Only LIVE slots of the sources asked for are visited: nextLive passes over the rest.
        const want = limit - claimed.length;
        const picks: number[] = [];
        for (i = t.nextLive(i, mask); i < t.end; i = t.nextLive(i + 1, mask)) {
          const nb = this.notBefore.get(i);
          if (nb !== undefined && nb > now) continue;
          // Equal keys hash equally, so a hash not in the set proves the key free; a hash in it is
          // (almost always) a busy key, and at worst waits for that key to come free.
          const h = t.keyHash(i);
          if (busyHashes.has(h)) continue;
          if (h !== 0) busyHashes.add(h); // one event per entity per claim
          picks.push(i);
          if (picks.length === want) {
            i++;
            break;
          }
        }
        if (picks.length === 0) break;
        const lines = await readSlots(handle, t, picks);
        for (const [k, slot] of picks.entries()) {
          const line = lines[k] as Buffer;
          let record: EventRecord;
          try {
            const fault = checkLine(line, 0, line.length - 1);
            if (fault !== null) throw new Error(fault);
            record = parseLine<EventRecord>(line, 0, line.length - 1);
          } catch (err) {
            this.setAside(slot, `unreadable on claim: ${(err as Error).message}`);
            continue;
          }
          if (this.claims.has(record.id)) continue; // the same event twice in the file: one at a time
          if (only !== null && t.source(slot) === 0 && !only.names.includes(record.src)) continue; // code 0: any source
          const parsed = QueueEvent.safeParse(record.ev);
          if (!parsed.success) {
            this.setAside(slot, `not an event: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
            continue;
          }
          t.setState(slot, SLOT_CLAIMED);
          this.claimedCount++;
          this.changes++;
          this.claims.set(record.id, {
            slot,
            seq: record.seq,
            id: record.id,
            src: record.src,
            key: record.k,
            receivedAt: record.r,
            attempt: record.a,
            firstAttemptAt: record.fa ?? now,
            ev: record.ev,
            line,
            err: record.err,
          });
          claimed.push({ event: parsed.data, attempt: record.a, lastError: (record.err as ErrorRecord | undefined) ?? null });
        }
      }
      if (claimed.length === 0) {
        this.emptyClaimVersions.set(claimKey(options.sources), this.versionFor(mask));
        this.lastEmptyClaimVersion = this.version;
      }
      return claimed;
    });
  }

  /**
   * A claim's `sources` as a mask over source codes, and the codes it names. A name no copy has had yet
   * has no code and matches nothing, unless names have overflowed to code 0 (then code 0 is in the mask,
   * and claim checks such a slot's line). Holds viewMutex.
   */
  private sourceFilter(sources: readonly string[]): { mask: Uint8Array; codes: number[]; names: readonly string[] } {
    const mask = new Uint8Array(MAX_SOURCE_CODE + 1);
    const codes: number[] = [];
    for (const name of sources) {
      const code = this.sourceCodes.get(name) ?? (this.uncodedSources ? 0 : -1);
      if (code < 0 || mask[code] === 1) continue;
      mask[code] = 1;
      codes.push(code);
    }
    return { mask, codes, names: sources };
  }

  /**
   * Where a claim's scan starts: the first LIVE slot (of the sources asked for, if any), found from the
   * hints and remembered in them. A scan limited to some sources moves only their hints: a LIVE slot of
   * another source may lie before where it starts. Holds viewMutex.
   */
  private firstToScan(only: { mask: Uint8Array; codes: number[] } | null): number {
    const t = this.table;
    const hints = this.firstLiveOf;
    if (only === null) {
      const i = t.nextLive(this.firstLive, null);
      this.firstLive = i;
      for (let c = 0; c <= this.sourceCodes.size; c++) if ((hints[c] as number) < i) hints[c] = i;
      return i;
    }
    if (only.codes.length === 0) return t.end;
    let from = Infinity;
    for (const c of only.codes) from = Math.min(from, hints[c] as number);
    const i = t.nextLive(Math.max(from, this.firstLive), only.mask);
    for (const c of only.codes) if ((hints[c] as number) < i) hints[c] = i;
    // No LIVE slot of any source lies before the least of the sources' hints.
    let least = this.uncodedSources ? (hints[0] as number) : Infinity;
    for (let c = 1; c <= this.sourceCodes.size; c++) least = Math.min(least, hints[c] as number);
    if (least !== Infinity && least > this.firstLive) this.firstLive = least;
    return i;
  }

  /** The code the slot table keeps for a copy of source `name` (see sourceCodes). */
  private sourceCode(name: string): number {
    const code = this.sourceCodes.get(name);
    if (code !== undefined) return code;
    if (this.sourceCodes.size >= MAX_SOURCE_CODE) {
      this.uncodedSources = true;
      return 0;
    }
    this.sourceCodes.set(name, this.sourceCodes.size + 1);
    return this.sourceCodes.size;
  }

  async ack(eventId: string): Promise<void> {
    this.assertOpen();
    const claim = this.claimed(eventId, 'ack');
    await this.append([{ kind: 'done', t: 'ack', seq: claim.seq, id: claim.id }], [], false);
  }

  async retry(eventId: string, error: ErrorRecord, options: RetryOptions): Promise<void> {
    this.assertOpen();
    const claim = this.claimed(eventId, 'retry');
    const draft: EventDraft = {
      id: claim.id,
      src: claim.src,
      k: claim.key,
      r: claim.receivedAt,
      // An attempt that failed for a reason outside the event (its vendor paused) is not counted.
      a: options.spendAttempt === false ? claim.attempt : claim.attempt + 1,
      nb: Date.now() + Math.max(0, options.delayMs),
      fa: claim.firstAttemptAt,
      sup: claim.seq,
      evJson: this.eventText(claim),
      errJson: errorText(error),
    };
    await this.append([{ kind: 'event', draft }], [], false);
  }

  async deadLetter(eventId: string, error: ErrorRecord): Promise<void> {
    this.assertOpen();
    const claim = this.claimed(eventId, 'dead-letter');
    const line = sealDeadLetter({
      q: this.uid ?? '',
      seq: claim.seq,
      id: claim.id,
      src: claim.src,
      attempts: claim.attempt,
      errorJson: errorText(error),
      firstAttemptAt: new Date(claim.firstAttemptAt).toISOString(),
      deadLetteredAt: new Date().toISOString(),
      eventJson: this.eventText(claim),
    });
    await this.append([{ kind: 'done', t: 'dead', seq: claim.seq, id: claim.id }], [line], false);
  }

  /**
   * A claimed event as JSON for its next line (a retry copy, a dead letter), in a way no event's
   * content can make fail: the text its line stored, byte for byte (no second serialisation, and
   * JSON.stringify cannot write everything JSON.parse reads: a payload nested thousands of levels);
   * else serialised again; else, if even that fails, the event's identity with its payload replaced by
   * a note saying why — logged at error level, never silently.
   */
  private eventText(claim: Claim): string {
    const stored = storedEventJson(claim.line, claim.err);
    if (stored !== null) return stored;
    try {
      return JSON.stringify(claim.ev);
    } catch (err) {
      const reason = `the payload could not be written as JSON (${err instanceof Error ? err.message : String(err)}); it was in inbox.jsonl at seq ${claim.seq}`;
      this.log.error({ eventId: claim.id, seq: claim.seq, err }, `event ${claim.id}: ${reason}; kept without its payload`);
      const { id, source, type, entityKey, origin, receivedAt } = claim.ev;
      return JSON.stringify({ id, source, type, entityKey, origin, receivedAt, payload: { payloadLost: reason } });
    }
  }

  async stats(): Promise<QueueStats> {
    if (this.state === 'closed' || this.state === 'crashed') throw closedError(this.state);
    await this.viewMutex.run(() => this.refreshUnlocked());
    const now = Date.now();
    let delayed = 0;
    for (const [slot, nb] of this.notBefore) if (nb > now && this.table.state(slot) === SLOT_LIVE) delayed++;
    const oldest = this.oldestReceivedAt();
    return {
      pending: this.liveCount - this.claimedCount - delayed,
      inFlight: this.claimedCount,
      delayed,
      deadLettered: await this.countDeadLetters(),
      oldestPendingAgeMs: oldest === null ? null : Math.max(0, now - oldest),
    };
  }

  async peek(limit: number): Promise<QueueEvent[]> {
    this.assertOpen();
    return this.viewMutex.run(async () => {
      await this.refreshUnlocked();
      const out: QueueEvent[] = [];
      const t = this.table;
      const handle = this.handle;
      if (handle === null || limit <= 0) return out;
      // Newest by receipt time, not by place in the file: a retry's copy is appended at the end but
      // keeps its event's receipt time. One pass over the slot table's times keeps the `limit` newest.
      const newest: number[] = [];
      for (let i = t.end - 1; i >= t.start; i--) {
        if (t.state(i) === SLOT_DONE) continue;
        const at = t.receivedAt(i);
        if (newest.length === limit && at <= t.receivedAt(newest[limit - 1] as number)) continue;
        let k = newest.length;
        while (k > 0 && t.receivedAt(newest[k - 1] as number) < at) k--;
        newest.splice(k, 0, i);
        if (newest.length > limit) newest.pop();
      }
      for (const i of newest) {
        const line = await readAt(handle, t.offset(i), t.length(i));
        if (checkLine(line, 0, line.length - 1) !== null) continue;
        try {
          const parsed = QueueEvent.safeParse(parseLine<EventRecord>(line, 0, line.length - 1).ev);
          if (parsed.success) out.push(parsed.data);
        } catch {
          // unreadable: the consumer sets it aside
        }
      }
      return out;
    });
  }

  async listDeadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]> {
    this.assertOpen();
    await this.viewMutex.run(() => this.refreshUnlocked());
    const everything = filter === undefined || (filter.source === undefined && filter.ids === undefined);
    const stored = await readDeadLetterFile(this.files.dlq);
    return uniqueByKey(stored.filter((d) => !this.replayKeys.has(d.key) && (everything || matchesFilter(d, filter)))).map(toDeadLetter);
  }

  async replayDeadLetters(filter: DeadLetterFilter, options: { dryRun?: boolean } = {}): Promise<DeadLetter[]> {
    return this.onDeadLetters(filter, options, 'replayed', 'to the inbox', async (chosen, stored, faults) => {
      // A chosen dead letter whose inbox copy is still live is a move a crash interrupted (dlq.jsonl
      // written, the inbox's `dead` line not): the consumer would finish it on open, but only while
      // the dead letter is still in dlq.jsonl, and this replay is about to take it out. So finish it
      // here first, in the same write as the replayed copies (the `dead` lines before them): the
      // original never comes back beside its replay, whoever replays and whether or not a worker runs.
      const interrupted = this.unfinishedMoves(chosen);
      if (interrupted.length > 0) this.log.warn({ count: interrupted.length }, 'finished moving dead letters that a crash interrupted, before replaying them');
      const replayed: PendingRecord[] = chosen.map((d) => ({
        kind: 'event',
        draft: {
          id: d.id,
          src: d.src,
          k: (d.event.entityKey as string | null | undefined) ?? null,
          r: Date.parse(String(d.event.receivedAt)),
          a: 1,
          rep: d.key,
          evJson: deadLetterEventJson(d),
        },
      }));
      await this.writeRecordsLocked([...interrupted, ...replayed]);
      await this.syncInbox();
      this.crash('replay:inbox-synced');
      await this.rewriteDeadLetters(stored, faults);
    });
  }

  /**
   * Rewrites dlq.jsonl without the chosen dead letters, under the write lock. A chosen one whose inbox
   * copy is still live (a move a crash interrupted: see replayDeadLetters) gets its `dead` line first,
   * fsynced before the rewrite: otherwise, with its dead letter gone, nothing would tell the consumer
   * that the live copy was dead-lettered, and the discarded event would be handed out again.
   */
  async discardDeadLetters(filter: DeadLetterFilter, options: { dryRun?: boolean } = {}): Promise<DeadLetter[]> {
    return this.onDeadLetters(filter, options, 'discarded', '', async (chosen, stored, faults) => {
      const interrupted = this.unfinishedMoves(chosen);
      if (interrupted.length > 0) {
        this.log.warn({ count: interrupted.length }, 'finished moving dead letters that a crash interrupted, before discarding them');
        await this.writeRecordsLocked(interrupted);
        await this.syncInbox();
      }
      await this.rewriteDeadLetters(stored, faults, new Set(chosen.map((d) => d.key)));
    });
  }

  /**
   * What replay and discard share: the dead letters matching `filter` (one per dead letter even if
   * dlq.jsonl holds it twice: a move written there and tried again after its inbox half failed),
   * listed for a dry run; otherwise handed to `act` under the write lock and the view mutex, with the
   * file as read (and its unreadable lines) for the rewrite, and one log line for what was done.
   */
  private async onDeadLetters(
    filter: DeadLetterFilter,
    options: { dryRun?: boolean },
    done: string,
    where: string,
    act: (chosen: StoredDeadLetter[], stored: StoredDeadLetter[], faults: UnreadableLine[]) => Promise<void>,
  ): Promise<DeadLetter[]> {
    this.assertOpen();
    if (options.dryRun === true) {
      await this.viewMutex.run(() => this.refreshUnlocked());
      const stored = await readDeadLetterFile(this.files.dlq);
      return uniqueByKey(stored.filter((d) => !this.replayKeys.has(d.key) && matchesFilter(d, filter))).map(toDeadLetter);
    }
    return this.exclusive(async () => {
      await this.viewMutex.run(() => this.refreshUnlocked());
      const chosen = await this.withWriteLock(() =>
        this.viewMutex.run(async () => {
          await this.refreshLocked();
          const faults: UnreadableLine[] = [];
          const stored = await readDeadLetterFile(this.files.dlq, (f) => faults.push(f));
          const matching = uniqueByKey(stored.filter((d) => !this.replayKeys.has(d.key) && matchesFilter(d, filter)));
          if (matching.length > 0) await act(matching, stored, faults);
          return matching;
        }),
      );
      if (chosen.length > 0) this.log.info({ count: chosen.length, filter }, `${done} ${chosen.length} dead letter(s)${where === '' ? '' : ` ${where}`}`);
      return chosen.map(toDeadLetter);
    });
  }

  /**
   * One try at the consumer lock (see Queue.tryConsume): a live holder is answered with its name, a
   * holder that is gone (not running, or silent for lockStaleMs) is taken over. A worker on standby
   * calls this every second or so; nothing is logged here while the holder lives.
   */
  async tryConsume(): Promise<{ consumer: true } | { consumer: false; holder: string }> {
    this.assertOpen();
    try {
      await this.becomeConsumer();
      return { consumer: true };
    } catch (err) {
      if (err instanceof ConnectorError && err.code === 'CONN_ERR_QUEUE_LOCKED') return { consumer: false, holder: describeHolder(err.details?.holder as Owner | null | undefined) };
      throw err;
    }
  }

  async waitForWork(timeoutMs: number, options: { sources?: readonly SourceName[] } = {}): Promise<void> {
    if (this.state !== 'open') return;
    // Codes are given to the sources waited for now, so that the first copy of one wakes its waiter.
    for (const name of options.sources ?? []) this.sourceCode(name);
    const mask = options.sources === undefined ? null : this.sourceFilter(options.sources).mask;
    // Something of these sources arrived since the last empty claim of them (or none was made yet).
    const seen = this.emptyClaimVersions.get(claimKey(options.sources));
    if (seen === undefined ? this.version !== this.lastEmptyClaimVersion : seen !== this.versionFor(mask)) return;
    this.startWatching();
    const now = Date.now();
    let wait = Math.max(0, timeoutMs);
    for (const [slot, nb] of this.notBefore) {
      if (nb > now && this.table.state(slot) === SLOT_LIVE && (mask === null || mask[this.table.source(slot)] === 1)) wait = Math.min(wait, nb - now + 1);
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, wait);
      this.waiters.set(done, mask);
    });
  }

  /** How many copies of the sources in `mask` (of any, when null) were indexed: grows with each. */
  private versionFor(mask: Uint8Array | null): number {
    if (mask === null) return this.version;
    let sum = 0;
    for (let code = 0; code <= this.sourceCodes.size; code++) if (mask[code] === 1) sum += this.versionOf[code] as number;
    return sum;
  }

  async close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // ───────────────────────────── operators and tests ─────────────────────────────

  /**
   * Compacts inbox.jsonl now, whatever the thresholds (this process must be, or become, the consumer).
   * Resolves false when there was nothing to drop.
   */
  async compact(): Promise<boolean> {
    this.assertOpen();
    await this.becomeConsumer();
    while (this.compaction !== null) await this.compaction.catch(() => {});
    if (this.viewEnd - this.headerEnd - this.liveBytes <= 0 && this.faults.length === 0) return false;
    const run = this.compactNow();
    this.compaction = run
      .catch(() => {})
      .finally(() => {
        this.compaction = null;
      });
    await run;
    return true;
  }

  /** Writes offset.json now (consumer only; a no-op elsewhere). */
  async checkpoint(): Promise<void> {
    this.assertOpen();
    if (this.consumerLock?.held !== true) return;
    await this.exclusive(() => this.checkpointNow());
  }

  // ───────────────────────────── the index ─────────────────────────────

  /** Re-reads inbox.jsonl from its header (or the checkpoint), keeping this process's claims. Holds viewMutex. */
  private async reload(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = null;
    this.table = new SlotTable();
    this.notBefore = new Map();
    this.strays = new Map();
    this.liveCount = 0;
    this.liveBytes = 0;
    this.claimedCount = 0;
    this.firstLive = 0;
    this.firstLiveOf.fill(0);
    this.replayKeys = new Set();
    this.unrepairedReplays = new Set();
    this.faults = [];
    this.maxSeq = 0;
    this.nextSeq = 1;
    this.changes++;
    let handle: FileHandle;
    try {
      handle = await open(this.files.inbox, 'a+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.ino = -1;
      this.viewEnd = 0;
      return;
    }
    this.handle = handle;
    const st = await handle.stat();
    const size = st.size;
    this.ino = st.ino;
    const header = await this.readHeader(handle, size);
    this.uid = header?.record.q ?? null;
    this.gen = header?.record.gen ?? 0;
    this.headerEnd = header?.length ?? 0;
    this.nextSeq = header?.record.next ?? 1;
    if (header === null && size > 0) this.log.warn({ file: this.files.inbox }, 'inbox.jsonl has no header line; reading it as it is');
    const from = await this.checkpointStart(handle, size);
    this.viewEnd = await readLines(handle, from, size, (buf, s, e, offset, length) => this.applyLine(buf, s, e, offset, length));
    for (const claim of this.claims.values()) {
      const slot = this.findSlot(claim.seq, claim.id);
      if (slot >= 0 && this.table.state(slot) === SLOT_LIVE) {
        this.table.setState(slot, SLOT_CLAIMED);
        this.claimedCount++;
      }
      claim.slot = slot;
    }
  }

  private async readHeader(handle: FileHandle, size: number): Promise<{ record: HeaderRecord; length: number } | null> {
    const probe = await readAt(handle, 0, Math.min(size, HEADER_PROBE));
    const nl = probe.indexOf(0x0a);
    if (nl < 0 || checkLine(probe, 0, nl) !== null || lineType(probe, 0, nl) !== 'h') return null;
    return { record: parseLine<HeaderRecord>(probe, 0, nl), length: nl + 1 };
  }

  /** Where reading may start: offset.json's offset when it belongs to this file, else after the header. */
  private async checkpointStart(handle: FileHandle, size: number): Promise<number> {
    let saved: { q?: unknown; gen?: unknown; offset?: unknown; next?: unknown };
    try {
      saved = JSON.parse(await readFile(this.files.offset, 'utf8')) as typeof saved;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err }, 'offset.json is unreadable; reading inbox.jsonl from its start');
      return this.headerEnd;
    }
    const offset = saved.offset;
    if (this.uid === null || saved.q !== this.uid || saved.gen !== this.gen || typeof offset !== 'number' || offset < this.headerEnd || offset > size) {
      this.log.debug({ saved, gen: this.gen }, 'offset.json does not describe this inbox.jsonl; reading it from its start');
      return this.headerEnd;
    }
    if (offset > this.headerEnd) {
      const around = await readAt(handle, offset - 1, Math.min(9, size - offset + 1));
      const atBoundary = around[0] === 0x0a && (offset === size || around.toString('latin1', 1, 9) === '{"crc":"');
      if (!atBoundary) {
        this.log.warn({ offset }, 'offset.json does not point at a line of inbox.jsonl; reading it from its start');
        return this.headerEnd;
      }
    }
    if (typeof saved.next === 'number' && saved.next > this.nextSeq) this.nextSeq = saved.next;
    return offset;
  }

  /**
   * Indexes what other processes appended; re-reads the file if it was replaced. `known` is a stat of
   * inbox.jsonl the caller just made. Holds viewMutex.
   */
  private async refreshUnlocked(known?: { ino: number; size: number }): Promise<void> {
    const st = known ?? statIfExists(this.files.inbox);
    if (st === null) return;
    if (st.ino !== this.ino) {
      this.log.debug({ gen: this.gen }, 'inbox.jsonl was replaced (compacted); re-reading it');
      await this.reload();
      return;
    }
    if (st.size < this.viewEnd) {
      this.log.warn({ size: st.size, indexed: this.viewEnd }, 'inbox.jsonl is shorter than what was read; re-reading it');
      await this.reload();
      return;
    }
    if (st.size > this.viewEnd && this.handle !== null) {
      this.viewEnd = await readLines(this.handle, this.viewEnd, st.size, (buf, s, e, offset, length) => this.applyLine(buf, s, e, offset, length));
    }
  }

  /**
   * refreshUnlocked, plus what only the write-lock holder may do: recreate a missing inbox and set
   * aside a torn tail. Holds the write lock and viewMutex.
   */
  private async refreshLocked(): Promise<void> {
    let st = statIfExists(this.files.inbox);
    if (st === null || st.size === 0) {
      if (this.handle !== null) this.log.error({ file: this.files.inbox }, 'inbox.jsonl disappeared; starting a new one');
      await this.createInboxIfMissing();
      await this.reload();
      st = await stat(this.files.inbox);
    }
    await this.refreshUnlocked(st);
    const handle = this.handle;
    if (handle === null) return;
    const size = st.ino === this.ino ? st.size : (await handle.stat()).size;
    if (size > this.viewEnd) {
      const bytes = await readAt(handle, this.viewEnd, size - this.viewEnd);
      await this.quarantine([{ file: 'inbox.jsonl', offset: this.viewEnd, fault: 'torn (no newline)', bytes }]);
      await handle.truncate(this.viewEnd);
      await handle.sync();
      this.counters.fsyncs++;
    }
  }

  private applyLine(buf: Buffer, s: number, e: number, offset: number, length: number): void {
    const fault = checkLine(buf, s, e);
    if (fault !== null) return this.noteFault(offset, length, fault);
    try {
      switch (lineType(buf, s, e)) {
        case 'e':
          this.applyEvent(parseEventHead(buf, s, e), offset, length);
          return;
        case 'ack':
        case 'dead': {
          const done = parseLine<DoneRecord>(buf, s, e);
          this.markDone(this.findSlot(done.seq, done.id), done.id);
          return;
        }
        case 'h':
          if (offset !== 0) this.log.debug({ offset }, 'a header line in the middle of inbox.jsonl ignored');
          return;
        default:
          return this.noteFault(offset, length, 'unknown record');
      }
    } catch {
      this.noteFault(offset, length, 'not JSON');
    }
  }

  private applyEvent(head: EventHead, offset: number, length: number): void {
    let stored = head.seq;
    const stray = head.seq <= this.maxSeq;
    if (stray) {
      // Out of order: kept, after every in-order copy, and found through `strays`.
      stored = this.maxSeq + 0.5;
      this.log.error({ seq: head.seq, eventId: head.id, offset }, 'an event copy in inbox.jsonl is out of sequence (two writers?); it is kept');
    } else {
      this.maxSeq = head.seq;
    }
    if (head.seq >= this.nextSeq) this.nextSeq = head.seq + 1;
    const code = this.sourceCode(head.src);
    const slot = this.table.append(stored, offset, length, head.r, hashKey(head.k), code);
    if (stray) {
      const list = this.strays.get(head.seq) ?? [];
      list.push({ slot, id: head.id });
      this.strays.set(head.seq, list);
    }
    this.liveCount++;
    this.liveBytes += length;
    this.changes++;
    if (head.nb !== undefined) this.notBefore.set(slot, head.nb);
    if (head.sup !== undefined) this.markDone(this.findSlot(head.sup, head.id), head.id);
    if (head.rep !== undefined) {
      // dlq.jsonl may still hold it until whoever replayed it rewrites the file (rewriteDeadLetters).
      this.replayKeys.add(head.rep);
      this.unrepairedReplays.add(head.rep);
    }
    this.version++;
    (this.versionOf[code] as number)++;
    this.notify(code);
  }

  private findSlot(seq: number, id: string): number {
    const strays = this.strays.get(seq);
    if (strays !== undefined) {
      const match = strays.find((s) => s.id === id && this.table.has(s.slot) && this.table.state(s.slot) !== SLOT_DONE);
      if (match !== undefined) return match.slot;
    }
    return this.table.find(seq);
  }

  private markDone(slot: number, id: string): void {
    const t = this.table;
    if (slot < 0 || !t.has(slot)) return;
    const state = t.state(slot);
    if (state === SLOT_DONE) return;
    if (state === SLOT_CLAIMED) {
      this.claimedCount--;
      if (this.claims.get(id)?.slot === slot) this.claims.delete(id);
    }
    t.setState(slot, SLOT_DONE);
    this.liveCount--;
    this.liveBytes -= t.length(slot);
    this.notBefore.delete(slot);
    this.doneSinceCheckpoint++;
    this.changes++;
  }

  /** A line that failed on claim (bit rot since it was indexed): out of the index, into quarantine. */
  private setAside(slot: number, why: string): void {
    const offset = this.table.offset(slot);
    const length = this.table.length(slot);
    this.markDone(slot, '');
    this.noteFault(offset, length, why);
    this.scheduleCheckpoint();
  }

  private noteFault(offset: number, length: number, fault: string): void {
    const id = `${this.uid}:${this.gen}:${offset}`;
    if (!this.reported.has(id)) {
      this.reported.add(id);
      this.log.warn({ file: 'inbox.jsonl', offset, length, fault }, 'queue: an unreadable line in inbox.jsonl was skipped; it is set aside in quarantine.jsonl');
    }
    this.faults.push({ offset, length, fault });
  }

  private oldestReceivedAt(): number | null {
    if (this.oldestCache.changes === this.changes) return this.oldestCache.value;
    let oldest: number | null = null;
    const t = this.table;
    for (let i = t.start; i < t.end; i++) {
      if (t.state(i) === SLOT_DONE) continue;
      const r = t.receivedAt(i);
      if (oldest === null || r < oldest) oldest = r;
    }
    this.oldestCache = { changes: this.changes, value: oldest };
    return oldest;
  }

  private async countDeadLetters(): Promise<number> {
    let st;
    try {
      st = await stat(this.files.dlq);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.dlqCache = { ino: -1, end: 0, keys: new Set() };
      return 0;
    }
    if (st.ino !== this.dlqCache.ino || st.size < this.dlqCache.end) this.dlqCache = { ino: st.ino, end: 0, keys: new Set() };
    if (st.size > this.dlqCache.end) {
      const handle = await open(this.files.dlq, 'r');
      try {
        const keys = this.dlqCache.keys;
        this.dlqCache.end = await readLines(handle, this.dlqCache.end, st.size, (buf, s, e) => {
          if (checkLine(buf, s, e) !== null || lineType(buf, s, e) !== 'dead') return;
          const head = buf.toString('utf8', s, Math.min(e, s + 512));
          const q = /"q":"([^"]*)"/.exec(head)?.[1];
          const seq = /"seq":(\d+)/.exec(head)?.[1];
          if (q !== undefined && seq !== undefined) keys.add(deadLetterKey(q, Number(seq)));
        });
      } finally {
        await handle.close();
      }
    }
    let count = 0;
    for (const key of this.dlqCache.keys) if (!this.replayKeys.has(key)) count++;
    return count;
  }

  // ───────────────────────────── writing ─────────────────────────────

  private append(records: PendingRecord[], dlqLines: Buffer[], durable: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.ops.push({ kind: 'append', records, dlqLines, durable, resolve, reject });
      this.kick();
    });
  }

  /** Runs `fn` alone in the write pipeline (no batch is written while it runs). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.ops.push({ kind: 'exclusive', run: async () => resolve(await fn()), reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.draining !== null) return this.wakeDrain();
    this.draining = this.drain().finally(() => {
      this.draining = null;
      if (this.ops.length > 0) this.kick();
    });
  }

  /**
   * Runs the ops in order. Appends go in group commits, gathered for one turn of the event loop (so
   * that every enqueue made in that turn shares the commit) and pipelined: while one commit's fsync is in
   * flight the next batch is already written (and its fsync issued), so deliveries that arrive during
   * an fsync wait for the next one, not for two. At most SYNCS_IN_FLIGHT commits are unconfirmed at a
   * time; a commit is confirmed only when its own fsync and the one before it succeeded (a failed
   * fsync may have dropped pages the next commit shares, and the kernel reports the error only once).
   * Exclusive ops run after every earlier commit is confirmed.
   */
  private async drain(): Promise<void> {
    let unconfirmed = 0;
    let previous: Promise<boolean> = Promise.resolve(true);
    let gathered = false;
    for (;;) {
      const first = this.ops[0];
      const mustWait = first === undefined || (first.kind === 'append' ? unconfirmed >= SYNCS_IN_FLIGHT : unconfirmed > 0);
      if (mustWait) {
        if (first === undefined && unconfirmed === 0) {
          await this.releaseWriteLock();
          return;
        }
        // Woken by a new op (kick) or a confirmation; nothing can slip in between: both come from
        // other callbacks, and this check and the sleep run in one synchronous stretch.
        await new Promise<void>((resolve) => (this.drainAsleep = resolve));
        continue;
      }
      if (first.kind === 'exclusive') {
        await this.releaseWriteLock();
        this.ops.shift();
        try {
          if (this.state === 'crashed') throw closedError(this.state);
          await first.run();
        } catch (err) {
          first.reject(err);
        }
        continue;
      }
      // Let the rest of this turn of the event loop join the batch: the deliveries parsed from one
      // poll of the sockets arrive one callback at a time, and writing the first alone would cost
      // the others a second write, lock and fsync.
      if (this.groupCommit && !gathered) {
        gathered = true;
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      gathered = false;
      const batch: AppendOp[] = [];
      while (this.ops.length > 0 && this.ops[0]?.kind === 'append' && (this.groupCommit || batch.length === 0)) batch.push(this.ops.shift() as AppendOp);
      let written: Written;
      try {
        if (this.state === 'crashed') throw closedError(this.state);
        written = await this.writeBatch(batch);
      } catch (err) {
        for (const op of batch) op.reject(err);
        continue;
      }
      unconfirmed++;
      const confirmed = this.confirm(batch, written, previous).finally(() => {
        unconfirmed--;
        this.wakeDrain();
      });
      previous = confirmed;
      if (!this.groupCommit) await confirmed;
    }
  }

  /** Wakes drain() where it waits for an op or a confirmation. */
  private wakeDrain(): void {
    const wake = this.drainAsleep;
    this.drainAsleep = null;
    wake?.();
  }

  /** One group commit's write: one lock hold, one write(2), for every op in `batch`. */
  private async writeBatch(batch: AppendOp[]): Promise<Written> {
    const records = batch.flatMap((op) => op.records);
    const dlqLines = batch.flatMap((op) => op.dlqLines);
    const durable = batch.some((op) => op.durable);
    // A producer catches up without the lock first, so that re-reading a file another process has
    // compacted never holds other writers up. (The consumer is the only compactor: no need.)
    if (!this.consumerReady) await this.viewMutex.run(() => this.refreshUnlocked());
    let eventSources: ReadonlySet<string> = new Set();
    let wroteDone = false;
    await this.withWriteLock(() =>
      this.viewMutex.run(async () => {
        await this.refreshLocked();
        if (dlqLines.length > 0) {
          await this.appendDeadLetters(Buffer.concat(dlqLines));
          this.crash('dead-letter:dlq-synced');
        }
        await this.writeRecordsLocked(records);
        this.crash('append:written');
        eventSources = new Set(records.flatMap((r) => (r.kind === 'event' ? [r.draft.src] : [])));
        wroteDone = records.some((r) => r.kind === 'done' || r.draft.sup !== undefined);
      }),
      { lease: true },
    );
    return { durable, eventSources, wroteDone };
  }

  /**
   * The rest of a group commit: its fsync (at most one), then its callers are told. Resolves whether
   * this commit's own fsync succeeded (never rejects); `before` is the same for the commit before it.
   */
  private async confirm(batch: AppendOp[], written: Written, before: Promise<boolean>): Promise<boolean> {
    let error: unknown = null;
    if (written.durable) await this.syncInbox().catch((err: unknown) => (error = err));
    const beforeOk = await before;
    try {
      if (error !== null) throw error;
      if (!beforeOk) throw new ConnectorError('CONN_ERR_INTERNAL', 'the group commit before this one failed to fsync inbox.jsonl; these events are not confirmed');
      if (this.state === 'crashed') throw closedError(this.state);
      if (written.durable) this.crash('append:synced');
    } catch (err) {
      for (const op of batch) op.reject(err);
      return error === null;
    }
    for (const op of batch) op.resolve();
    for (const source of written.eventSources) this.notify(this.sourceCode(source));
    if (written.wroteDone) this.afterDone();
    return true;
  }

  /** Appends records at the end of inbox.jsonl and indexes them. Holds the write lock and viewMutex. */
  private async writeRecordsLocked(records: PendingRecord[]): Promise<void> {
    if (records.length === 0) return;
    const handle = this.handle;
    if (handle === null) throw new ConnectorError('CONN_ERR_INTERNAL', 'inbox.jsonl is not open');
    const firstSeq = this.nextSeq;
    const lines: Buffer[] = [];
    const seqs: number[] = [];
    for (const r of records) {
      if (r.kind === 'event') {
        const seq = this.nextSeq++;
        seqs.push(seq);
        lines.push(sealEvent(seq, r.draft));
      } else {
        seqs.push(r.seq);
        lines.push(sealObject({ t: r.t, seq: r.seq, id: r.id }));
      }
    }
    const start = this.viewEnd;
    try {
      for (let i = 0; i < lines.length; ) {
        const chunk: Buffer[] = [];
        let bytes = 0;
        while (i < lines.length && (chunk.length === 0 || bytes + (lines[i] as Buffer).length <= WRITE_CHUNK)) {
          const line = lines[i++] as Buffer;
          chunk.push(line);
          bytes += line.length;
        }
        writeAllSync(handle.fd, chunk.length === 1 ? (chunk[0] as Buffer) : Buffer.concat(chunk, bytes));
      }
    } catch (err) {
      // Leave no partial line behind (a short write after ENOSPC, say).
      await handle.truncate(start).catch(() => {});
      this.nextSeq = firstSeq;
      throw err;
    }
    this.counters.writes++;
    this.counters.records += records.length;
    let offset = start;
    records.forEach((r, i) => {
      const length = (lines[i] as Buffer).length;
      const seq = seqs[i] as number;
      if (r.kind === 'event') {
        const d = r.draft;
        this.applyEvent({ t: 'e', seq, id: d.id, src: d.src, k: d.k, r: d.r, a: d.a, nb: d.nb, fa: d.fa, sup: d.sup, rep: d.rep }, offset, length);
      } else {
        this.markDone(this.findSlot(seq, r.id), r.id);
      }
      offset += length;
    });
    this.viewEnd = offset;
  }

  private async syncInbox(): Promise<void> {
    if (this.handle === null) return;
    await this.beforeInboxSync?.();
    await this.handle.sync();
    this.counters.fsyncs++;
  }

  /**
   * Runs `fn` holding the write lock, and lets it go afterwards. A group commit passes `lease`: it uses
   * the lock the previous commit kept, if any, and keeps it for the next (a lease) unless someone else
   * waits for it or it has been held WRITE_LEASE_MS; drain() lets it go when the pipeline falls idle
   * and before an exclusive op, so no other caller ever finds it kept. Under a steady stream of
   * deliveries this takes and drops the lock about once a second instead of at every commit: creating
   * and removing the lock file are the dearest syscalls of a commit after its fsync, and they dirty
   * the directory that every fsync's journal commit must then carry. Another process waiting for the
   * lock (`work` acking, a replay) announces itself (FileLock.othersWaiting) and gets it at the end of
   * the current commit, as without a lease.
   */
  private async withWriteLock<T>(fn: () => Promise<T>, { lease = false } = {}): Promise<T> {
    if (!this.writeLock.held) {
      await this.writeLock.acquire();
      this.counters.writeLocks++;
    }
    let kept = false;
    try {
      const result = await fn();
      kept = lease && this.writeLock.heldForMs < WRITE_LEASE_MS && !this.writeLock.othersWaiting();
      return result;
    } finally {
      if (!kept) await this.releaseWriteLock();
    }
  }

  /** Lets go of the write lock if this queue holds it (a commit's, or one a commit kept). */
  private async releaseWriteLock(): Promise<void> {
    await this.writeLock.release().catch((err: unknown) => this.log.error({ err }, 'could not release the queue write lock'));
  }

  /** Holds the write lock. */
  private async createInboxIfMissing(): Promise<void> {
    const st = await stat(this.files.inbox).catch(() => null);
    if (st !== null && st.size > 0) return;
    const header: HeaderRecord = { t: 'h', v: 1, q: randomBytes(8).toString('hex'), gen: 1, next: 1, at: new Date().toISOString() };
    await replaceFile(this.files.inbox, sealObject({ ...header }));
    this.log.info({ dir: this.dir, queue: header.q }, 'created a new queue');
  }

  /** Appends dead letters to dlq.jsonl and fsyncs them, setting aside a torn tail first. Holds the write lock. */
  private async appendDeadLetters(data: Buffer): Promise<void> {
    const handle = await open(this.files.dlq, 'a+');
    try {
      const size = (await handle.stat()).size;
      if (size > 0) {
        const last = await readAt(handle, size - 1, 1);
        if (last[0] !== 0x0a) {
          const tailFrom = await lastLineEnd(handle, size);
          const bytes = await readAt(handle, tailFrom, size - tailFrom);
          await this.quarantine([{ file: 'dlq.jsonl', offset: tailFrom, fault: 'torn (no newline)', bytes }]);
          await handle.truncate(tailFrom);
        }
      }
      await writeAll(handle, data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Rewrites dlq.jsonl without the dead letters replayed into the inbox (and those `discarded`). Holds the write lock. */
  private async rewriteDeadLetters(stored: StoredDeadLetter[], faults: UnreadableLine[], discarded: ReadonlySet<string> = new Set()): Promise<void> {
    if (faults.length > 0) await this.quarantine(faults.map((f) => ({ file: 'dlq.jsonl', offset: f.offset, fault: f.fault, bytes: f.bytes })));
    const kept = stored.filter((d) => !this.replayKeys.has(d.key) && !discarded.has(d.key));
    await replaceFile(this.files.dlq, Buffer.concat(kept.map((d) => d.line)), () => this.crash('replay:dlq-tmp-synced'));
    this.dlqCache = { ino: -1, end: 0, keys: new Set() };
    this.unrepairedReplays.clear();
  }

  /** Sets lines aside in quarantine.jsonl, durably. Holds the write lock. */
  private async quarantine(items: Array<{ file: string; offset: number; fault: string; bytes: Buffer }>): Promise<void> {
    if (items.length === 0) return;
    const at = new Date().toISOString();
    const lines = items.map(
      (item) =>
        `${JSON.stringify({
          at,
          file: item.file,
          queue: this.uid,
          gen: this.gen,
          offset: item.offset,
          length: item.bytes.length,
          fault: item.fault,
          preview: item.bytes.toString('utf8', 0, Math.min(item.bytes.length, 200)),
          base64: item.bytes.toString('base64'),
        })}\n`,
    );
    await appendDurably(this.files.quarantine, Buffer.from(lines.join('')));
    this.counters.quarantined += items.length;
    for (const item of items) {
      this.log.warn({ file: item.file, offset: item.offset, length: item.bytes.length, fault: item.fault }, `queue: set aside an unreadable line of ${item.file} in quarantine.jsonl`);
    }
  }

  /** Sets aside the unreadable inbox lines found so far. Holds the write lock and viewMutex. */
  private async quarantineFaults(): Promise<void> {
    const handle = this.handle;
    if (handle === null || this.faults.length === 0) return;
    const items = [];
    for (const f of this.faults) items.push({ file: 'inbox.jsonl', offset: f.offset, fault: f.fault, bytes: await readAt(handle, f.offset, f.length) });
    await this.quarantine(items);
    this.faults = [];
    // Drop the bad bytes soon, so that a restart does not find (and set aside) them again.
    this.compactSoon = true;
  }

  // ───────────────────────────── the consumer ─────────────────────────────

  private claimed(eventId: string, what: string): Claim {
    const claim = this.claims.get(eventId);
    if (claim === undefined) throw new ConnectorError('CONN_ERR_INTERNAL', `cannot ${what} event ${eventId}: it is not claimed by this worker`, { details: { eventId } });
    return claim;
  }

  private becomeConsumer(): Promise<void> {
    if (this.consumerLock?.held === true && this.consumerReady) return Promise.resolve();
    this.consumerStarting ??= this.startConsuming().finally(() => {
      this.consumerStarting = null;
    });
    return this.consumerStarting;
  }

  private async startConsuming(): Promise<void> {
    this.consumerLock ??= new FileLock(this.files.consumerLock, {
      name: 'consumer',
      staleMs: this.lockStaleMs,
      waitMs: 0,
      log: this.log,
      onCompromised: () => {
        // Logged by the lock. Claims in hand may still be acked; the next claim tries to take the
        // lock again and fails while another worker holds it.
      },
    });
    if (!this.consumerLock.held) await this.consumerLock.acquire();
    if (this.consumerReady) return;
    // A compaction or checkpoint that died before its rename left a temp file: the originals are whole.
    await rm(this.files.compact, { force: true });
    await removeMatching(this.dir, /^offset\.json\.\d+\.tmp$/);
    await this.exclusive(async () => {
      await this.viewMutex.run(() => this.refreshUnlocked());
      await this.withWriteLock(() =>
        this.viewMutex.run(async () => {
          await this.refreshLocked();
          await this.finishDeadLetterMoves();
          await this.quarantineFaults();
        }),
      );
    });
    this.consumerReady = true;
    this.log.debug({ dir: this.dir, pending: this.liveCount }, 'consuming the queue');
    this.maybeCompact();
  }

  /**
   * Finishes what crashes interrupted between dlq.jsonl and the inbox: a live copy already in
   * dlq.jsonl is marked dead; a dead letter already replayed is dropped from dlq.jsonl. Holds the
   * write lock and viewMutex.
   */
  private async finishDeadLetterMoves(): Promise<void> {
    const faults: UnreadableLine[] = [];
    const stored = await readDeadLetterFile(this.files.dlq, (f) => faults.push(f));
    const records = this.unfinishedMoves(stored);
    if (records.length > 0) {
      this.log.warn({ count: records.length }, 'finished moving dead letters that a crash interrupted');
      await this.writeRecordsLocked(records);
    }
    if (faults.length > 0 || stored.some((d) => this.replayKeys.has(d.key))) {
      this.log.warn('finished a dead-letter replay that a crash interrupted');
      await this.rewriteDeadLetters(stored, faults);
    }
    this.unrepairedReplays.clear();
  }

  /**
   * The `dead` lines missing for dead letters whose inbox copy is still live (claimed or not): moves a
   * crash interrupted between dlq.jsonl and the inbox. Holds viewMutex (and the write lock to write them).
   */
  private unfinishedMoves(stored: readonly StoredDeadLetter[]): PendingRecord[] {
    const records: PendingRecord[] = [];
    for (const d of stored) {
      if (d.q !== (this.uid ?? '')) continue;
      const slot = this.findSlot(d.seq, d.id);
      if (slot >= 0 && this.table.state(slot) !== SLOT_DONE) records.push({ kind: 'done', t: 'dead', seq: d.seq, id: d.id });
    }
    return records;
  }

  /** After copies became done: count towards the next checkpoint, maybe compact. */
  private afterDone(): void {
    this.scheduleCheckpoint();
    this.maybeCompact();
  }

  private scheduleCheckpoint(): void {
    if (this.consumerLock?.held !== true || this.state !== 'open') return;
    if (this.doneSinceCheckpoint >= this.checkpointEveryEvents) {
      this.clearCheckpointTimer();
      this.runCheckpoint();
      return;
    }
    if (this.checkpointTimer === null) {
      this.checkpointTimer = setTimeout(() => {
        this.checkpointTimer = null;
        this.runCheckpoint();
      }, this.checkpointIntervalMs);
      this.checkpointTimer.unref();
    }
  }

  private runCheckpoint(): void {
    if (this.state !== 'open') return;
    this.exclusive(() => this.checkpointNow()).catch((err: unknown) => {
      if (this.state === 'open') this.log.error({ err }, 'could not write offset.json; will try again');
    });
  }

  private clearCheckpointTimer(): void {
    if (this.checkpointTimer !== null) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
  }

  /**
   * Makes every record written so far durable, then records where the consumed prefix ends. Runs in
   * the pipeline (exclusive), consumer only.
   */
  private async checkpointNow(): Promise<void> {
    if (this.consumerLock?.held !== true || this.handle === null) return;
    if (this.unrepairedReplays.size > 0 || this.faults.length > 0) {
      // A replayed copy about to fall behind the offset must not leave its dead letter behind.
      await this.withWriteLock(() =>
        this.viewMutex.run(async () => {
          await this.refreshLocked();
          await this.finishDeadLetterMoves();
          await this.quarantineFaults();
        }),
      );
    }
    await this.syncInbox();
    const body = await this.viewMutex.run(async () => {
      this.table.trim();
      const t = this.table;
      const offset = t.start < t.end ? t.offset(t.start) : this.viewEnd;
      return { v: 1, q: this.uid, gen: this.gen, offset, next: this.nextSeq };
    });
    this.doneSinceCheckpoint = 0;
    const key = JSON.stringify(body);
    if (key === this.lastCheckpoint) return;
    await replaceFile(this.files.offset, `${JSON.stringify({ ...body, at: new Date().toISOString() })}\n`, () => this.crash('checkpoint:tmp-synced'));
    this.crash('checkpoint:renamed');
    this.lastCheckpoint = key;
    this.counters.checkpoints++;
    this.maybeCompact();
  }

  private maybeCompact(): void {
    if (this.compaction !== null || this.state !== 'open' || !this.consumerReady || this.consumerLock?.held !== true) return;
    const dead = this.viewEnd - this.headerEnd - this.liveBytes;
    if (!this.compactSoon && !(dead >= this.compactThresholdBytes && dead >= this.liveBytes)) return;
    const gen = this.gen;
    this.compaction = this.compactNow().then(
      () => {
        this.compaction = null;
        // Acks that landed while it ran could not start another: catch up with them now (only after a
        // compaction that took place, so that this can never spin).
        if (this.gen !== gen) this.maybeCompact();
      },
      (err: unknown) => {
        this.compaction = null;
        if (this.state === 'open') this.log.error({ err }, 'compaction failed; inbox.jsonl is unchanged');
      },
    );
  }

  /** See "Compaction" at the top of this file. */
  private async compactNow(): Promise<void> {
    // Phase A: copy the copies not done, without holding any lock.
    const snap = await this.viewMutex.run(async () => {
      await this.refreshUnlocked();
      return { end: this.viewEnd, startSlot: this.table.start, endSlot: this.table.end, gen: this.gen, next: this.nextSeq, ino: this.ino, handle: this.handle };
    });
    if (snap.handle === null) return;
    const source = snap.handle;
    let out: FileHandle | null = await open(this.files.compact, 'w');
    let renamed = false;
    try {
      const writer = new BufferedWriter(out);
      const header = sealObject({ t: 'h', v: 1, q: this.uid ?? randomBytes(8).toString('hex'), gen: snap.gen + 1, next: snap.next, at: new Date().toISOString() });
      await writer.write(header);
      const newOffsets = new Float64Array(snap.endSlot - snap.startSlot).fill(-1);
      // Copy runs of adjacent live copies with one read each.
      // (Offsets are kept in the run: a slot may be done and trimmed from the table before the read.)
      let runFrom = -1;
      let runTo = -1;
      let runSlots: Array<[slot: number, offset: number]> = [];
      const flushRun = async () => {
        if (runSlots.length === 0) return;
        const bytes = await readAt(source, runFrom, runTo - runFrom);
        for (const [slot, offset] of runSlots) newOffsets[slot - snap.startSlot] = writer.position + (offset - runFrom);
        await writer.write(bytes);
        runSlots = [];
      };
      for (let i = snap.startSlot; i < snap.endSlot; i++) {
        if (!this.table.has(i) || this.table.state(i) === SLOT_DONE) continue;
        const offset = this.table.offset(i);
        const length = this.table.length(i);
        if (runSlots.length > 0 && offset === runTo && runTo - runFrom + length <= COPY_CHUNK) {
          runTo += length;
          runSlots.push([i, offset]);
          continue;
        }
        await flushRun();
        runFrom = offset;
        runTo = offset + length;
        runSlots = [[i, offset]];
      }
      await flushRun();
      await writer.flush();
      this.crash('compact:copied');

      // Phase B: the tail, the swap.
      await this.exclusive(async () => {
        await this.viewMutex.run(() => this.refreshUnlocked());
        await this.withWriteLock(() =>
          this.viewMutex.run(async () => {
            await this.refreshLocked();
            if (this.ino !== snap.ino || this.handle !== source) throw new Error('inbox.jsonl was replaced while compacting');
            if (this.unrepairedReplays.size > 0) await this.finishDeadLetterMoves();
            await this.quarantineFaults();
            const deltaStart = writer.position;
            for (let from = snap.end; from < this.viewEnd; from += COPY_CHUNK) {
              await writer.write(await readAt(source, from, Math.min(COPY_CHUNK, this.viewEnd - from)));
            }
            await writer.flush();
            await (out as FileHandle).sync();
            this.crash('compact:synced');
            if (!(await this.writeLock.verify())) throw new ConnectorError('CONN_ERR_QUEUE_LOCKED', 'lost the write lock while compacting; compaction abandoned');
            await rename(this.files.compact, this.files.inbox);
            renamed = true;
            this.crash('compact:renamed');
            await fsyncDir(this.dir);
            this.crash('compact:dir-synced');
            await this.swapIn(source, out as FileHandle, header.length, deltaStart, snap, newOffsets);
            out = null;
          }),
        );
        await this.checkpointNow();
      });
    } catch (err) {
      // Closing changes no file; a simulated crash (a crash point) leaves the files as a real one would.
      await out?.close().catch(() => {});
      if (this.state !== 'crashed' && !renamed) await rm(this.files.compact, { force: true });
      throw err;
    }
  }

  /** Points the index at the compacted file. Holds the write lock and viewMutex. */
  private async swapIn(
    old: FileHandle,
    compacted: FileHandle,
    headerLength: number,
    deltaStart: number,
    snap: { end: number; startSlot: number; gen: number },
    newOffsets: Float64Array,
  ): Promise<void> {
    const oldEnd = this.viewEnd;
    const late = (await old.stat()).size - oldEnd;
    if (late > 0) {
      // Only a writer whose lock was taken from it can get here: keep its bytes.
      this.log.error({ bytes: late }, 'bytes were appended to inbox.jsonl without the write lock during compaction; copied over');
      for (let from = oldEnd; from < oldEnd + late; from += COPY_CHUNK) {
        const bytes = await readAt(old, from, Math.min(COPY_CHUNK, oldEnd + late - from));
        await writeAll(compacted, bytes);
      }
      await compacted.sync();
    }
    await compacted.close();
    const handle = await open(this.files.inbox, 'a+');
    const ino = (await handle.stat()).ino;
    await old.close();
    const before = oldEnd;
    this.handle = handle;
    this.ino = ino;
    this.gen = snap.gen + 1;
    this.headerEnd = headerLength;
    this.viewEnd = deltaStart + (oldEnd - snap.end);
    this.faults = [];
    const t = this.table;
    let consistent = true;
    for (let i = t.start; i < t.end; i++) {
      if (t.state(i) === SLOT_DONE) continue;
      const offset = t.offset(i);
      if (offset >= snap.end) {
        t.setOffset(i, offset - snap.end + deltaStart);
      } else {
        const moved = i >= snap.startSlot && i - snap.startSlot < newOffsets.length ? (newOffsets[i - snap.startSlot] as number) : -1;
        if (moved < 0) consistent = false;
        else t.setOffset(i, moved);
      }
    }
    this.counters.compactions++;
    this.compactSoon = false;
    this.changes++;
    if (!consistent) {
      this.log.error('the index disagreed with the compacted inbox.jsonl; re-reading it');
      await this.reload();
    }
    this.log.info({ gen: this.gen, bytesBefore: before, bytesAfter: this.viewEnd, live: this.liveCount }, 'compacted inbox.jsonl');
  }

  // ───────────────────────────── waiting, closing ─────────────────────────────

  /** Wakes the waiters for copies of source `code` (those waiting for any source too). */
  private notify(code: number): void {
    if (this.waiters.size === 0) return;
    for (const [done, mask] of [...this.waiters]) if (mask === null || mask[code] === 1) done();
  }

  private startWatching(): void {
    if (this.pollTimer !== null || this.state !== 'open') return;
    try {
      this.watcher = watch(this.dir, { persistent: false }, (_type, name) => {
        if (name === null || name === 'inbox.jsonl') this.lookForAppends();
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null; // fs.watch is not available here: polling alone
    }
    this.pollTimer = setInterval(() => this.lookForAppends(), this.pollIntervalMs);
    this.pollTimer.unref();
  }

  private lookForAppends(): void {
    if (this.polling || this.waiters.size === 0 || this.state !== 'open') return;
    this.polling = true;
    this.viewMutex
      .run(() => this.refreshUnlocked())
      .catch((err: unknown) => this.log.warn({ err }, 'could not read new lines of inbox.jsonl'))
      .finally(() => {
        this.polling = false;
      });
  }

  private async shutdown(): Promise<void> {
    const crashed = this.state === 'crashed';
    if (!crashed) this.state = 'closing';
    for (const done of [...this.waiters.keys()]) done();
    this.clearCheckpointTimer();
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.watcher?.close();
    this.watcher = null;
    if (!crashed) {
      await this.compaction?.catch(() => {});
      while (this.draining !== null) await this.draining;
      if (this.consumerLock?.held === true) {
        await this.exclusive(() => this.checkpointNow()).catch((err: unknown) => this.log.error({ err }, 'could not write offset.json on close'));
        while (this.draining !== null) await this.draining;
      }
    } else {
      await this.compaction?.catch(() => {});
      while (this.draining !== null) await this.draining.catch(() => {});
    }
    await this.consumerStarting?.catch(() => {}); // a first claim racing close: let it finish, then release
    await this.consumerLock?.release().catch(() => {});
    await this.viewMutex.run(async () => {
      await this.handle?.close().catch(() => {});
      this.handle = null;
    });
    this.claims.clear();
    if (!crashed) this.state = 'closed';
    const c = this.counters;
    if (c.records > 0) this.log.debug({ ...c }, `queue closed: ${c.records} records written in ${c.writes} writes and ${c.fsyncs} fsyncs`);
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw closedError(this.state);
  }

  private crash(point: CrashPoint): void {
    if (this.crashPoint === undefined) return;
    try {
      this.crashPoint(point);
    } catch (err) {
      this.state = 'crashed';
      this.clearCheckpointTimer();
      throw err;
    }
  }
}

/**
 * An error record as JSON, in a way no record can make fail: `details` are whatever a thrower put
 * there (a BigInt, a cycle); if they cannot be written, the record is kept without them.
 */
function errorText(error: ErrorRecord): string {
  try {
    return JSON.stringify(error);
  } catch {
    const safe: ErrorRecord = { code: String(error.code), message: String(error.message), retryable: error.retryable === true };
    if (typeof error.retryAfterMs === 'number') safe.retryAfterMs = error.retryAfterMs;
    if (typeof error.status === 'number') safe.status = error.status;
    safe.details = { detailsDropped: 'the error details could not be written as JSON' };
    return JSON.stringify(safe);
  }
}

function closedError(state: State): ConnectorError {
  return new ConnectorError('CONN_ERR_QUEUE_CLOSED', state === 'crashed' ? 'the queue stopped at a crash point' : 'the queue is closed');
}

/** True when inbox.jsonl does not exist or is empty (not even a header). */
async function inboxMissing(file: string): Promise<boolean> {
  try {
    return (await stat(file)).size === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

async function removeMatching(dir: string, pattern: RegExp): Promise<void> {
  for (const name of await readdir(dir)) if (pattern.test(name)) await rm(path.join(dir, name), { force: true });
}

/** Reads the lines of `slots` (in table order), adjacent ones with one read. */
async function readSlots(handle: FileHandle, t: SlotTable, slots: readonly number[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let k = 0;
  while (k < slots.length) {
    const first = slots[k] as number;
    const from = t.offset(first);
    let to = from + t.length(first);
    let j = k + 1;
    while (j < slots.length && t.offset(slots[j] as number) === to && to - from < COPY_CHUNK) to += t.length(slots[j++] as number);
    const bytes = await readAt(handle, from, to - from);
    for (; k < j; k++) {
      const slot = slots[k] as number;
      const at = t.offset(slot) - from;
      out.push(bytes.subarray(at, at + t.length(slot)));
    }
  }
  return out;
}

/**
 * The file's stat, or null when it does not exist. Synchronous, like the write below: the group commit's
 * critical section (lock, stat, write, unlock) is a handful of cheap syscalls that run in one turn of
 * the event loop instead of waiting between thread-pool trips behind the deliveries being parsed.
 */
function statIfExists(file: string): Stats | null {
  try {
    return statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Which claims `waitForWork` compares with: those of the same sources (in any order). */
function claimKey(sources: readonly string[] | undefined): string {
  return sources === undefined ? '*' : [...sources].sort().join(',');
}
