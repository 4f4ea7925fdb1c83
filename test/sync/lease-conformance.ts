/**
 * The Lease conformance suite (src/sync/leases.ts), run on every engine by leases.test.ts against the
 * real Redis and PostgreSQL: the contract's promises, then the keepers of leadership.ts on top of it,
 * including a holder cut off from the engine by a partition (a TCP proxy that stops forwarding) while
 * another process, still connected, waits to take over: the cut-off holder must have stopped its work
 * before the other starts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { holdLease, Leadership, leaseTiming } from '../../src/sync/leadership.ts';
import type { Leases } from '../../src/sync/leases.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';

export interface LeaseEngine {
  /** The engine's URL, and the URL of the same engine through `proxy`. */
  url: string;
  throughProxy(url: string, proxy: TcpProxy): string;
  target: { host: string; port: number };
  open(url: string, prefix: string): Promise<Leases>;
  /** Removes what the suite left in the shared engine under these prefixes. */
  cleanup(prefixes: readonly string[]): Promise<void>;
}

const quiet = createLogger({ level: 'silent', console: false });

/** Resolves when `probe` holds, polling every 10 ms; throws after `timeoutMs`. */
async function until(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function leaseConformance(name: string, engine: LeaseEngine): void {
  describe(`Lease on ${name}`, () => {
    const closers: Array<() => Promise<unknown>> = [];
    const prefixes = new Set<string>();
    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close();
    });
    afterAll(() => engine.cleanup([...prefixes]));

    const open = async (prefix = `t${randomUUID().slice(0, 8)}`, url = engine.url): Promise<Leases> => {
      prefixes.add(prefix);
      const leases = await engine.open(url, prefix);
      closers.push(() => leases.close());
      return leases;
    };

    it('gives a free lease to one holder, names that holder to the others, and extends it for its holder', async () => {
      const leases = await open();
      expect(await leases.holder('reconciler')).toBeNull();
      expect(await leases.acquire('reconciler', 'a', 5_000)).toEqual({ held: true });
      const refused = await leases.acquire('reconciler', 'b', 5_000);
      expect(refused).toMatchObject({ held: false, holder: 'a' });
      expect(refused.held === false && refused.expiresInMs).toBeGreaterThan(3_000);
      expect(await leases.acquire('reconciler', 'a', 5_000)).toEqual({ held: true });
      const holder = await leases.holder('reconciler');
      expect(holder?.holder).toBe('a');
      expect(holder?.expiresInMs).toBeGreaterThan(3_000);
      expect(holder?.expiresInMs).toBeLessThanOrEqual(5_000);
      // Names are separate leases.
      expect(await leases.acquire('backfill:teamwork', 'b', 5_000)).toEqual({ held: true });
    });

    it('renews and releases only for its holder', async () => {
      const leases = await open();
      await leases.acquire('reconciler', 'a', 5_000);
      expect(await leases.renew('reconciler', 'b', 5_000)).toBe(false);
      expect(await leases.release('reconciler', 'b')).toBe(false);
      expect((await leases.holder('reconciler'))?.holder).toBe('a');
      expect(await leases.renew('reconciler', 'a', 5_000)).toBe(true);
      expect(await leases.release('reconciler', 'a')).toBe(true);
      expect(await leases.holder('reconciler')).toBeNull();
      expect(await leases.renew('reconciler', 'a', 5_000)).toBe(false);
      expect(await leases.acquire('reconciler', 'b', 5_000)).toEqual({ held: true });
    });

    it('expires on the engine when not renewed: another takes it, and the old holder can no longer renew', async () => {
      const leases = await open();
      await leases.acquire('reconciler', 'a', 300);
      expect(await leases.acquire('reconciler', 'b', 300)).toMatchObject({ held: false, holder: 'a' });
      await new Promise((r) => setTimeout(r, 450));
      expect(await leases.holder('reconciler')).toBeNull();
      expect(await leases.acquire('reconciler', 'b', 5_000)).toEqual({ held: true });
      expect(await leases.renew('reconciler', 'a', 5_000)).toBe(false);
      expect(await leases.release('reconciler', 'a')).toBe(false);
      expect((await leases.holder('reconciler'))?.holder).toBe('b');
    });

    it('gives it to exactly one of many processes asking at once, on a free and on an expired lease', async () => {
      const prefix = `t${randomUUID().slice(0, 8)}`;
      const racers = await Promise.all(Array.from({ length: 6 }, () => open(prefix)));
      for (const round of [1, 2]) {
        const answers = await Promise.all(racers.map((l, i) => l.acquire('reconciler', `p${round}-${i}`, 400)));
        expect(answers.filter((a) => a.held), `round ${round}`).toHaveLength(1);
        const winner = answers.findIndex((a) => a.held);
        for (const a of answers) if (!a.held) expect(a.holder).toBe(`p${round}-${winner}`);
        await new Promise((r) => setTimeout(r, 550)); // let it expire for round 2
      }
    });

    it('keeps connectors with different QUEUE_PREFIX apart', async () => {
      const one = await open();
      const two = await open();
      expect(await one.acquire('reconciler', 'a', 5_000)).toEqual({ held: true });
      expect(await two.acquire('reconciler', 'b', 5_000)).toEqual({ held: true });
    });

    describe('Leadership', () => {
      const TTL = 1_200;

      interface Bid {
        leadership: Leadership;
        events: Array<{ at: number; what: 'taken' | 'lost'; reason?: string }>;
        working: boolean;
      }

      const bid = (leases: Leases, holder: string): Bid => {
        const record: Bid = { leadership: null as unknown as Leadership, events: [], working: false };
        record.leadership = new Leadership({
          leases,
          name: 'reconciler',
          holder,
          ttlMs: TTL,
          log: quiet,
          onTaken: () => {
            record.events.push({ at: Date.now(), what: 'taken' });
            record.working = true;
          },
          onLost: async (reason) => {
            record.working = false;
            record.events.push({ at: Date.now(), what: 'lost', reason });
          },
        });
        closers.push(() => record.leadership.stop());
        record.leadership.start();
        return record;
      };

      it('makes exactly one of three the leader, and hands over on stop within one try', async () => {
        const prefix = `t${randomUUID().slice(0, 8)}`;
        const bids = await Promise.all(['a', 'b', 'c'].map(async (h) => bid(await open(prefix), h)));
        await until('a leader', () => bids.some((b) => b.working), 5_000);
        await new Promise((r) => setTimeout(r, TTL * 1.5)); // several renewals: it stays alone
        expect(bids.filter((b) => b.working)).toHaveLength(1);
        expect(bids.flatMap((b) => b.events).filter((e) => e.what === 'taken')).toHaveLength(1);
        const leader = bids.find((b) => b.working) as Bid;
        expect(leader.leadership.state).toBe('leading');
        const others = bids.filter((b) => b !== leader);
        for (const b of others) {
          expect(b.leadership.state).toBe('following');
          expect(b.leadership.holder).toMatch(/^[abc]$/);
        }

        const stoppedAt = Date.now();
        await leader.leadership.stop();
        expect(leader.events.at(-1)).toMatchObject({ what: 'lost', reason: 'stopping' });
        await until('a new leader', () => others.some((b) => b.working), 5_000);
        // Released on stop: taken within one try, not after the TTL.
        expect(Date.now() - stoppedAt).toBeLessThan(leaseTiming(TTL).pollMs + 300);
        expect(others.filter((b) => b.working)).toHaveLength(1);
      });

      it('stops the work when the engine no longer has the lease as ours', async () => {
        const leases = await open();
        const a = bid(leases, 'a');
        await until('a leads', () => a.working, 5_000);
        // Someone removes it (an operator, a Redis restarted without persistence) and another takes it.
        await leases.release('reconciler', 'a');
        expect(await leases.acquire('reconciler', 'b', 60_000)).toEqual({ held: true });
        await until('a stops', () => !a.working, TTL);
        expect(a.events.at(-1)?.reason).toMatch(/no longer has it as ours/);
        expect(a.leadership.state).toBe('following');
        await new Promise((r) => setTimeout(r, TTL));
        expect(a.working).toBe(false); // b holds it: a follows
        expect(a.leadership.holder).toBe('b');
      });

      it('a holder cut off from the engine stops its work before another can take over', async () => {
        const prefix = `t${randomUUID().slice(0, 8)}`;
        const proxy = await startTcpProxy(engine.target);
        closers.push(() => proxy.close());
        const a = bid(await open(prefix, engine.throughProxy(engine.url, proxy)), 'a');
        await until('a leads', () => a.working, 5_000);
        await new Promise((r) => setTimeout(r, TTL / 2));
        const b = bid(await open(prefix), 'b');
        await new Promise((r) => setTimeout(r, TTL / 2));
        expect(b.working).toBe(false);

        const cutAt = Date.now();
        proxy.freeze();
        await until('b takes over', () => b.working, TTL * 4);
        const lost = a.events.find((e) => e.what === 'lost');
        const taken = b.events.find((e) => e.what === 'taken');
        expect(lost, 'a stopped its work').toBeDefined();
        expect(lost?.reason).toMatch(/no renewal succeeded/);
        // The invariant: a had stopped before b started, with room to spare.
        expect((taken?.at ?? 0) - (lost?.at ?? Infinity)).toBeGreaterThan(TTL / 10);
        // a stopped within 3/4 of the TTL of the cut (its last renewal was at most that before it).
        expect((lost?.at ?? Infinity) - cutAt).toBeLessThanOrEqual(leaseTiming(TTL).validForMs + 200);
        // b took over within TTL + one try of the cut.
        expect((taken?.at ?? Infinity) - cutAt).toBeLessThanOrEqual(TTL + leaseTiming(TTL).pollMs + 400);

        // The partition heals: a follows b, never leads beside it.
        proxy.thaw();
        await new Promise((r) => setTimeout(r, TTL));
        expect(a.working).toBe(false);
        expect(b.working).toBe(true);
      });
    });

    describe('holdLease (a run lease)', () => {
      const TTL = 1_200;

      it('runs the work while held, refuses or waits while another holds it, and releases at the end', async () => {
        const leases = await open();
        let release: (() => void) | null = null;
        const first = holdLease({ leases, name: 'backfill:teamwork', holder: 'reconciler', ttlMs: TTL }, () => new Promise<string>((r) => (release = () => r('first done'))));
        await until('the first to hold it', () => release !== null, 2_000);
        await new Promise((r) => setTimeout(r, TTL * 1.5)); // renewed past its TTL

        expect(await holdLease({ leases, name: 'backfill:teamwork', holder: 'operator', ttlMs: TTL }, async () => 'ran')).toEqual({ ran: false, holder: 'reconciler' });

        const waits: Array<string | null> = [];
        let secondStarted = 0;
        const second = holdLease({ leases, name: 'backfill:teamwork', holder: 'operator', ttlMs: TTL, wait: true, onWaiting: (h) => waits.push(h) }, async () => {
          secondStarted = Date.now();
          return 'second done';
        });
        await new Promise((r) => setTimeout(r, TTL));
        expect(secondStarted).toBe(0);
        expect(waits).toEqual(['reconciler']);
        const releasedAt = Date.now();
        (release as unknown as () => void)();
        expect(await first).toEqual({ ran: true, value: 'first done' });
        expect(await second).toEqual({ ran: true, value: 'second done' });
        expect(secondStarted - releasedAt).toBeLessThan(leaseTiming(TTL).pollMs + 300);
        expect(await leases.holder('backfill:teamwork')).toBeNull();
      });

      it('aborts the work with CONN_ERR_LEASE_LOST when the holder is cut off from the engine', async () => {
        const proxy = await startTcpProxy(engine.target);
        closers.push(() => proxy.close());
        const prefix = `t${randomUUID().slice(0, 8)}`;
        const leases = await open(prefix, engine.throughProxy(engine.url, proxy));
        let cutAt = 0;
        const run = holdLease({ leases, name: 'backfill:teamwork', holder: 'a', ttlMs: TTL }, (signal) => {
          cutAt = Date.now();
          proxy.freeze();
          return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
        });
        await expect(run).rejects.toMatchObject({ code: 'CONN_ERR_LEASE_LOST' });
        expect(Date.now() - cutAt).toBeLessThanOrEqual(leaseTiming(TTL).validForMs + 400);
        proxy.thaw();
      });

      it('gives up waiting when its signal aborts', async () => {
        const leases = await open();
        await leases.acquire('backfill:missive', 'reconciler', 5_000);
        const controller = new AbortController();
        const waiting = holdLease({ leases, name: 'backfill:missive', holder: 'operator', ttlMs: TTL, wait: true, signal: controller.signal }, async () => 'ran');
        setTimeout(() => controller.abort(), 200);
        expect(await waiting).toEqual({ ran: false, holder: 'reconciler' });
      });
    });
  });
}
