/**
 * The process the SIGKILL harness (sigkill-storm.test.ts) kills: the whole connector (`start`: webhooks
 * and worker, SQLite, file queue) built in-process by startConnector, so that it can pass the file
 * queue's test options. Nothing here is product code; the product only offers the hooks.
 *
 * Environment (read by this script, not by the product):
 *   HARNESS_DIR            working directory: data/ and logs/ go under it
 *   HARNESS_TOKEN          the Teamwork webhook token
 *   HARNESS_CRASH_POINT    a file-queue crash point name (see CRASH_POINTS); unset: none
 *   HARNESS_CRASH_AFTER    SIGKILL this process the Nth time that point is reached (default 1)
 *   HARNESS_COMPACT_BYTES  the queue's compaction threshold, bytes (default 16 KiB: compacts often)
 *
 * It prints `READY <url>` once listening, and `CRASH <point>` just before it kills itself (stdout is a
 * pipe, which Node writes synchronously on Linux, so the line is out before the signal). SIGTERM stops
 * it gracefully (exit 0).
 */
import path from 'node:path';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { startConnector } from '../../src/main.ts';
import { CRASH_POINTS, type CrashPoint } from '../../src/queue/file-queue.ts';

const env = process.env;
const dir = env.HARNESS_DIR;
if (dir === undefined) throw new Error('HARNESS_DIR is required');
const chosen = env.HARNESS_CRASH_POINT as CrashPoint | undefined;
if (chosen !== undefined && !(CRASH_POINTS as readonly string[]).includes(chosen)) throw new Error(`unknown crash point ${chosen}`);
const after = Number(env.HARNESS_CRASH_AFTER ?? 1);
let reached = 0;

function crashPoint(point: CrashPoint): void {
  if (point !== chosen || ++reached < after) return;
  process.stdout.write(`CRASH ${point}\n`);
  process.kill(process.pid, 'SIGKILL');
}

const config = parseConfig({
  DATA_DIR: path.join(dir, 'data'),
  LOG_DIR: path.join(dir, 'logs'),
  HOST: '127.0.0.1',
  PORT: '0',
  LOG_LEVEL: 'warn',
  TEAMWORK_WEBHOOK_TOKEN: env.HARNESS_TOKEN,
  BACKFILL_ON_START: 'false',
});
const log = createLogger({ level: 'warn', logDir: config.LOG_DIR, console: true });
const connector = await startConnector(config, {
  roles: { serve: true, work: true },
  log,
  queue: { compactThresholdBytes: Number(env.HARNESS_COMPACT_BYTES ?? 16 * 1024), crashPoint },
});
process.stdout.write(`READY ${connector.url}\n`);
process.on('SIGTERM', () => {
  connector.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`stop failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
});
