import { sqlText, type Db, type Queryable } from '../../src/store/db.js';

/** Shared pages the statement read, found in the buffer or not, from its plan's root. */
export async function pagesRead(db: Queryable, sql: string, params: readonly unknown[]): Promise<number> {
  const { rows } = await db.query<{ 'QUERY PLAN': [{ Plan: Record<string, number> }] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params);
  const plan = rows[0]!['QUERY PLAN'][0].Plan;
  return (plan['Shared Hit Blocks'] ?? 0) + (plan['Shared Read Blocks'] ?? 0);
}

/**
 * The store as it is, adding up the pages its reads take: each query is run once under EXPLAIN
 * ANALYZE first, so hand it only to code that reads.
 */
export function measuringPages(db: Db): { db: Db; pages: () => number } {
  let total = 0;
  const wrapped: Db = {
    ...db,
    query: async (sql, params) => {
      total += await pagesRead(db, sqlText(sql), params ?? []);
      return db.query(sql, params);
    },
  };
  return { db: wrapped, pages: () => total };
}
