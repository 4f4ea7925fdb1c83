/**
 * Shared vendor budgets in Redis (QUEUE_BACKEND=redis), beside the BullMQ queues. Per budget, three
 * keys with one hash tag, so that a Redis Cluster keeps them in one slot:
 *
 *   {<prefix>:budget:<name>}:starts   sorted set: reservation id -> start time (engine ms)
 *   {<prefix>:budget:<name>}:leases   sorted set: lease id -> expiry (engine ms)
 *   {<prefix>:budget:<name>}:pause    hash: until (engine ms), reason ('' for pacing)
 *
 * Each operation is one short Lua script (RESERVE, PAUSE, RENEW, USAGE below): a script runs alone,
 * so its read-check-write is atomic without WATCH retries, and it reads the time from Redis (`TIME`),
 * the one clock every process shares. This is a limiter, not a queue: nothing waits in Redis; a refused
 * reservation tells the process how long to wait, and the process asks again then.
 *
 * Times are whole milliseconds: Lua hands numbers to Redis with 14 significant digits, which holds an
 * epoch in ms exactly, not one in µs. A start counts within a window while `start >= now - interval`,
 * one millisecond more than the exact rule, so rounding never lets a window hold one too many.
 *
 * Every key expires on its own (the start log after its longest window, leases after twice their TTL,
 * a pause when it ends), so a budget nobody uses leaves nothing behind. The connection is our own
 * (the queue's are BullMQ's); it fails fast while Redis is away (no offline queue), and reconnects by
 * itself.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { ENGINE_TIMEOUT_MS, LEASE_TTL_MS, refusal, type BudgetSpec, type BudgetStore, type BudgetUsage, type Reservation } from './budget-store.ts';
import { EngineCalls } from './engine-calls.ts';
import { HeldLeases } from './held-leases.ts';

/** Engine time in whole ms. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS: starts, leases, pause. ARGV: reservation id, concurrency (0: none), lease TTL ms, then
 * (limit, intervalMs) per window. Returns {granted 0|1, why, wait ms, detail}: detail is the pause's
 * reason, or the index (0-based) of the full window.
 */
const RESERVE = `${NOW}
local pause = redis.call('HMGET', KEYS[3], 'until', 'reason')
local pausedUntil = tonumber(pause[1])
if pausedUntil and pausedUntil > now then
  return {0, 'paused', math.ceil(pausedUntil - now), pause[2] or ''}
end
local concurrency = tonumber(ARGV[2])
if concurrency > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= concurrency then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {0, 'concurrency', math.max(1, math.ceil(tonumber(first[2]) - now)), ''}
  end
end
local longest = 0
local wait = 0
local full = -1
for i = 4, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local interval = tonumber(ARGV[i + 1])
  if interval > longest then longest = interval end
  -- The limit-th newest start still within the window: while there is one, the window is full.
  local nth = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', now - interval, 'WITHSCORES', 'LIMIT', limit - 1, 1)
  if #nth > 0 then
    local free = tonumber(nth[2]) + interval + 1 - now
    if free > wait then
      wait = free
      full = (i - 4) / 2
    end
  end
end
if full >= 0 then
  return {0, 'window', math.ceil(wait), tostring(full)}
end
if longest > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest - 1)
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], longest + 1000)
end
if concurrency > 0 then
  local ttl = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
end
return {1, 'granted', 0, ''}`;

/** KEYS: pause. ARGV: for ms, reason ('' for none). A shorter pause than the one in force changes nothing. */
const PAUSE = `${NOW}
local untilMs = now + math.ceil(tonumber(ARGV[1]))
local current = redis.call('HMGET', KEYS[1], 'until', 'reason')
local currentUntil = tonumber(current[1])
if currentUntil and currentUntil >= untilMs then return 0 end
local reason = ARGV[2]
if reason == '' and currentUntil and currentUntil > now and current[2] then reason = current[2] end
redis.call('HSET', KEYS[1], 'until', untilMs, 'reason', reason)
redis.call('PEXPIREAT', KEYS[1], untilMs)
return 1`;

/** KEYS: leases. ARGV: TTL ms, then lease ids. Only leases still held are renewed. */
const RENEW = `${NOW}
local ttl = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
end
if renewed > 0 then redis.call('PEXPIRE', KEYS[1], ttl * 2) end
return renewed`;

/** KEYS: starts, leases, pause. ARGV: intervals ms. Returns {inFlight, paused for ms, reason, used per window...}. */
const USAGE = `${NOW}
local out = {redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'), 0, ''}
local pause = redis.call('HMGET', KEYS[3], 'until', 'reason')
local pausedUntil = tonumber(pause[1])
if pausedUntil and pausedUntil > now then
  out[2] = math.ceil(pausedUntil - now)
  out[3] = pause[2] or ''
end
for i = 1, #ARGV do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[i]), '+inf')
end
return out`;

