/**
 * A cross-process lock on one host: a symbolic link whose target names its holder
 * (`<pid>:<host id>:<token>`), kept fresh by touching the link's own mtime. Creating a
 * symlink is atomic and fails if the name exists, and it carries the owner in the same syscall: one
 * syscall to take the lock and one (unlink) to drop it, about half the cost of create+write+close+unlink,
 * which matters because every batch of writes takes this lock (the technique Emacs uses for its
 * `.#file` locks). Linux and macOS; Windows would need symlink privileges. The target stays under 60
 * bytes so that ext4 keeps it inside the inode (a "fast" symlink): a longer one (the JSON this lock
 * used to carry) takes a data block, and allocating and freeing it made each lock and unlock about five
 * times dearer (docs/benchmarks.md, Ingest). The host is named by a short hash of its name; locks in the
 * older JSON form are still read.
 *
 * States: free -> held (our file exists with our token) -> free (released), or held -> lost (someone
 * removed or replaced our file: `onCompromised` is called, never a throw, and the owner decides what to
 * do). A contender that finds the file takes it over when the holder is provably gone or silent:
 * - the holder's pid is not running on this host (a SIGKILLed worker restarts and takes over at once;
 *   proper-lockfile, the usual choice, can only wait for its mtime to go stale, 10 s by default, on
 *   every restart), or it is this very process but no lock object here made it (a container restarted
 *   with the same pid and hostname), or
 * - the file has not been touched for `staleMs` (a frozen holder, another host on a shared disk, a
 *   reused pid), or
 * - the file is unreadable and older than a second (a crash between create and write).
 * Takeover renames the stale file to a unique name first (only one contender can win that rename),
 * then checks it moved the file it judged; if it moved a fresh lock by mistake, it puts it back with
 * link(), which cannot overwrite.
 *
 * Waiting is announced: a contender that finds the lock held by a live holder leaves a second symlink,
 * `<lock>.wait`, naming itself, and removes it once it has the lock (or gives up). A holder that would
 * like to keep the lock across several operations (the file queue keeps its write lock from one group
 * commit to the next while deliveries keep coming) asks `othersWaiting()` after each one and lets go
 * when someone waits, so that a lease never starves another process. A marker whose maker is gone is
 * removed by the holder that finds it.
 *
 * Why not proper-lockfile: besides the restart delay above, its default reaction to a compromised lock
 * is to throw from a timer (crashing the process), and it cannot tell a dead holder from a slow one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import { lstatSync, readlinkSync, symlinkSync, unlinkSync, type Stats } from 'node:fs';
import { lstat, lutimes, mkdir, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { ConnectorError } from '../errors.ts';
import type { Logger } from '../log.ts';

export interface FileLockOptions {
  /** What the lock guards, for messages ("write", "consumer"). */
  name: string;
  /** A lock not touched for this long is stale and may be taken over, ms. Default 10 s. */
  staleMs?: number;
  /** How long `acquire` keeps trying while a live holder has the lock, ms. Default staleMs + 5 s. */
  waitMs?: number;
  /** Called (once) when the lock is found removed or replaced while we hold it. Never throws into a timer. */
  onCompromised?: (err: ConnectorError) => void;
  log?: Logger;
}

export interface Owner {
  pid: number;
  /** The holder's host id (hostId). */
  host: string;
  token: string;
}

/** A host's id in lock files: 8 hex digits of a hash of its name. */
function hostId(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 8);
}

const HOST = hostId(hostname());

/** Whether a lock's host id is this machine's. */
export function isThisHost(id: string): boolean {
  return id === HOST;
}

const UNREADABLE_GRACE_MS = 1000;
/**
 * Longest pause between two tries of a contender, ms. Short, because holds are: a write takes about a
 * millisecond, and a holder keeping the lock across writes lets go after the current one once it sees
 * the waiting marker. (Up to 25 ms, a `work` process fell behind a `serve` that kept the lock.)
 */
const MAX_POLL_MS = 2;
/** Tokens of the locks this process holds now. */
const heldHere = new Set<string>();
/** Tokens of the waiting markers this process made and has not withdrawn. */
const waitingHere = new Set<string>();

export class FileLock {
  readonly path: string;
  private readonly name: string;
  private readonly staleMs: number;
  private readonly waitMs: number;
  private readonly onCompromised: (err: ConnectorError) => void;
  private readonly log: Logger | undefined;
  /** The marker a waiting contender leaves (`<lock>.wait`). */
  private readonly waitPath: string;
  private token: string | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private lastTouch = 0;
  private acquiredAt = 0;

  constructor(file: string, options: FileLockOptions) {
    this.path = file;
    this.waitPath = `${file}.wait`;
    this.name = options.name;
    this.staleMs = options.staleMs ?? 10_000;
    this.waitMs = options.waitMs ?? this.staleMs + 5_000;
    this.onCompromised = options.onCompromised ?? (() => {});
    this.log = options.log;
  }

  get held(): boolean {
    return this.token !== null;
  }

