import type { Queryable } from './db.js';
import { isHeadOfKey } from './headOfKey.js';

/** What a dispatcher needs to wake a worker for one operation. */
export interface DispatchTarget {
  id: string;
  type: string;
  version: number;
  runAt: string;
}

/**
 * PENDING operations at the head of their ordering key (nothing earlier on the key is active,
 * nothing on it runs): the ones a worker could claim now or at `run_at`, in the order claims take
 * them, the first `limit`. Reads only, locks nothing. The reconciler, which needs every forgotten
 * head, visits keys instead (findForgottenHeads).
 */
export async function findClaimableHeads(
  db: Queryable,
  options: {
    /** Only heads due by then (`run_at <= dueBy`). */
    dueBy?: Date;
    /** Only heads of these types. */
    types?: readonly string[];
    limit: number;
  },
): Promise<DispatchTarget[]> {
  const { rows } = await db.query<{ id: string; type: string; version: number; run_at: Date }>(
    `SELECT o.id, o.type, o.version, o.run_at FROM operations o
     WHERE o.state = 'PENDING'
       AND ($2::timestamptz IS NULL OR o.run_at <= $2)
       AND ($3::text[] IS NULL OR o.type = ANY($3))
       AND ${isHeadOfKey()}
     ORDER BY (-o.priority), o.seq
     LIMIT $1`,
    [options.limit, options.dueBy?.toISOString() ?? null, options.types ? [...options.types] : null],
  );
  return rows.map((row) => ({ id: row.id, type: row.type, version: row.version, runAt: row.run_at.toISOString() }));
}
