import { sqlText, type Db, type Queryable } from '../../src/store/db.js';
import { rolledBack } from './rolledBack.js';

/** Shared pages the statement read, found in the buffer or not, from its plan's root. */
export async function pagesRead(db: Queryable, sql: string, params: readonly unknown[]): Promise<number> {
  const { rows } = await db.query<{ 'QUERY PLAN': [{ Plan: Record<string, number> }] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params);
  const plan = rows[0]!['QUERY PLAN'][0].Plan;
  return (plan['Shared Hit Blocks'] ?? 0) + (plan['Shared Read Blocks'] ?? 0);
}

/**
 * The store as it is, adding up the pages read by the statements `picks` chooses (every one by
 * default), writes too: each runs first under EXPLAIN ANALYZE in a transaction rolled back after,
 * then for real.
 */
export function measuringPages(db: Db, picks: (sql: string) => boolean = () => true): { db: Db; pages: () => number } {
  let total = 0;
  const wrapped: Db = {
    ...db,
    query: async (sql, params) => {
      const text = sqlText(sql);
      if (picks(text)) total += await db.withSession((session) => rolledBack(session, () => pagesRead(session, text, params ?? [])));
      return db.query(sql, params);
    },
  };
  return { db: wrapped, pages: () => total };
}
