/**
 * Typed lifecycle events: what happened, for metrics, the dashboard, logs and tests to subscribe to.
 * Emitting never throws and never waits: a failing listener is reported to `onListenerError` and the
 * others still run. Components emit; nothing emitted here changes what the emitter does next.
 */
import type { ErrorRecord } from './errors.ts';
import type { QueueEvent, RowRef, SourceName } from './model.ts';

export interface LifecycleEvents {
  'delivery:accepted': { source: SourceName; events: number; eventType?: string };
  'delivery:rejected': { source: SourceName; status: number; code: string };
  /** The server turned a client away on its own (src/server/limits.ts): a timeout, too many connections. */
  'http:refused': { reason: 'timeout' | 'connections' };
  /** A line that clients can cause was left out of the log (src/server/sampled-log.ts). */
  'log:suppressed': { reason: string };
  'queue:appended': { count: number };
  /** A worker lane claimed events (at least one); `sources` is the lane's, null for every source. */
  'events:claimed': { count: number; sources: readonly SourceName[] | null };
  /** `event` is the queue's object itself (not a copy): listeners must not change it. */
  'event:succeeded': { source: SourceName; eventId: string; attempt: number; records: number; durationMs: number; event: QueueEvent; rows: RowRef[] };
  'db:written': { backend: string; events: number; written: number; stale: number };
  /** `spent` false: the attempt did not count (the vendor was paused or down). */
  'event:retrying': { source: SourceName; eventId: string; attempt: number; delayMs: number; error: ErrorRecord; event: QueueEvent; spent: boolean };
  'event:dead-lettered': { source: SourceName; eventId: string; attempt: number; error: ErrorRecord; event: QueueEvent };
  'backfill:page': { source: SourceName; events: number; newestUpdate: string | null };
  /** `missed`: changes no webhook had delivered; null when the run was not judged (src/sync/missed-webhooks.ts). */
  'backfill:done': { source: SourceName; events: number; pages: number; durationMs: number; missed: number | null };
  'backfill:failed': { source: SourceName; error: ErrorRecord };
  /**
   * A reconciliation judged the changes it found (src/sync/missed-webhooks.ts): of `judged` changes
   * older than the grace time, `missed` were newer than the database held, so no webhook had brought them.
   */
  'reconcile:judged': { source: SourceName; judged: number; missed: number };
  'shutdown:start': { signal: string };
  /** A vendor's state changed (src/http/rate-limiter.ts): paused by it, taken for down, or ok again. */
  /** A vendor refused our credentials (401/403: `failing` true), or accepted them again (src/http/rate-limiter.ts `onAuthChange`). */
  'vendor:auth': { source: SourceName; failing: boolean; status?: number; detail?: string };
  'vendor:state': { source: SourceName; state: 'ok' | 'paused' | 'unavailable'; previous: 'ok' | 'paused' | 'unavailable'; until?: string; reason?: string };
}

export type LifecycleName = keyof LifecycleEvents;
type Listener<K extends LifecycleName> = (payload: LifecycleEvents[K]) => void;

export class Lifecycle {
  private readonly listeners = new Map<LifecycleName, Set<Listener<never>>>();

  constructor(private readonly onListenerError: (err: unknown, name: LifecycleName) => void = () => {}) {}

  on<K extends LifecycleName>(name: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends LifecycleName>(name: K, payload: LifecycleEvents[K]): void {
    const set = this.listeners.get(name);
    if (set === undefined) return;
    for (const listener of set) {
      try {
        (listener as Listener<K>)(payload);
      } catch (err) {
        this.onListenerError(err, name);
      }
    }
  }
}
