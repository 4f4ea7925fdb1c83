/** The settings that turn on each source's API (enrichment and backfill), named in operator messages. */
import type { SourceName } from '../model.ts';

export const SOURCE_API_SETTINGS: Readonly<Record<SourceName, string>> = {
  teamwork: 'TEAMWORK_API_KEY and TEAMWORK_SITE (or TEAMWORK_BASE_URL)',
  missive: 'MISSIVE_API_TOKEN',
};

/** The setting that holds each source's webhook signing secret. */
export const SOURCE_SECRET_SETTINGS: Readonly<Record<SourceName, 'TEAMWORK_WEBHOOK_TOKEN' | 'MISSIVE_WEBHOOK_SECRET'>> = {
  teamwork: 'TEAMWORK_WEBHOOK_TOKEN',
  missive: 'MISSIVE_WEBHOOK_SECRET',
};
