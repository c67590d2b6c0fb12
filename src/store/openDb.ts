import type { Db } from './db.js';
import type { PgDbOptions } from './pgDb.js';
import { migrate } from './migrate.js';
import { importPgDb } from './importPgDb.js';
import { createPgliteDb } from './pgliteDb.js';

export interface OpenDbOptions {
  databaseUrl: string | undefined;
  dataDir: string;
  poolMax: number;
  /** See {@link PgDbOptions.connectTimeoutMs}. */
  connectTimeoutMs?: number;
  /** See {@link PgDbOptions.statementTimeoutMs}. */
  statementTimeoutMs?: number;
  applicationName?: string;
  /** Apply pending migrations before returning. Default true. */
  migrate?: boolean;
}

/** A PostgreSQL server when a URL is given, embedded PGlite otherwise; migrated unless told not to. */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  const db = options.databaseUrl
    ? (await importPgDb()).createPgDb({
        connectionString: options.databaseUrl,
        max: options.poolMax,
        applicationName: options.applicationName ?? 'opsd',
        ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
        ...(options.statementTimeoutMs !== undefined ? { statementTimeoutMs: options.statementTimeoutMs } : {}),
      })
    : await createPgliteDb(options.dataDir);
  if (options.migrate !== false) {
    try {
      await migrate(db);
    } catch (error) {
      await db.close().catch(() => {});
      throw error;
    }
  }
  return db;
}
