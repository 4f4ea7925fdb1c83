/**
 * Opening what admin actions work on, from the settings, as a second process on the same DATA_DIR
 * (or the same database and Redis) as a running connector. The file queue allows that: any number of
 * processes may append, read stats, peek and replay dead letters; only the worker claims (see
 * src/queue/file-queue.ts). Callers close what they open.
 */
import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';
import { createDatabase } from '../db/create-database.ts';
import { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { createQueue } from '../queue/create-queue.ts';
import { engineAddress, engineSettings } from '../queue/engine.ts';
import type { Queue } from '../queue/queue.ts';
import { fileQueueWorker, type WorkerStatus } from './worker-status.ts';

/** The configured queue, opened for reading, appending and replaying (never claiming). */
export function openQueue(config: Config, log: Logger, lifecycle: Lifecycle = new Lifecycle()): Promise<Queue> {
  return createQueue(config, { log: log.child({ component: 'queue' }), lifecycle });
}

/** The configured database, migrated (migrations are safe to run from several processes at once). */
export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  const db = await createDatabase(config, { log: log.child({ component: 'db' }) });
  try {
    await db.migrate();
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  return db;
}

/** Whether a worker consumes the configured queue. */
export function queueWorker(config: Pick<Config, 'QUEUE_BACKEND' | 'queueDir'>): Promise<WorkerStatus> {
  if (config.QUEUE_BACKEND === 'file') return fileQueueWorker(config.queueDir);
  // BullMQ's worker listing does not see workers that pull by hand (ours), on either engine.
  return Promise.resolve({ state: 'unknown', reason: `not counted on a shared queue (QUEUE_BACKEND=${config.QUEUE_BACKEND}): any number of workers may claim; each worker's /health says whether it runs` });
}

/** Where the configured queue is, for operators: the directory, or the engine's address and queue names. */
export function queueLocation(config: Pick<Config, 'QUEUE_BACKEND' | 'queueDir' | 'REDIS_URL' | 'QUEUE_DATABASE_URL' | 'DATABASE_URL' | 'QUEUE_PREFIX'>): string {
  const settings = engineSettings(config);
  return settings === null ? config.queueDir : `${engineAddress(settings)}, queues ${settings.prefix}-*`;
}
