/**
 * A real Source for dispatcher tests: it turns an event's payload into a canonical task (teamwork) or
 * email (missive), and can be scripted per event id to fail with a given error code, wait, or hold
 * until released. It records every call, and how many handlers ran at once (overall and per entity).
 */
import { ConnectorError, type ErrorCode } from '../../src/errors.ts';
import type { Changes, QueueEvent, SourceName } from '../../src/model.ts';
import { noChanges } from '../../src/model.ts';
import type { Delivery, HandlerContext, ParsedDelivery, Source, VendorGate } from '../../src/sources/source.ts';
import { makeEmail, makeTask } from '../fixtures/records.ts';

/** What the payload of a test event carries. */
export interface TestPayload {
  /** The task id (teamwork) or message id (missive) written. */
  recordId: string;
  title: string;
  /** The vendor's update time, ISO-8601. */
  updatedAt: string;
}

/** One scripted call: the first call of an event uses the first step, and so on; then it succeeds. */
export interface Step {
  /** Throw a ConnectorError with this code. */
  fail?: ErrorCode;
  retryAfterMs?: number;
  /** Wait this long first, ms. */
  delayMs?: number;
  /** Wait until this resolves first. */
  hold?: Promise<void>;
  /** Wait until the handler's signal aborts (a vendor request that does not answer), then throw its reason. */
  untilAborted?: boolean;
}

export interface Call {
  eventId: string;
  entityKey: string | null;
  /** performance.now() at the start of the call. */
  at: number;
  /** What the dispatcher said: the event's last attempt. */
  lastAttempt: boolean;
}

export class ScriptedSource implements Source {
  readonly apiConfigured = false;
  /** The vendor's budget and health, when a test gives it one (a real RateLimiter). */
  vendor: VendorGate | undefined;
  readonly calls: Call[] = [];
  /** Most handlers of this source running at once. */
  maxActive = 0;
  /** Most handlers running at once for one entity key, per key. */
  readonly maxActiveByKey = new Map<string, number>();
  private active = 0;
  private readonly activeByKey = new Map<string, number>();
  private readonly scripts = new Map<string, Step[]>();
  private readonly onStart = new Set<() => void>();

  constructor(readonly name: SourceName) {}

  /** Scripts the next calls for `eventId`. */
  script(eventId: string, ...steps: Step[]): void {
    this.scripts.set(eventId, [...(this.scripts.get(eventId) ?? []), ...steps]);
  }

  /** Resolves once at least `n` handlers of this source run at the same time, or after `timeoutMs`. */
  concurrent(n: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.active < n) return;
        this.onStart.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.onStart.delete(check);
        resolve();
      }, timeoutMs);
      this.onStart.add(check);
      check();
    });
  }

  callsOf(eventId: string): Call[] {
    return this.calls.filter((c) => c.eventId === eventId);
  }

  verify(_delivery: Delivery): void {}

  parseWebhook(_delivery: Delivery): ParsedDelivery {
    return { events: [] };
  }

  async handle(event: QueueEvent, context: HandlerContext): Promise<Changes> {
    const key = event.entityKey;
    this.calls.push({ eventId: event.id, entityKey: key, at: performance.now(), lastAttempt: context.lastAttempt === true });
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    if (key !== null) {
      const n = (this.activeByKey.get(key) ?? 0) + 1;
      this.activeByKey.set(key, n);
      this.maxActiveByKey.set(key, Math.max(n, this.maxActiveByKey.get(key) ?? 0));
    }
    for (const listener of [...this.onStart]) listener();
    try {
      const step = this.scripts.get(event.id)?.shift();
      if (step?.delayMs !== undefined) await new Promise((r) => setTimeout(r, step.delayMs));
      if (step?.hold !== undefined) await step.hold;
      if (step?.untilAborted === true) {
        const signal = context.signal;
        await new Promise<void>((_resolve, reject) => {
          if (signal === undefined) return;
          if (signal.aborted) reject(signal.reason);
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        });
      }
      if (step?.fail !== undefined) {
        throw new ConnectorError(step.fail, `scripted ${step.fail} for ${event.id}`, step.retryAfterMs === undefined ? {} : { retryAfterMs: step.retryAfterMs });
      }
      return this.changesFor(event);
    } finally {
      this.active--;
      if (key !== null) this.activeByKey.set(key, (this.activeByKey.get(key) ?? 1) - 1);
    }
  }

  private changesFor(event: QueueEvent): Changes {
    const p = event.payload as TestPayload;
    const updatedAt = new Date(p.updatedAt);
    if (this.name === 'teamwork') return { ...noChanges(), tasks: [makeTask({ id: p.recordId, title: p.title, updatedAt, raw: p })] };
    return { ...noChanges(), emails: [makeEmail({ id: p.recordId, subject: p.title, updatedAt, attachments: [], raw: p })] };
  }
}
