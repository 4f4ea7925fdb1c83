/**
 * The one test suite every BudgetStore must pass (Redis and PostgreSQL), through the contract in
 * src/budget/budget-store.ts. Several stores opened on one prefix stand for several processes (each
 * has its own connection). The one look behind the contract is the harness's `starts`: the start log
 * as the engine keeps it, read back so that the sliding-window rule is checked on the engine's own
 * times, for every span, not sampled.
 *
 * Timing: windows of a few hundred milliseconds; "refused now" is checked right after the grants,
 * "granted again" after the wait the store itself gave (plus a little).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { BudgetSpec, BudgetStore, Reservation } from '../../src/budget/budget-store.ts';

export interface BudgetHarness {
  /** A store on the harness's prefix (another "process" each time), or on `prefix`. */
  open(options?: { leaseTtlMs?: number; prefix?: string }): Promise<BudgetStore>;
  /** The engine's start log of budget `name` (engine ms, oldest first). */
  starts(name: string): Promise<number[]>;
  /** Removes everything the harness's prefixes hold (after each test, stores closed). */
  destroy(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The most starts within any span shorter than `windowMs`. */
export function maxInWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while ((sorted[hi] as number) - (sorted[lo] as number) >= windowMs) lo++;
    max = Math.max(max, hi - lo + 1);
  }
  return max;
}

function refused(answer: Reservation): Extract<Reservation, { granted: false }> {
  if (answer.granted) throw new Error('expected a refusal, got a grant');
  return answer;
}

