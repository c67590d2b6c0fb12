import type { Queryable } from './db.js';
import { isHeadOfKey } from './headOfKey.js';

/** What a dispatcher needs to wake a worker for one operation. */
export interface DispatchTarget {
  id: string;
  type: string;
  version: number;
  runAt: string;
}

/** Where a page of heads ends, in claim order (priority, then acceptance). */
export interface HeadCursor {
  priority: number;
  seq: number;
}

/**
 * PENDING operations at the head of their ordering key (nothing earlier on the key is active,
 * nothing on it runs): the ones a worker could claim now or at `run_at`, in the order claims take
 * them. Reads only, locks nothing. With `unchangedSince`, only heads nobody touched since then (the
 * reconciler's view of "forgotten").
 */
export async function findClaimableHeads(
  db: Queryable,
  options: {
    unchangedSince?: Date;
    /** Only heads due by then (`run_at <= dueBy`). */
    dueBy?: Date;
    /** Only heads after this one in claim order, to page through all of them. */
    after?: HeadCursor;
    limit: number;
  },
): Promise<(DispatchTarget & HeadCursor)[]> {
  const { rows } = await db.query<{ id: string; type: string; version: number; run_at: Date; seq: string | number; priority: number }>(
    `SELECT o.id, o.type, o.version, o.run_at, o.seq, o.priority FROM operations o
     WHERE o.state = 'PENDING'
       AND ($1::timestamptz IS NULL OR o.updated_at <= $1)
       AND ($3::timestamptz IS NULL OR o.run_at <= $3)
       AND ($4::integer IS NULL OR ((-o.priority), o.seq) > ($4::integer, $5::bigint))
       AND ${isHeadOfKey()}
     ORDER BY (-o.priority), o.seq
     LIMIT $2`,
    [
      options.unchangedSince?.toISOString() ?? null,
      options.limit,
      options.dueBy?.toISOString() ?? null,
      options.after ? -options.after.priority : null,
      options.after?.seq ?? null,
    ],
  );
  return rows.map((row) => ({ id: row.id, type: row.type, version: row.version, runAt: row.run_at.toISOString(), seq: Number(row.seq), priority: row.priority }));
}