interface BudgetCommands {
  budgetReserve(starts: string, leases: string, pause: string, ...args: Array<string | number>): Promise<[number, string, number, string]>;
  budgetPause(pause: string, forMs: number, reason: string): Promise<number>;
  budgetRenew(leases: string, ttlMs: number, ...ids: string[]): Promise<number>;
  budgetUsage(starts: string, leases: string, pause: string, ...intervals: number[]): Promise<Array<number | string>>;
}

export interface RedisBudgetStoreOptions {
  url: string;
  /** QUEUE_PREFIX. */
  prefix: string;
  log: Logger;
  /** `Redis at host:port`, for log lines. */
  where: string;
  /** How long a lease lives without renewal, ms; renewed every third of it. Default LEASE_TTL_MS (tests shorten it). */
  leaseTtlMs?: number;
}

export class RedisBudgetStore implements BudgetStore {
  readonly engine = 'redis' as const;
  readonly id = randomUUID();
  private readonly calls: EngineCalls;
  private readonly leases: HeldLeases;
  private readonly leaseTtlMs: number;
  private closed = false;

  private constructor(
    private readonly redis: Redis & BudgetCommands,
    private readonly options: RedisBudgetStoreOptions,
  ) {
    this.leaseTtlMs = options.leaseTtlMs ?? LEASE_TTL_MS;
    this.calls = new EngineCalls(options.log, options.where);
    this.leases = new HeldLeases((name, ids) => this.calls.run('renew', () => this.redis.budgetRenew(this.key(name, 'leases'), this.leaseTtlMs, ...ids)).then(() => {}), Math.round(this.leaseTtlMs / 3));
  }

  /** Connects (a Redis that does not answer yet is no failure here: calls fail until it does). */
  static async open(options: RedisBudgetStoreOptions): Promise<RedisBudgetStore> {
    const redis = new Redis(options.url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 3_000 });
    redis.on('error', () => {}); // reported by the calls that fail (EngineCalls), once per outage
    redis.defineCommand('budgetReserve', { numberOfKeys: 3, lua: RESERVE });
    redis.defineCommand('budgetPause', { numberOfKeys: 1, lua: PAUSE });
    redis.defineCommand('budgetRenew', { numberOfKeys: 1, lua: RENEW });
    redis.defineCommand('budgetUsage', { numberOfKeys: 3, lua: USAGE });
    // Bounded: a Redis that accepts connections but never answers must not hold start-up.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([redis.connect().catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ENGINE_TIMEOUT_MS)))]);
    clearTimeout(timer);
    return new RedisBudgetStore(redis as Redis & BudgetCommands, options);
  }

  private key(name: string, part: 'starts' | 'leases' | 'pause'): string {
    return `{${this.options.prefix}:budget:${name}}:${part}`;
  }

  async reserve(spec: BudgetSpec): Promise<Reservation> {
    const id = randomUUID();
    const windows = spec.windows.flatMap((w) => [w.limit, Math.ceil(w.intervalMs)]);
    const [granted, why, waitMs, detail] = await this.calls.run('reserve', () =>
      this.redis.budgetReserve(this.key(spec.name, 'starts'), this.key(spec.name, 'leases'), this.key(spec.name, 'pause'), id, spec.concurrency ?? 0, this.leaseTtlMs, ...windows),
    );
    if (granted === 1) {
      if (spec.concurrency === null) return { granted: true, lease: null };
      this.leases.add(spec.name, id);
      return { granted: true, lease: id };
    }
    return refusal(spec, why, waitMs, detail);
  }

  async release(name: string, lease: string): Promise<void> {
    this.leases.delete(name, lease);
    await this.calls.run('release', () => this.redis.zrem(this.key(name, 'leases'), lease));
  }

  async pause(name: string, forMs: number, reason: string | null): Promise<void> {
    await this.calls.run('pause', () => this.redis.budgetPause(this.key(name, 'pause'), Math.max(0, Math.ceil(forMs)), reason ?? ''));
  }

  async usage(spec: BudgetSpec): Promise<BudgetUsage> {
    const out = await this.calls.run('usage', () =>
      this.redis.budgetUsage(this.key(spec.name, 'starts'), this.key(spec.name, 'leases'), this.key(spec.name, 'pause'), ...spec.windows.map((w) => Math.ceil(w.intervalMs))),
    );
    const [inFlight, pausedForMs, reason, ...used] = out;
    return {
      windows: spec.windows.map((w, i) => ({ limit: w.limit, intervalMs: w.intervalMs, used: Number(used[i] ?? 0) })),
      inFlight: Number(inFlight),
      pausedForMs: Number(pausedForMs),
      pauseReason: Number(pausedForMs) > 0 && reason !== '' ? String(reason) : null,
    };
  }

  async purge(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `{${this.options.prefix}:budget:*`, 'COUNT', 500);
      if (keys.length > 0) await this.redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.leases.stop();
    this.redis.disconnect();
  }
}
