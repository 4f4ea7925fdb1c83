/**
 * `check-queue`: what is waiting, and for how long. Reads only, so it is safe while the connector runs
 * in another process on the same queue.
 *
 * The events listed are described, not shown: their payloads may hold email bodies, which never leave
 * the queue through an admin command.
 *
 * Run where there is no queue (another working directory, a DATA_DIR that is not the connector's), it
 * creates nothing: `noQueueAt` says where it looked and how to point it elsewhere, and the command
 * stops there (the CLI exits 2). Opening a queue that is missing would create an empty one and report
 * it as empty, with "worker: not running", while the real one fills up elsewhere.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { EventOrigin, QueueEvent, SourceName } from '../model.ts';
import type { Queue, QueueStats } from '../queue/queue.ts';
import type { WorkerStatus } from './worker-status.ts';

/** One waiting event, without its payload. */
export interface QueuedEventSummary {
  id: string;
  source: SourceName;
  type: string;
  entityKey: string | null;
  origin: EventOrigin;
  /** ISO 8601. */
  receivedAt: string;
}

/** An event's facts without its payload, as JSON shows them (check-queue, the console's lists). */
export function eventSummary(event: QueueEvent): QueuedEventSummary {
  return { id: event.id, source: event.source, type: event.type, entityKey: event.entityKey, origin: event.origin, receivedAt: event.receivedAt.toISOString() };
}

export interface QueueReport {
  backend: Queue['backend'];
  stats: QueueStats;
  /** Whether a worker consumes this queue (and so whether what waits will be processed). */
  worker: WorkerStatus;
  /**
   * True when in-flight events cannot be told from pending ones here: a file queue read by a process
   * that is not its worker counts the worker's claims as pending.
   */
  inFlightCountedAsPending: boolean;
  /** The newest events not yet done, newest first. */
  recent: QueuedEventSummary[];
}

export interface CheckQueueOptions {
  /** How many of the newest waiting events to describe. Default 10; 0 for none. */
  last?: number;
  worker: WorkerStatus;
  /** This process is not the queue's worker (a CLI command, not the dashboard of `start`). Default true. */
  outsideWorker?: boolean;
}

/**
 * For a file queue that is not there (no `inbox.jsonl` in `queueDir`): one line saying where it was
 * looked for and how to point at the right one; null when it is there (or the queue is not a file).
 */
export function noQueueAt(config: Pick<Config, 'QUEUE_BACKEND' | 'queueDir' | 'DATA_DIR'>): string | null {
  if (config.QUEUE_BACKEND !== 'file' || existsSync(path.join(config.queueDir, 'inbox.jsonl'))) return null;
  return `no queue at ${config.queueDir} (nothing has run with DATA_DIR=${config.DATA_DIR}; nothing was created): run this where the connector runs, or point it at the connector's data directory with --data-dir <dir> or DATA_DIR`;
}

export async function checkQueue(queue: Queue, options: CheckQueueOptions): Promise<QueueReport> {
  const last = Math.max(0, Math.floor(options.last ?? 10));
  const stats = await queue.stats();
  const recent = last === 0 ? [] : await queue.peek(last);
  return {
    backend: queue.backend,
    stats,
    worker: options.worker,
    inFlightCountedAsPending: queue.backend === 'file' && options.outsideWorker !== false && options.worker.state === 'running',
    recent: recent.map(eventSummary),
  };
}
