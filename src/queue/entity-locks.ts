/**
 * Entity locks in the shared engine: across every worker process on every host, two events of one
 * entity (`task:123`, `conversation:<uuid>`) never run at once. BullMQ has no per-entity groups (that
 * is BullMQ Pro), so the BullMQ queue takes one of these locks when it hands an event out and gives
 * it back when the event is settled; an event whose entity is locked elsewhere is set aside briefly.
 *
 * - Redis: a key `<prefix>:entity:<entity>` set with `NX PX` to this process's owner id, renewed while
 *   the event is in hand, deleted on release; renewal and release each check the owner and act in one
 *   script, so neither can touch a key another process took meanwhile, and neither can get in the
 *   other's way (a WATCH/MULTI release was aborted by a renewal's PEXPIRE landing between its check and
 *   its delete, which left the entity locked until the key expired). A process that dies leaves its
 *   keys to expire after `ttlMs`.
 * - PostgreSQL: session advisory locks (`pg_try_advisory_lock` on a hash of prefix and entity) on one
 *   connection of this process. A process that dies, or whose connection is cut, loses its locks at
 *   once; nothing expires on a timer.
 *
 * Where a lock is lost while its event is still in hand (the connection cut, a process frozen past the
 * TTL), another worker may start the same entity: the database's stale-write guard still keeps the
 * newest version (test/queue/bull-queue.test.ts proves it), and the loss is logged.
 *
 * A lock is taken at most once per process (the caller keeps the set it holds), because advisory locks
 * are re-entrant within a session.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from '../log.ts';

export interface EntityLocks {
  /** Takes the lock without waiting: true when this process now holds it. */
  tryLock(key: string): Promise<boolean>;
  /** Keeps the locks held alive (Redis: pushes their expiry out). */
  renew(keys: readonly string[]): Promise<void>;
  release(key: string): Promise<void>;
  close(): Promise<void>;
}

/** Deletes KEYS[1] if it holds ARGV[1] (our owner id). */
const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";
/** Pushes the expiry of each of KEYS that holds ARGV[1] out to ARGV[2] ms. */
const RENEW_SCRIPT = "local n = 0 for _, key in ipairs(KEYS) do if redis.call('get', key) == ARGV[1] then redis.call('pexpire', key, ARGV[2]) n = n + 1 end end return n";

export class RedisEntityLocks implements EntityLocks {
  private readonly owner = randomUUID();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlMs: number,
  ) {}

  private key(entity: string): string {
    return `${this.prefix}:entity:${entity}`;
  }

  async tryLock(entity: string): Promise<boolean> {
    return (await this.redis.set(this.key(entity), this.owner, 'PX', this.ttlMs, 'NX')) === 'OK';
  }

  async renew(entities: readonly string[]): Promise<void> {
    if (entities.length === 0) return;
    await this.redis.eval(RENEW_SCRIPT, entities.length, ...entities.map((e) => this.key(e)), this.owner, String(this.ttlMs));
  }

  async release(entity: string): Promise<void> {
    await this.redis.eval(RELEASE_SCRIPT, 1, this.key(entity), this.owner);
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

export class PostgresEntityLocks implements EntityLocks {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;

  constructor(
    private readonly connect: () => Promise<pg.Client>,
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  private chain: Promise<unknown> = Promise.resolve();

  private session(): Promise<pg.Client> {
    if (this.client !== null) return Promise.resolve(this.client);
    this.connecting ??= this.connect().then(
      (client) => {
        client.on('error', (err) => {
          if (this.client === client) this.client = null;
          this.log.warn({ err }, 'the connection holding entity locks was lost; its locks are released (the stale-write guard keeps the newest version meanwhile)');
        });
        this.client = client;
        this.connecting = null;
        return client;
      },
      (err: unknown) => {
        this.connecting = null;
        throw err;
      },
    );
    return this.connecting;
  }

  /**
   * One query at a time on the session: pg queues concurrent queries on one client itself, but that is
   * deprecated (pg 9 removes it), and the lanes of a worker lock and unlock at the same moments.
   */
  private serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => {});
    return next;
  }

  async tryLock(entity: string): Promise<boolean> {
    const client = await this.session();
    const { rows } = await this.serially(() => client.query<{ locked: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as locked', [`${this.prefix}:${entity}`]));
    return rows[0]?.locked === true;
  }

  async renew(): Promise<void> {
    // Session locks live as long as the session: nothing to renew.
  }

  async release(entity: string): Promise<void> {
    const client = this.client;
    if (client === null) return; // the session is gone, and its locks with it
    await this.serially(() => client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [`${this.prefix}:${entity}`]));
  }

  async close(): Promise<void> {
    const client = this.client ?? (await this.connecting?.catch(() => null)) ?? null;
    this.client = null;
    await client?.end().catch(() => {});
  }
}
