/**
 * The one factory for the Queue seam, keyed by QUEUE_BACKEND: the file queue (the embedded default,
 * `${DATA_DIR}/queue`), or BullMQ on Redis or PostgreSQL (several processes on several hosts). A shared
 * engine is probed first: one that does not answer, or a Redis that does not keep acknowledged
 * deliveries on disk (see engine.ts), stops start-up with one line naming the setting.
 */
import type { Config } from '../config.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { Queue } from './queue.ts';
import type { CrashPoint } from './file-queue.ts';
import { engineSettings, engineUrlSetting, judgeDurability, probeEngine, unreachableEngine, type EngineReport } from './engine.ts';

export interface QueueDeps {
  log: Logger;
  lifecycle: Lifecycle;
  /** Test hook: stop the file queue at a named crash point (see CRASH_POINTS in file-queue.ts). */
  crashPoint?: (point: CrashPoint) => void;
  /** Compact once the consumed prefix passes this many bytes (tests use small values). Default 64 MiB. */
  compactThresholdBytes?: number;
  /** Told what the shared engine's durability is, when start-up accepted a weaker one (for /health). */
  onDurabilityWarning?: (warning: string) => void;
}

export type QueueConfig = Pick<Config, 'QUEUE_BACKEND' | 'queueDir' | 'REDIS_URL' | 'REDIS_DURABILITY' | 'QUEUE_DATABASE_URL' | 'DATABASE_URL' | 'QUEUE_PREFIX' | 'QUEUE_LOCK_SECONDS'>;

/** Opens the configured queue. */
export async function createQueue(config: QueueConfig, deps: QueueDeps): Promise<Queue> {
  const settings = engineSettings(config);
  if (settings === null) {
    const { FileQueue } = await import('./file-queue.ts');
    return FileQueue.open({ dir: config.queueDir, log: deps.log, lifecycle: deps.lifecycle, crashPoint: deps.crashPoint, compactThresholdBytes: deps.compactThresholdBytes });
  }
  let report: EngineReport;
  try {
    report = await probeEngine(settings);
  } catch (err) {
    throw unreachableEngine(settings, engineUrlSetting(settings, config), err);
  }
  const { warning } = judgeDurability(report, config.REDIS_DURABILITY === 'relaxed');
  if (warning !== null) {
    deps.log.warn(warning);
    deps.onDurabilityWarning?.(warning);
  }
  const { BullQueue } = await import('./bull-queue.ts');
  const queue = await BullQueue.open({ settings, log: deps.log, lifecycle: deps.lifecycle });
  deps.log.info(`queue: BullMQ on ${report.engine} ${report.version} at ${report.address} (${report.durability}), queues ${settings.prefix}-*`);
  return queue;
}
