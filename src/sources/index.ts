/**
 * The sources this process runs: both vendors, always. A vendor without API credentials still accepts
 * webhooks; its enrichment and backfill are off, which start-up reports once.
 *
 * With the shared queue the composition root passes the engine's budget store (`budgets`): each
 * vendor's limiter then reserves from the budget every worker process shares (src/budget/).
 */
import type { BudgetStore } from '../budget/budget-store.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { createMissiveSource } from './missive/index.ts';
import type { Source } from './source.ts';
import { createTeamworkSource } from './teamwork/index.ts';

/** A vendor's windows made shorter, so that minutes pass in seconds (tests, with simulators scaled alike). */
export interface WindowTuning {
  /** Multiplies the vendor's window lengths. Default 1. */
  windowScale?: number;
  /** Added to each (scaled) window, ms, for the jitter between a request leaving and arriving. Default the vendor's. */
  windowMarginMs?: number;
}

/** Per vendor; production sets none. */
export interface SourceTuning {
  teamwork?: WindowTuning;
  missive?: WindowTuning;
}

export interface SourcesDeps {
  log: Logger;
  /** The vendor budgets every worker process shares (QUEUE_BACKEND=redis or postgres); null or absent: this process's own. */
  budgets?: BudgetStore | null;
  tuning?: SourceTuning;
}

export function createSources(config: Config, deps: SourcesDeps): Source[] {
  const budgets = deps.budgets ?? null;
  return [
    createTeamworkSource(config, { log: deps.log.child({ source: 'teamwork' }), budgets, ...deps.tuning?.teamwork }),
    createMissiveSource(config, { log: deps.log.child({ source: 'missive' }), rateLimit: { ...deps.tuning?.missive, budgets } }),
  ];
}
