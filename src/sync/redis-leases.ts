/**
 * Leases on Redis (QUEUE_BACKEND=redis); the contract and the design are in leases.ts.
 *
 * One key per lease, `<prefix>:lease:<name>`, whose value is the holder and whose expiry is the TTL.
 * Each operation is one command or one Lua script, so it is atomic on the server and needs no
 * connection of its own (WATCH would): the scripts compare the value with the caller and only then
 * extend or delete. The connection fails commands at once while Redis is away (no offline queue): a
 * renewal that cannot be sent is a renewal that failed, and the keeper counts down to its deadline.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import type { LeaseAnswer, LeaseHolder, Leases } from './leases.ts';

/** KEYS[1] the lease; ARGV[1] holder, ARGV[2] TTL ms. Takes or extends; else returns the holder and its PTTL. */
const ACQUIRE = `
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1}
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
return {0, current, redis.call('PTTL', KEYS[1])}
`;

/** Extends only the caller's own lease: 1 extended, 0 not (or no longer) the caller's. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;

/** Deletes only the caller's own lease. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

/** How long a connection attempt may take, ms. */
const CONNECT_TIMEOUT_MS = 3_000;

export class RedisLeases implements Leases {
  readonly engine = 'redis' as const;
  private readonly redis: Redis;
  private closed = false;

  constructor(
    url: string,
    private readonly prefix: string,
    log: Logger,
  ) {
    this.redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: CONNECT_TIMEOUT_MS });
    let lastError = 0;
    this.redis.on('error', (err) => {
      if (this.closed || Date.now() - lastError < 30_000) return;
      lastError = Date.now();
      log.debug({ err }, 'the connection for leases reported an error (repeats within 30 s are not logged)');
    });
  }

  private key(name: string): string {
    return `${this.prefix}:lease:${name}`;
  }

  /** The connection, connected (a lazy connection takes no command before it is). */
  private async ready(): Promise<Redis> {
    if (this.redis.status === 'wait') await this.redis.connect();
    return this.redis;
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseAnswer> {
    const redis = await this.ready();
    const answer = (await redis.eval(ACQUIRE, 1, this.key(name), holder, Math.ceil(ttlMs))) as [number, string?, number?];
    if (answer[0] === 1) return { held: true };
    const pttl = answer[2] ?? -2;
    return { held: false, holder: answer[1] ?? null, expiresInMs: pttl >= 0 ? pttl : null };
  }

  async renew(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const redis = await this.ready();
    return (await redis.eval(RENEW, 1, this.key(name), holder, Math.ceil(ttlMs))) === 1;
  }

  async release(name: string, holder: string): Promise<boolean> {
    const redis = await this.ready();
    return (await redis.eval(RELEASE, 1, this.key(name), holder)) === 1;
  }

  async holder(name: string): Promise<LeaseHolder | null> {
    const redis = await this.ready();
    const [[, holder], [, pttl]] = (await redis.multi().get(this.key(name)).pttl(this.key(name)).exec()) as [[unknown, string | null], [unknown, number]];
    if (holder === null) return null;
    return { holder, expiresInMs: Math.max(pttl, 0) };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.redis.disconnect();
  }
}
