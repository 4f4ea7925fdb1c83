/**
 * The leases this process holds, per budget, and the one timer that renews them: every LEASE_RENEW_MS
 * while any is held, none while none is (so an idle process keeps no timer). The timer is unref'd: it
 * never keeps a process alive. A renewal that fails is not retried early: the next tick tries again,
 * and LEASE_TTL_MS leaves two ticks of room before a lease expires.
 */
import { LEASE_RENEW_MS } from './budget-store.ts';

export class HeldLeases {
  private readonly byBudget = new Map<string, Set<string>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Pushes the expiry of `leases` of budget `name` out again. */
    private readonly renew: (name: string, leases: readonly string[]) => Promise<void>,
    private readonly everyMs = LEASE_RENEW_MS,
  ) {}

  add(name: string, lease: string): void {
    let set = this.byBudget.get(name);
    if (set === undefined) this.byBudget.set(name, (set = new Set()));
    set.add(lease);
    if (this.timer === null) {
      this.timer = setInterval(() => void this.tick(), this.everyMs);
      this.timer.unref();
    }
  }

  delete(name: string, lease: string): void {
    const set = this.byBudget.get(name);
    if (set === undefined) return;
    set.delete(lease);
    if (set.size === 0) this.byBudget.delete(name);
    if (this.byBudget.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private async tick(): Promise<void> {
    await Promise.all([...this.byBudget].map(([name, leases]) => this.renew(name, [...leases]).catch(() => {})));
  }
}
