/**
 * The connector logs everything at info and above to `app.log`; on the demo's screen only warnings and
 * errors appear, as lines above the status block rather than interleaved with it. This is the pino
 * destination that picks them out of the finished JSON lines (already scrubbed of secrets).
 */
import type { DestinationStream } from 'pino';

const SHOWN = new Set(['warn', 'error', 'fatal']);

/**
 * @param show receives "message (error message)" for each warning or error
 * @param minimum while it returns 'error', warnings are left out (during shutdown, when an aborted
 *   reconciliation warns as expected)
 */
export function forwardWarnings(show: (text: string, level: string) => void, minimum: () => 'warn' | 'error' = () => 'warn'): DestinationStream {
  return {
    write(line: string): void {
      let entry: { level?: unknown; msg?: unknown; err?: { message?: unknown } };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      const level = typeof entry.level === 'string' ? entry.level : '';
      if (!SHOWN.has(level) || (level === 'warn' && minimum() === 'error')) return;
      const msg = typeof entry.msg === 'string' ? entry.msg : '(no message)';
      const cause = typeof entry.err?.message === 'string' && !msg.includes(entry.err.message) ? ` (${entry.err.message})` : '';
      show(`${msg}${cause}`, level);
    },
  };
}
