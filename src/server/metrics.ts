/**
 * Prometheus metrics for `GET /metrics`, fed only by lifecycle events, queue stats and the vendors'
 * budgets (read when scraped): nothing in the data path calls this module. Each registry is per
 * process (a fresh one per app in tests); the vendor series count the requests of this process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Lifecycle } from '../lifecycle.ts';
import { SOURCE_NAMES } from '../model.ts';
import type { Queue, QueueStats } from '../queue/queue.ts';
import type { Source } from '../sources/source.ts';

/** Delivery outcomes counted from the start at 0: accepted, and the statuses deliveries are refused with. */
const DELIVERY_OUTCOMES = ['accepted', '400', '401', '413', '415', '503'] as const;
const EVENT_OUTCOMES = ['succeeded', 'retrying', 'dead_lettered'] as const;

export interface Metrics {
  registry: Registry;
  /** The metrics as text, read afresh (the queue once per call). */
  render(): Promise<string>;
  /** Stops listening to lifecycle events. */
  detach(): void;
}

export function createMetrics(lifecycle: Lifecycle, queue: Queue, sources: readonly Source[] = []): Metrics {
  const registry = new Registry();
  // The default metrics are named process_* and nodejs_* already: the prefix is ours alone.
  collectDefaultMetrics({ register: registry, prefix: 'connector_' });

  const deliveries = new Counter({ name: 'connector_deliveries_total', help: 'Webhook deliveries by source and outcome (accepted, or the HTTP status refused with).', labelNames: ['source', 'outcome'], registers: [registry] });
  const events = new Counter({ name: 'connector_events_total', help: 'Events handled, by source and outcome (succeeded, retrying, dead_lettered).', labelNames: ['source', 'outcome'], registers: [registry] });
  const duration = new Histogram({ name: 'connector_event_duration_seconds', help: 'Time from claim to acknowledgement of an event.', labelNames: ['source'], buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] });
  const writes = new Counter({ name: 'connector_db_records_total', help: 'Records written to the database, and stale ones skipped.', labelNames: ['outcome'], registers: [registry] });
  const refusals = new Counter({ name: 'connector_http_refusals_total', help: 'Connections the server turned away on its own, by reason (timeout, connections).', labelNames: ['reason'], registers: [registry] });
  const suppressed = new Counter({ name: 'connector_log_lines_suppressed_total', help: 'Log lines left out by sampling (refused deliveries, timeouts), by reason.', labelNames: ['reason'], registers: [registry] });
  const backfill = new Counter({ name: 'connector_backfill_events_total', help: 'Events enqueued by backfills.', labelNames: ['source'], registers: [registry] });
  const missed = new Counter({ name: 'connector_missed_webhooks_total', help: 'Changes a reconciliation found that no webhook had delivered (reconcile:judged), by source.', labelNames: ['source'], registers: [registry] });

  // Every series exists at 0 from the start, so that a rate or an alert has something before the first delivery.
  for (const source of SOURCE_NAMES) {
    for (const outcome of DELIVERY_OUTCOMES) deliveries.inc({ source, outcome }, 0);
    for (const outcome of EVENT_OUTCOMES) events.inc({ source, outcome }, 0);
    missed.inc({ source }, 0);
  }

  // One read of the queue per scrape, shared by its gauges. A queue that cannot be read (a shared
  // engine away) makes its gauges vanish for that scrape and connector_queue_readable 0, rather than
  // failing the whole scrape.
  let scrape: Promise<QueueStats | null> | null = null;
  const readStats = (): Promise<QueueStats | null> => (scrape ??= queue.stats().catch(() => null));
  new Gauge({
    name: 'connector_queue_readable',
    help: 'Whether the queue answered this scrape (0: a shared engine is away; the queue gauges are missing).',
    registers: [registry],
    async collect() {
      this.set((await readStats()) === null ? 0 : 1);
    },
  });
  new Gauge({
    name: 'connector_queue_events',
    help: 'Events in the queue by state.',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const stats = await readStats();
      this.reset();
      if (stats === null) return;
      this.set({ state: 'pending' }, stats.pending);
      this.set({ state: 'in_flight' }, stats.inFlight);
      this.set({ state: 'delayed' }, stats.delayed);
      this.set({ state: 'dead_lettered' }, stats.deadLettered);
    },
  });
  new Gauge({
    name: 'connector_queue_oldest_pending_seconds',
    help: 'Age of the oldest event not yet done.',
    registers: [registry],
    async collect() {
      const stats = await readStats();
      this.reset();
      if (stats !== null) this.set((stats.oldestPendingAgeMs ?? 0) / 1000);
    },
  });

  // The vendors' state and requests, from their budgets (src/http/rate-limiter.ts), when scraped.
  const vendors = sources.flatMap((s) => (s.vendor === undefined ? [] : [{ source: s.name, gate: s.vendor }]));
  new Gauge({
    name: 'connector_vendor_paused',
    help: 'Whether a vendor cannot be asked now: 1 while it is paused (it rate-limited us) or unavailable (its requests keep failing; see connector_vendor_requests_total), else 0.',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      for (const { source, gate } of vendors) this.set({ source }, gate.status().state === 'ok' ? 0 : 1);
    },
  });
  new Counter({
    name: 'connector_vendor_requests_total',
    help: 'Vendor API requests made by this process, by outcome: answered, rate_limited (429), failed (5xx, network, timeout).',
    labelNames: ['source', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { source, gate } of vendors) {
        const { requests, rateLimited, failed } = gate.stats();
        this.inc({ source, outcome: 'answered' }, requests - rateLimited - failed);
        this.inc({ source, outcome: 'rate_limited' }, rateLimited);
        this.inc({ source, outcome: 'failed' }, failed);
      }
    },
  });

  const off = [
    lifecycle.on('delivery:accepted', (e) => deliveries.inc({ source: e.source, outcome: 'accepted' })),
    lifecycle.on('delivery:rejected', (e) => deliveries.inc({ source: e.source, outcome: String(e.status) })),
    lifecycle.on('http:refused', (e) => refusals.inc({ reason: e.reason })),
    lifecycle.on('log:suppressed', (e) => suppressed.inc({ reason: e.reason })),
    lifecycle.on('event:succeeded', (e) => {
      events.inc({ source: e.source, outcome: 'succeeded' });
      duration.observe({ source: e.source }, e.durationMs / 1000);
    }),
    lifecycle.on('event:retrying', (e) => events.inc({ source: e.source, outcome: 'retrying' })),
    lifecycle.on('event:dead-lettered', (e) => events.inc({ source: e.source, outcome: 'dead_lettered' })),
    lifecycle.on('db:written', (e) => {
      writes.inc({ outcome: 'written' }, e.written);
      writes.inc({ outcome: 'stale' }, e.stale);
    }),
    lifecycle.on('backfill:page', (e) => backfill.inc({ source: e.source }, e.events)),
    lifecycle.on('reconcile:judged', (e) => missed.inc({ source: e.source }, e.missed)),
  ];

  return {
    registry,
    async render(): Promise<string> {
      scrape = null;
      return registry.metrics();
    },
    detach: () => off.forEach((f) => f()),
  };
}
