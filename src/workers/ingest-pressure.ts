/**
 * Deliveries first. When one process both receives webhooks and works the queue (`start`), the two
 * share one event loop. A vendor's flood (a retry storm after an outage, a bulk edit) can saturate it;
 * then every event the worker handles delays the acknowledgement of deliveries that are already
 * durable in the queue, and vendors that wait too long retry or disable the hook. IngestPressure says
 * when that is happening, and the dispatcher then paces itself (DispatcherOptions.yieldTo): deliveries
 * are answered at the rate the process can take, the queue absorbs the burst, and the worker catches
 * up at full speed as soon as the loop has room again. Nothing is lost or reordered by this: it only
 * moves work later.
 *
 * The signal, sampled every `windowMs`: over the last window the event loop was busy at least
 * `busyAbove` (75%) of the time (performance.eventLoopUtilization) AND at least `minDeliveries` deliveries were
 * accepted. Both are needed: a busy loop without deliveries is the worker's own backlog (never slowed),
 * and deliveries on a loop with room cost the worker nothing.
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Lifecycle } from '../lifecycle.ts';

export interface IngestPressureOptions {
  /** Sampling window, ms. Default 100. */
  windowMs?: number;
  /**
   * Event-loop utilisation (0..1) at or above which the loop counts as saturated. Default 0.75: a loop
   * taking deliveries as fast as it can still idles while each group commit's fsync is in flight (about
   * 15% of the time in bench/ingest), so "saturated" reads well below 1.
   */
  busyAbove?: number;
  /** Deliveries per window at or above which they count as a flood. Default 20 (200/s at 100 ms). */
  minDeliveries?: number;
}

export class IngestPressure {
  private readonly busyAbove: number;
  private readonly minDeliveries: number;
  private readonly unsubscribe: () => void;
  private readonly timer: NodeJS.Timeout;
  private deliveries = 0;
  private last: EventLoopUtilization;
  private highNow = false;

  constructor(lifecycle: Lifecycle, options: IngestPressureOptions = {}) {
    this.busyAbove = options.busyAbove ?? 0.75;
    this.minDeliveries = options.minDeliveries ?? 20;
    this.unsubscribe = lifecycle.on('delivery:accepted', () => {
      this.deliveries++;
    });
    this.last = performance.eventLoopUtilization();
    this.timer = setInterval(() => this.sample(), options.windowMs ?? 100);
    this.timer.unref();
  }

  /** True while deliveries flood a saturated event loop (as of the last window). */
  get high(): boolean {
    return this.highNow;
  }

  close(): void {
    clearInterval(this.timer);
    this.unsubscribe();
    this.highNow = false;
  }

  private sample(): void {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
    this.highNow = busy >= this.busyAbove && this.deliveries >= this.minDeliveries;
    this.deliveries = 0;
  }
}