  /** How long this object has held the lock, ms (0 when it does not). */
  get heldForMs(): number {
    return this.token === null ? 0 : Date.now() - this.acquiredAt;
  }

  /**
   * Takes the lock, waiting up to `waitMs` for a live holder. Rejects with CONN_ERR_QUEUE_LOCKED when
   * the wait runs out (waitMs 0: one try, after taking over a stale lock if there is one).
   */
  async acquire(): Promise<void> {
    if (this.token !== null) throw new Error(`${this.name} lock is already held by this object`);
    const deadline = Date.now() + this.waitMs;
    let pause = 1;
    let announced: string | null = null; // the token of the waiting marker this call made last
    try {
      for (;;) {
        if (await this.tryCreate()) return;
        const holder = await this.inspect();
        if (holder.stale) {
          await this.takeOver(holder.owner, holder.reason);
          continue;
        }
        if (holder.gone) continue;
        if (Date.now() >= deadline) {
          const who = holder.owner === null ? 'another process' : describe(holder.owner);
          throw new ConnectorError('CONN_ERR_QUEUE_LOCKED', `the queue's ${this.name} lock (${this.path}) is held by ${who}`, {
            details: { lock: this.path, holder: holder.owner },
          });
        }
        // Every round, not once: a contender that got the lock first removed the marker.
        const marker = this.announceWaiting();
        if (marker !== null) {
          if (announced !== null) waitingHere.delete(announced); // that marker is gone: the name was free
          announced = marker;
        }
        await sleep(pause);
        pause = Math.min(pause * 2, MAX_POLL_MS);
      }
    } finally {
      // Whoever made the marker there now: another contender still waiting makes it again on its next try.
      if (announced !== null) {
        removeIfPresent(this.waitPath);
        waitingHere.delete(announced);
      }
    }
  }

  /**
   * True when another process waits for this lock (it left `<lock>.wait`). One lstat when nobody
   * does. A marker left by a process that no longer runs, or older than any wait, is removed and
   * does not count.
   */
  othersWaiting(): boolean {
    let st: Stats | undefined;
    let target: string;
    try {
      st = lstatSync(this.waitPath, { throwIfNoEntry: false });
      if (st === undefined) return false;
      target = readlinkSync(this.waitPath);
    } catch {
      return false; // removed just now (its maker has the lock or gave up), or unreadable: nobody to yield to
    }
    const owner = parseOwner(target);
    const gone = owner !== null && owner.host === HOST && (owner.pid === process.pid ? !waitingHere.has(owner.token) : !processAlive(owner.pid));
    if (gone || Date.now() - st.mtimeMs > this.waitMs + this.staleMs) {
      removeIfPresent(this.waitPath);
      return false;
    }
    return true;
  }

  /** Leaves the waiting marker unless one is there. Returns its token when this call made it. */
  private announceWaiting(): string | null {
    const token = randomBytes(4).toString('hex');
    try {
      symlinkSync(`${process.pid}:${HOST}:${token}`, this.waitPath);
    } catch {
      return null; // EEXIST: someone already waits, and one marker says it for all
    }
    waitingHere.add(token);
    return token;
  }

  /** Releases the lock if we still hold it. Never removes a lock someone else now holds. */
  async release(): Promise<void> {
    const token = this.token;
    if (token === null) return;
    this.stopHeartbeat();
    this.token = null;
    heldHere.delete(token);
    if (Date.now() - this.acquiredAt < this.staleMs / 2) {
      // Young: no contender can have judged it stale (our pid lives, its mtime is fresh), so it is
      // still ours and the check below (a read) can be skipped. Short holds (every write) take this path,
      // with a synchronous unlink: one cheap syscall, where a trip through libuv's thread pool would
      // wait behind whatever the event loop is doing (see tryCreate).
      try {
        unlinkSync(this.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      return;
    }
    const owner = await this.readOwner().catch(() => null);
    if (owner?.token === token) {
      await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    } else {
      this.log?.warn({ lock: this.path }, `the queue's ${this.name} lock was taken from us before we released it`);
    }
  }

  /** True when the lock file still carries our token. */
  async verify(): Promise<boolean> {
    if (this.token === null) return false;
    const owner = await this.readOwner().catch(() => null);
    return owner?.token === this.token;
  }

  private async tryCreate(): Promise<boolean> {
    const token = randomBytes(8).toString('hex');
    const owner: Owner = { pid: process.pid, host: HOST, token };
    try {
      // Synchronous on purpose: creating a symlink is one metadata syscall of a few microseconds, and the
      // write lock is taken for every group commit. Through the thread pool, each lock and unlock waited
      // for the event loop to come back round, which under load (a loop busy with deliveries) added
      // milliseconds to every commit and left the loop idle between commits (docs/benchmarks.md, Ingest).
      symlinkSync(`${owner.pid}:${owner.host}:${owner.token}`, this.path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code === 'ENOENT') {
        await mkdir(path.dirname(this.path), { recursive: true });
        return false;
      }
      throw err;
    }
    this.token = token;
    heldHere.add(token);
    this.lastTouch = Date.now();
    this.acquiredAt = this.lastTouch;
    this.startHeartbeat();
    return true;
  }

  private async inspect(): Promise<{ stale: boolean; gone: boolean; owner: Owner | null; reason: string }> {
    let mtimeMs: number;
    try {
      mtimeMs = (await lstat(this.path)).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { stale: false, gone: true, owner: null, reason: '' };
      throw err;
    }
    const age = Date.now() - mtimeMs;
    const owner = await this.readOwner().catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : null));
    if (owner === undefined) return { stale: false, gone: true, owner: null, reason: '' };
    if (owner === null) {
      return { stale: age > UNREADABLE_GRACE_MS, gone: false, owner: null, reason: 'its lock does not name a holder' };
    }
    if (owner.host === HOST && !processAlive(owner.pid)) {
      return { stale: true, gone: false, owner, reason: `its holder (pid ${owner.pid}) is not running` };
    }
    if (owner.host === HOST && owner.pid === process.pid && !heldHere.has(owner.token)) {
      return { stale: true, gone: false, owner, reason: `it was left by an earlier process with this pid (${owner.pid})` };
    }
    if (age > this.staleMs) {
      return { stale: true, gone: false, owner, reason: `its holder has not refreshed it for ${Math.round(age / 1000)} s` };
    }
    return { stale: false, gone: false, owner, reason: '' };
  }

