/**
 * The one factory for the BudgetStore seam, keyed by the queue's settings: shared budgets live in the
 * shared queue's engine (QUEUE_BACKEND=redis: REDIS_URL; postgres: QUEUE_DATABASE_URL or DATABASE_URL),
 * under QUEUE_PREFIX. With the file queue there is one worker process, and its own budget is the whole
 * budget: null, and nothing is loaded. Never fails start-up: the queue already probed the engine, and
 * an engine that stops answering later makes vendor requests wait (see budget-store.ts), not the
 * connector stop.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { engineAddress, engineSettings } from '../queue/engine.ts';
import type { BudgetStore } from './budget-store.ts';

export type BudgetStoreConfig = Pick<Config, 'QUEUE_BACKEND' | 'REDIS_URL' | 'QUEUE_DATABASE_URL' | 'DATABASE_URL' | 'QUEUE_PREFIX'>;

export async function createBudgetStore(config: BudgetStoreConfig, deps: { log: Logger }): Promise<BudgetStore | null> {
  const settings = engineSettings(config);
  if (settings === null) return null;
  const where = `${settings.engine === 'redis' ? 'Redis' : 'PostgreSQL'} at ${engineAddress(settings)}`;
  if (settings.engine === 'redis') {
    const { RedisBudgetStore } = await import('./redis-budget-store.ts');
    return RedisBudgetStore.open({ url: settings.url, prefix: settings.prefix, log: deps.log, where });
  }
  const { PostgresBudgetStore } = await import('./postgres-budget-store.ts');
  return new PostgresBudgetStore({ url: settings.url, prefix: settings.prefix, log: deps.log, where });
}
