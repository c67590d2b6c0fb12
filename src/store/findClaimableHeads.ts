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
 * With `unchangedSince`, only heads nobody touched since then (the reconciler's view of "forgotten").
 */
export async function findClaimableHeads(
  db: Queryable,
  options: {
    unchangedSince?: Date;
    /** Only heads due by then (`run_at <= dueBy`). */
    dueBy?: Date;
    /** Only heads accepted after this one (`seq > afterSeq`), to page through all of them. */
    afterSeq?: number;
    limit: number;
  },
): Promise<(DispatchTarget & { seq: number })[]> {
  const { rows } = await db.query<{ id: string; type: string; version: number; run_at: Date; seq: string | number }>(
    `SELECT o.id, o.type, o.version, o.run_at, o.seq FROM operations o
     WHERE o.state = 'PENDING'
       AND ($1::timestamptz IS NULL OR o.updated_at <= $1)
       AND ($3::timestamptz IS NULL OR o.run_at <= $3)
       AND ($4::bigint IS NULL OR o.seq > $4)
       AND ${IS_HEAD_OF_KEY}
     ORDER BY o.seq
     LIMIT $2`,
    [
      options.unchangedSince?.toISOString() ?? null,
      options.limit,
      options.dueBy?.toISOString() ?? null,
      options.afterSeq ?? null,
    ],
  );
  return rows.map((row) => ({ id: row.id, type: row.type, version: row.version, runAt: row.run_at.toISOString(), seq: Number(row.seq) }));
}
