/**
 * The one factory for the Queue seam, keyed by QUEUE_BACKEND. The file queue is the embedded default;
 * the Redis queue (scale-out) is not built yet and is refused with a clear message.
 */
import type { Config } from '../config.ts';
import { ConnectorError } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { Queue } from './queue.ts';
import type { CrashPoint } from './file-queue.ts';

export interface QueueDeps {
  log: Logger;
  lifecycle: Lifecycle;
  /** Test hook: stop the file queue at a named crash point (see CRASH_POINTS in file-queue.ts). */
  crashPoint?: (point: CrashPoint) => void;
  /** Compact once the consumed prefix passes this many bytes (tests use small values). Default 64 MiB. */
  compactThresholdBytes?: number;
}

/** Opens the configured queue: `${DATA_DIR}/queue` for QUEUE_BACKEND=file. */
export async function createQueue(config: Pick<Config, 'QUEUE_BACKEND' | 'queueDir'>, deps: QueueDeps): Promise<Queue> {
  switch (config.QUEUE_BACKEND) {
    case 'file': {
      const { FileQueue } = await import('./file-queue.ts');
      return FileQueue.open({ dir: config.queueDir, log: deps.log, lifecycle: deps.lifecycle, crashPoint: deps.crashPoint, compactThresholdBytes: deps.compactThresholdBytes });
    }
    case 'redis':
      throw new ConnectorError('CONN_ERR_CONFIG_INVALID', 'Invalid setting QUEUE_BACKEND: the redis queue is not built yet; use QUEUE_BACKEND=file', {
        details: { variable: 'QUEUE_BACKEND' },
      });
    default: {
      const never: never = config.QUEUE_BACKEND;
      throw new ConnectorError('CONN_ERR_CONFIG_INVALID', `Invalid setting QUEUE_BACKEND: unknown backend ${String(never)}`, { details: { variable: 'QUEUE_BACKEND' } });
    }
  }
}
