/**
 * The sources this process runs: both vendors, always. A vendor without API credentials still accepts
 * webhooks; its enrichment and backfill are off, which start-up reports once.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { createMissiveSource } from './missive/index.ts';
import type { Source } from './source.ts';
import { createTeamworkSource } from './teamwork/index.ts';

export function createSources(config: Config, deps: { log: Logger }): Source[] {
  return [createTeamworkSource(config, { log: deps.log.child({ source: 'teamwork' }) }), createMissiveSource(config, { log: deps.log.child({ source: 'missive' }) })];
}