export function budgetStoreConformance(name: string, makeHarness: () => BudgetHarness): void {
  describe(`BudgetStore conformance: ${name}`, () => {
    const opened: BudgetStore[] = [];
    let harness: BudgetHarness | null = null;

    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
      await harness?.destroy();
      harness = null;
    });

    async function stores(count: number, options: { leaseTtlMs?: number } = {}): Promise<BudgetStore[]> {
      harness ??= makeHarness();
      const made: BudgetStore[] = [];
      for (let i = 0; i < count; i++) made.push(await harness.open(options));
      opened.push(...made);
      return made;
    }

    it('grants up to the window\'s limit, then refuses until the oldest start has left the window', async () => {
      const [store] = (await stores(1)) as [BudgetStore];
      const spec: BudgetSpec = { name: 'tw', concurrency: null, windows: [{ limit: 3, intervalMs: 400 }] };
      expect(await store.reserve(spec)).toEqual({ granted: true, lease: null });
      await sleep(150);
      for (let i = 0; i < 2; i++) expect(await store.reserve(spec)).toEqual({ granted: true, lease: null });
      const no = refused(await store.reserve(spec));
      expect(no).toMatchObject({ why: 'window', window: { limit: 3, intervalMs: 400 } });
      // Until the first start leaves: 400 ms after it, at most 250 ms from now.
      expect(no.waitMs).toBeGreaterThan(0);
      expect(no.waitMs).toBeLessThanOrEqual(252);
      await sleep(no.waitMs + 10);
      expect((await store.reserve(spec)).granted).toBe(true);
      // The second and third starts are still within the window: full again.
      expect(refused(await store.reserve(spec)).why).toBe('window');
    });

    it('enforces every window, and names the one that is full', async () => {
      const [store] = (await stores(1)) as [BudgetStore];
      const spec: BudgetSpec = { name: 'mv', concurrency: null, windows: [{ limit: 2, intervalMs: 200 }, { limit: 3, intervalMs: 1500 }] };
      await store.reserve(spec);
      await store.reserve(spec);
      const first = refused(await store.reserve(spec));
      expect(first).toMatchObject({ why: 'window', window: { limit: 2, intervalMs: 200 } });
      await sleep(first.waitMs + 10);
      expect((await store.reserve(spec)).granted).toBe(true);
      const second = refused(await store.reserve(spec));
      expect(second).toMatchObject({ why: 'window', window: { limit: 3, intervalMs: 1500 } });
      expect(second.waitMs).toBeGreaterThan(1000);
    });

    it('keeps every span of a window within its limit while four processes reserve flat out (sliding, not fixed)', async () => {
      const many = await stores(4);
      const spec: BudgetSpec = { name: 'race', concurrency: null, windows: [{ limit: 5, intervalMs: 150 }, { limit: 10_000, intervalMs: 20_000 }] };
      const until = Date.now() + 1_000;
      const granted = await Promise.all(
        many.map(async (store) => {
          let count = 0;
          while (Date.now() < until) {
            const answer = await store.reserve(spec);
            if (answer.granted) count++;
            else await sleep(Math.min(answer.waitMs, 5));
          }
          return count;
        }),
      );
      const starts = await (harness as BudgetHarness).starts('race');
      expect(starts.length).toBe(granted.reduce((a, b) => a + b, 0));
      expect(maxInWindow(starts, 150)).toBe(5);
      // The budget was used, by more than one process: 1 s holds about 6.7 windows of 5.
      expect(starts.length).toBeGreaterThanOrEqual(25);
      expect(granted.filter((n) => n > 0).length).toBeGreaterThan(1);
    });

    it('limits requests in flight across processes; a release frees the slot at once', async () => {
      const [a, b] = (await stores(2)) as [BudgetStore, BudgetStore];
      const spec: BudgetSpec = { name: 'slots', concurrency: 2, windows: [] };
      const one = await a.reserve(spec);
      const two = await a.reserve(spec);
      expect(one.granted && two.granted).toBe(true);
      if (!one.granted || !two.granted) return;
      expect(one.lease).toEqual(expect.any(String));
      expect(one.lease).not.toBe(two.lease);
      const no = refused(await b.reserve(spec));
      expect(no.why).toBe('concurrency');
      expect(no.waitMs).toBeGreaterThan(0);
      await a.release('slots', one.lease as string);
      const three = await b.reserve(spec);
      expect(three.granted).toBe(true);
      expect(refused(await a.reserve(spec)).why).toBe('concurrency');
      // Releasing twice, or a lease that does not exist, changes nothing.
      await a.release('slots', one.lease as string);
      await a.release('slots', randomUUID());
      expect((await a.usage(spec)).inFlight).toBe(2);
    });

    it('gives back the slots of a process that died after their TTL, and keeps those of a live one by renewing them', async () => {
      const [dead, alive, other] = (await stores(3, { leaseTtlMs: 600 })) as [BudgetStore, BudgetStore, BudgetStore];
      const spec: BudgetSpec = { name: 'ttl', concurrency: 2, windows: [] };
      expect((await dead.reserve(spec)).granted).toBe(true);
      expect((await alive.reserve(spec)).granted).toBe(true);
      await dead.close(); // stops renewing: its lease is left to expire
      expect(refused(await other.reserve(spec)).why).toBe('concurrency');
      await sleep(800);
      const back = await other.reserve(spec);
      expect(back.granted).toBe(true);
      // The live one's lease has been renewed (every 200 ms) past its first expiry.
      expect(refused(await other.reserve(spec)).why).toBe('concurrency');
      expect((await other.usage(spec)).inFlight).toBe(2);
    });

    it('a pause written by one process refuses every reservation until it ends, with its reason; a shorter one does not shorten it', async () => {
      const [a, b] = (await stores(2)) as [BudgetStore, BudgetStore];
      const spec: BudgetSpec = { name: 'paused', concurrency: 5, windows: [{ limit: 100, intervalMs: 1_000 }] };
      await a.pause('paused', 400, 'answered 429, asking to wait 0.4 s');
      const no = refused(await b.reserve(spec));
      expect(no).toMatchObject({ why: 'paused', reason: 'answered 429, asking to wait 0.4 s' });
      expect(no.waitMs).toBeGreaterThan(100);
      expect(no.waitMs).toBeLessThanOrEqual(400);
      await b.pause('paused', 50, 'a shorter one');
      const still = refused(await a.reserve(spec));
      expect(still).toMatchObject({ why: 'paused', reason: 'answered 429, asking to wait 0.4 s' });
      expect(still.waitMs).toBeGreaterThan(50);
      // A longer pause without a reason (pacing) extends it and keeps the reason in force.
      await b.pause('paused', 600, null);
      const longer = refused(await a.reserve(spec));
      expect(longer).toMatchObject({ why: 'paused', reason: 'answered 429, asking to wait 0.4 s' });
      expect(longer.waitMs).toBeGreaterThan(still.waitMs);
      await sleep(longer.waitMs + 10);
      expect((await b.reserve(spec)).granted).toBe(true);
      // Pacing alone has no reason.
      await a.pause('paused', 300, null);
      expect(refused(await b.reserve(spec))).toMatchObject({ why: 'paused', reason: null });
    });

    it('keeps budgets apart by name and by prefix', async () => {
      const [a] = (await stores(1)) as [BudgetStore];
      const elsewhere = await (harness as BudgetHarness).open({ prefix: `t${randomUUID().slice(0, 8)}` });
      opened.push(elsewhere);
      const spec = (name: string): BudgetSpec => ({ name, concurrency: 1, windows: [{ limit: 1, intervalMs: 5_000 }] });
      expect((await a.reserve(spec('teamwork'))).granted).toBe(true);
      expect(refused(await a.reserve(spec('teamwork'))).why).toBe('concurrency');
      await a.pause('teamwork', 5_000, 'answered 429');
      expect((await a.reserve(spec('missive'))).granted).toBe(true);
      expect((await elsewhere.reserve(spec('teamwork'))).granted).toBe(true);
    });

    it('reports usage: starts per window, slots held, the pause in force; purge forgets the prefix', async () => {
      const [a] = (await stores(1)) as [BudgetStore];
      const spec: BudgetSpec = { name: 'use', concurrency: 3, windows: [{ limit: 10, intervalMs: 300 }, { limit: 20, intervalMs: 5_000 }] };
      const first = await a.reserve(spec);
      await a.reserve(spec);
      if (first.granted) await a.release('use', first.lease as string);
      await sleep(350);
      await a.reserve(spec);
      await a.pause('use', 1_000, 'answered 429');
      const usage = await a.usage(spec);
      expect(usage.windows).toEqual([
        { limit: 10, intervalMs: 300, used: 1 },
        { limit: 20, intervalMs: 5_000, used: 3 },
      ]);
      expect(usage.inFlight).toBe(2);
      expect(usage.pausedForMs).toBeGreaterThan(500);
      expect(usage.pauseReason).toBe('answered 429');
      await a.purge();
      expect(await a.usage(spec)).toEqual({ windows: [{ limit: 10, intervalMs: 300, used: 0 }, { limit: 20, intervalMs: 5_000, used: 0 }], inFlight: 0, pausedForMs: 0, pauseReason: null });
      expect((await a.reserve(spec)).granted).toBe(true);
    });
  });
}