  private async takeOver(judged: Owner | null, reason: string): Promise<void> {
    const aside = `${this.path}.${randomBytes(6).toString('hex')}.stale`;
    try {
      await rename(this.path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it first
      throw err;
    }
    const target = await readlink(aside).catch(() => null);
    const moved = target === null ? null : parseOwner(target);
    const sameAsJudged = judged === null ? moved === null : moved?.token === judged.token;
    if (!sameAsJudged) {
      // We moved a lock taken after we judged the old one stale: put it back unless the name is
      // taken again (symlink cannot overwrite).
      if (target !== null) await symlink(target, this.path).catch(() => {});
      await unlink(aside).catch(() => {});
      return;
    }
    await unlink(aside).catch(() => {});
    this.log?.warn({ lock: this.path, holder: judged, reason }, `took over the queue's ${this.name} lock: ${reason}`);
  }

  private async readOwner(): Promise<Owner | null> {
    return parseOwner(await readlink(this.path));
  }

  private startHeartbeat(): void {
    const every = Math.max(50, Math.floor(this.staleMs / 4));
    this.heartbeat = setInterval(() => void this.touch(), every);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Refreshes the mtime, and notices a lock that is no longer ours. */
  private async touch(): Promise<void> {
    const token = this.token;
    if (token === null) return;
    try {
      const owner = await this.readOwner();
      if (this.token !== token) return;
      if (owner?.token !== token) return this.lost(`its file now names ${owner === null ? 'nobody' : describe(owner)}`);
      const now = new Date();
      await lutimes(this.path, now, now);
      this.lastTouch = Date.now();
    } catch (err) {
      if (this.token !== token) return;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.lost('its file was removed');
      if (Date.now() - this.lastTouch > this.staleMs) return this.lost(`it could not be refreshed: ${(err as Error).message}`);
    }
  }

  private lost(why: string): void {
    this.stopHeartbeat();
    if (this.token !== null) heldHere.delete(this.token);
    this.token = null;
    const err = new ConnectorError('CONN_ERR_QUEUE_LOCKED', `lost the queue's ${this.name} lock (${this.path}): ${why}`, { details: { lock: this.path } });
    this.log?.error({ lock: this.path, err: err.message }, err.message);
    try {
      this.onCompromised(err);
    } catch (listenerErr) {
      this.log?.error({ err: listenerErr }, 'lock compromise handler failed');
    }
  }
}

/** A lock target: `<pid>:<host id>:<token>`, or the older JSON `{"pid","host","token","since"}`. */
export function parseOwner(text: string): Owner | null {
  const short = /^(\d+):([0-9a-f]{8}):([0-9a-f]+)$/.exec(text);
  if (short !== null) return { pid: Number(short[1]), host: short[2] as string, token: short[3] as string };
  try {
    const value = JSON.parse(text) as Partial<Owner>;
    if (typeof value.pid === 'number' && typeof value.host === 'string' && typeof value.token === 'string') return { pid: value.pid, host: hostId(value.host), token: value.token };
  } catch {
    // fall through
  }
  return null;
}

function describe(owner: Owner): string {
  return owner.host === HOST ? `pid ${owner.pid} on this host` : `pid ${owner.pid} on another host (id ${owner.host})`;
}

/** A lock holder as an operator reads it: "pid 123" on this host, "pid 123 on another host (id ...)". */
export function describeHolder(owner: Owner | null | undefined): string {
  if (owner === null || owner === undefined) return 'another process';
  return owner.host === HOST ? `pid ${owner.pid}` : describe(owner);
}

/** True when a process with this pid exists (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function removeIfPresent(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // ENOENT: already gone; anything else leaves a marker the holder will judge stale
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
