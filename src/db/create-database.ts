/**
 * The one factory for the Database seam, keyed by DB_BACKEND. Drivers other than the embedded default
 * are imported only when chosen, so the default needs nothing else. With a shared queue, Airtable's
 * checkpoints are kept in the queue's engine rather than in one host's DATA_DIR (engine-checkpoints.ts).
 */
import type { BudgetStore } from '../budget/budget-store.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Database } from './database.ts';
import { engineSettings } from '../queue/engine.ts';

export interface DatabaseDeps {
  log: Logger;
  /** The vendor budgets every worker process shares (Airtable's requests per base). Default: this process's own. */
  budgets?: BudgetStore | null;
}

export async function createDatabase(config: Config, deps: DatabaseDeps): Promise<Database> {
  switch (config.DB_BACKEND) {
    case 'sqlite': {
      const { SqliteDatabase } = await import('./sqlite/sqlite-database.ts');
      return new SqliteDatabase({ file: config.sqlitePath });
    }
    case 'postgres': {
      const { PostgresDatabase } = await import('./postgres/postgres-database.ts');
      return new PostgresDatabase({ connectionString: config.DATABASE_URL as string, log: deps.log });
    }
    case 'airtable': {
      const { createAirtableDatabase } = await import('./airtable/airtable-database.ts');
      const settings = engineSettings(config);
      if (settings === null) return createAirtableDatabase(config, deps);
      const { engineCheckpoints } = await import('./airtable/engine-checkpoints.ts');
      const { FileCheckpoints } = await import('./airtable/file-checkpoints.ts');
      return createAirtableDatabase(config, { ...deps, checkpoints: engineCheckpoints(settings, new FileCheckpoints(config.checkpointDir)) });
    }
    default: {
      const unreachable: never = config.DB_BACKEND;
      throw new Error(`unknown DB_BACKEND ${String(unreachable)}`);
    }
  }
}
