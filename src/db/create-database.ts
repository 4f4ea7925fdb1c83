/**
 * The one factory for the Database seam, keyed by DB_BACKEND. Drivers other than the embedded default
 * are imported only when chosen, so the default needs nothing else.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Database } from './database.ts';

export async function createDatabase(config: Config, deps: { log: Logger }): Promise<Database> {
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
      return createAirtableDatabase(config, deps);
    }
    default: {
      const unreachable: never = config.DB_BACKEND;
      throw new Error(`unknown DB_BACKEND ${String(unreachable)}`);
    }
  }
}
