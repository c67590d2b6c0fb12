import type { Queryable } from './db.js';
import { IS_HEAD_OF_KEY } from './headOfKey.js';

/** What a dispatcher needs to wake a worker for one operation. */
export interface DispatchTarget {
  id: string;
  type: string;
  version: number;
  runAt: string;
}

/**
 * PENDING operations at the head of their ordering key (nothing earlier on the key is active,
 * nothing on it runs): the ones a worker could claim now or at `run_at`. Reads only, locks nothing.
 * With `orderingKey`, the next one on that key (after an operation on it ended); with
 * `unchangedSince`, only heads nobody touched since then (the reconciler's view of "forgotten").
 */
export async function findClaimableHeads(
  db: Queryable,
  options: { orderingKey?: string; unchangedSince?: Date; limit: number },
): Promise<DispatchTarget[]> {
  const { rows } = await db.query<{ id: string; type: string; version: number; run_at: Date }>(
    `SELECT o.id, o.type, o.version, o.run_at FROM operations o
     WHERE o.state = 'PENDING'
       AND ($1::text IS NULL OR o.ordering_key = $1)
       AND ($2::timestamptz IS NULL OR o.updated_at <= $2)
       AND ${IS_HEAD_OF_KEY}
     ORDER BY o.seq
     LIMIT $3`,
    [options.orderingKey ?? null, options.unchangedSince?.toISOString() ?? null, options.limit],
  );
  return rows.map((row) => ({ id: row.id, type: row.type, version: row.version, runAt: row.run_at.toISOString() }));
}
