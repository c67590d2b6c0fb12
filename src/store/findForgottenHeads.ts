import type { Queryable } from './db.js';
import type { DispatchTarget } from './findClaimableHeads.js';
import { nothingRunsOnKey } from './headOfKey.js';

export interface ForgottenHeadsPage {
  /** PENDING heads of the keys visited, due by `dueBy`, untouched since `unchangedSince`, nothing running on their key. */
  heads: DispatchTarget[];
  /** The last key visited, where the next page starts; null when no key was left to visit. */
  lastKey: string | null;
  /** Whether keys may remain past `lastKey`. */
  more: boolean;
}

export interface ForgottenHeadsOptions {
  unchangedSince: Date;
  dueBy: Date;
  /** Start past this key (the `lastKey` of the page before). */
  afterKey?: string | undefined;
  /** Keys to visit in this page. */
  keys: number;
}

/**
 * The statement of a page: the active keys in key order, each at its first entry in the active-key
 * index (its first active operation), `keys` of them at most, and that operation where it is a
 * PENDING head nobody touched. One probe per key, so a page never reads the operations queued
 * behind a head, however many there are (a head waiting out a backoff holds them all back).
 */
export function forgottenHeadsQuery(options: ForgottenHeadsOptions): { sql: string; params: unknown[] } {
  const start = options.afterKey === undefined ? '' : 'AND a.ordering_key > $4';
  const sql = `WITH RECURSIVE active_keys(k, head_seq, n) AS (
       (SELECT a.ordering_key, a.seq, 1 FROM operations a
        WHERE a.state IN ('PENDING', 'PROCESSING') ${start}
        ORDER BY a.ordering_key, a.seq LIMIT 1)
       UNION ALL
       SELECT following.ordering_key, following.seq, active_keys.n + 1
       FROM active_keys CROSS JOIN LATERAL (
         SELECT a.ordering_key, a.seq FROM operations a
         WHERE a.state IN ('PENDING', 'PROCESSING') AND a.ordering_key > active_keys.k
         ORDER BY a.ordering_key, a.seq LIMIT 1) following
       WHERE active_keys.n < $3
     )
     SELECT v.k, h.id, h.type, h.version, h.run_at FROM active_keys v
     LEFT JOIN operations h ON h.seq = v.head_seq
       AND h.state = 'PENDING' AND h.updated_at <= $1 AND h.run_at <= $2
       AND ${nothingRunsOnKey('v.k')}
     ORDER BY v.k`;
  const params: unknown[] = [options.unchangedSince.toISOString(), options.dueBy.toISOString(), options.keys];
  if (options.afterKey !== undefined) params.push(options.afterKey);
  return { sql, params };
}

/** One page of forgotten heads, in key order (see forgottenHeadsQuery). */
export async function findForgottenHeads(db: Queryable, options: ForgottenHeadsOptions): Promise<ForgottenHeadsPage> {
  const { sql, params } = forgottenHeadsQuery(options);
  const { rows } = await db.query<{ k: string; id: string | null; type: string; version: number; run_at: Date }>(sql, params);
  const heads = rows.flatMap((row) => (row.id === null ? [] : [{ id: row.id, type: row.type, version: row.version, runAt: row.run_at.toISOString() }]));
  return { heads, lastKey: rows.at(-1)?.k ?? null, more: rows.length >= options.keys };
}
