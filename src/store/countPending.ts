import type { Queryable } from './db.js';

/** PENDING operations of each of `types` (due or not): one walk of the claim index. */
export async function countPending(db: Queryable, types: readonly string[]): Promise<Map<string, number>> {
  if (types.length === 0) return new Map();
  const { rows } = await db.query<{ type: string; n: number }>(
    `SELECT type, count(*)::int AS n FROM operations WHERE state = 'PENDING' AND type = ANY($1::text[]) GROUP BY type`,
    [[...types]],
  );
  return new Map(rows.map((row) => [row.type, row.n]));
}
