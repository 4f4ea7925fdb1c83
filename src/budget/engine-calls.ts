/**
 * Every call a budget store makes to its engine goes through `EngineCalls.run`: bounded by
 * ENGINE_TIMEOUT_MS, failures turned into CONN_ERR_QUEUE_UNAVAILABLE, and the engine's health logged
 * once per change, not once per request:
 *
 *        a call fails (error or timeout): one WARN line
 *   ┌────┐ ─────────────────────────────────────────▶ ┌──────┐
 *   │ up │                                            │ down │   (further failures: debug only)
 *   └────┘ ◀───────────────────────────────────────── └──────┘
 *        a call answers again: one INFO line with how long it was down
 *
 * A call that timed out may still reach the engine later (a late reservation spends a slot nobody
 * uses; a late release or pause is harmless): the budget errs on the side of fewer requests.
 */
import { ConnectorError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ENGINE_TIMEOUT_MS } from './budget-store.ts';

export class EngineCalls {
  private downSince: number | null = null;

  constructor(
    private readonly log: Logger,
    /** `Redis at 127.0.0.1:6379`, for messages (never a URL with credentials). */
    private readonly where: string,
    private readonly timeoutMs = ENGINE_TIMEOUT_MS,
  ) {}

  async run<T>(what: string, call: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      const result = await Promise.race([call(), timeout]);
      this.answered();
      return result;
    } catch (err) {
      throw this.failed(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  private answered(): void {
    if (this.downSince === null) return;
    const seconds = Math.round((Date.now() - this.downSince) / 1000);
    this.downSince = null;
    this.log.info({ downSeconds: seconds }, `the shared vendor budgets answer again (${this.where}) after ${seconds} s`);
  }

  private failed(what: string, err: unknown): ConnectorError {
    const why = describe(err);
    if (this.downSince === null) {
      this.downSince = Date.now();
      this.log.warn({ err, operation: what }, `the shared vendor budgets cannot be read (${this.where}: ${why}); vendor requests wait and their events are retried until it answers`);
    } else {
      this.log.debug({ err, operation: what }, 'the shared vendor budgets still cannot be read');
    }
    return new ConnectorError('CONN_ERR_QUEUE_UNAVAILABLE', `the shared vendor budget cannot be read (${this.where}: ${why})`, { cause: err });
  }
}

/** The most telling word of an engine error: its code (ECONNREFUSED) or its message. */
function describe(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return err instanceof Error ? err.message : String(err);
}
