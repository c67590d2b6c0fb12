import { mkdirSync } from 'node:fs';
import type { PGlite, Transaction } from '@electric-sql/pglite';
import { lockDataDir } from './dataDirLock.js';
import { sqlText, type Db, type PreparedStatement, type Queryable, type QueryResult } from './db.js';

function wrap(target: PGlite | Transaction): Queryable {
  return {
    async query<R>(sql: string | PreparedStatement, params?: readonly unknown[]): Promise<QueryResult<R>> {
      // One embedded session: PGlite parses each time either way.
      const result = await target.query<R>(sqlText(sql), params as unknown[] | undefined);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
    async exec(sql: string): Promise<void> {
      await target.exec(sql);
    },
  };
}

/**
 * Embedded PostgreSQL (PGlite, WASM) with data in `dataDir`, or in memory when it is undefined.
 * The folder is locked to this process for as long as the store is open.
 * PGlite is one session: transactions and statements are serialised by PGlite itself.
 */
export async function createPgliteDb(dataDir: string | undefined): Promise<Db> {
  // Imported lazily: processes on a PostgreSQL server never load the WASM build.
  const { PGlite } = await import('@electric-sql/pglite');
  let unlock = () => {};
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    unlock = lockDataDir(dataDir);
  }
  let db: PGlite;
  try {
    db = await PGlite.create(dataDir);
  } catch (error) {
    unlock();
    throw error;
  }
  const direct = wrap(db);
  return {
    kind: 'pglite',
    poolStats: () => null,
    query: direct.query,
    exec: direct.exec,
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    withSession: (fn) => fn(direct),
    close: async () => {
      try {
        await db.close();
      } finally {
        unlock();
      }
    },
  };
}
