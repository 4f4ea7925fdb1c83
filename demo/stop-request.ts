/**
 * When the demo should stop. The first SIGINT or SIGTERM (or the `--duration` deadline) asks for a
 * graceful stop; a signal that comes `samePressMs` or more after the first exits at once. Signals
 * closer than that count as the same Ctrl-C: one key press can arrive more than once, because the
 * terminal signals the whole process group and npm and tsx also pass the signal on to their child.
 *
 * States: waiting -> stopping (`reason` set, `stopped` resolved) -> [second signal: process exits].
 */
export interface StopRequestOptions {
  /** Signals this close to the first are the same press, ms. Default 1,000. */
  samePressMs?: number;
  /** Called instead of a graceful stop on a second press. Default: say so and exit 1. */
  onForce?: (signal: NodeJS.Signals) => void;
}

export class StopRequest {
  /** Why the stop was asked for (a signal name or "duration"); null while waiting. */
  reason: string | null = null;
  /** Resolves with the reason on the first request. */
  readonly stopped: Promise<string>;
  private resolve: (reason: string) => void = () => {};
  private firstSignalAt: number | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private readonly samePressMs: number;
  private readonly onForce: (signal: NodeJS.Signals) => void;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    const now = performance.now();
    if (this.firstSignalAt === null) {
      this.firstSignalAt = now;
      this.request(signal);
    } else if (now - this.firstSignalAt >= this.samePressMs) {
      this.onForce(signal);
    }
  };

  constructor(options: StopRequestOptions = {}) {
    this.samePressMs = options.samePressMs ?? 1_000;
    this.onForce =
      options.onForce ??
      ((signal) => {
        process.stdout.write(`\n${signal} again: exiting at once.\n`);
        process.exit(1);
      });
    this.stopped = new Promise((resolve) => (this.resolve = resolve));
  }

  /** Starts listening for SIGINT and SIGTERM. */
  listen(): this {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    return this;
  }

  /** Asks for a stop after `seconds`. */
  after(seconds: number): void {
    this.deadline = setTimeout(() => this.request('duration'), seconds * 1000);
  }

  request(reason: string): void {
    this.reason ??= reason;
    this.clearDeadline();
    this.resolve(this.reason);
  }

  /** Stops the deadline; signals are still heard (a second press still exits at once). */
  clearDeadline(): void {
    if (this.deadline !== null) clearTimeout(this.deadline);
    this.deadline = null;
  }
}
