import { activeKeyVisit } from './activeKeyVisit.js';
import { pendingFoundByKey } from './pendingByKey.js';
import type { Queryable } from './db.js';

/**
 * The `head` mark (migration 014): a PENDING operation that was the first active one of its key when
 * it was written. Only PENDING operations hold it: a start clears it. A claim that cannot visit
 * every active key reads the marked due heads of its types instead of every due row, so the
 * operations queued behind heads it cannot start (a retry's backoff, a running one) cost it nothing.
 * A claim's first pass also takes a marked row at the mark's word instead of probing its key
 * (migration 017). The mark is still a hint: the start checks every head again, and clears the mark
 * of a row it refuses, so a false mark (two operations on a key accepted at once, neither statement
 * seeing the other) costs one refusal. A missing one delays the operation until the head marker
 * (src/worker/headMarker.ts) or a pass that reads unmarked rows finds it.
 *
 * Written where an operation becomes a head: on accept (acceptOperations), on its return to PENDING
 * from PROCESSING or FAILED ({@link HEAD_ON_RETURN}), and when the operation before it on its key ends
 * ({@link markHeadsOnKeys}).
 */

/**
 * A SET item for a projection row written from `x` over row `o`: an operation back in PENDING (from
 * PROCESSING, or redriven after it failed) is its key's head, nothing on its key having gone ahead
 * of it by seq; one in any other state holds no mark, so that the planner's statistics on the mark
 * count the PENDING heads alone.
 */
export const HEAD_ON_RETURN = `head = CASE WHEN x.state <> 'PENDING' THEN NULL WHEN o.state <> 'PENDING' THEN true ELSE o.head END`;

/**
 * An UPDATE, for a CTE, that marks the first active operation of each key in `from` as its head, if
 * it is PENDING and unmarked. `from`: a query of `(ordering_key, after_seq, ended_at)`, where the
 * look starts past `after_seq` on the key: past an ended operation that was the head (nothing on its
 * key is ahead of a running one), so that a key with nothing behind it costs a descent of the index
 * and no row; or at the start of the key (0) when the ended one may not have been the head.
 * `ended_at`, the time of that end, is written as the row's `turn_at`: a claim's start is never
 * stamped before it (migration 019). `leftOut`: a query of the ids the same statement writes, which
 * its snapshot still shows as they were. A row another transaction holds is skipped rather than
 * waited for: a finish must not wait on a claim, and the head marker comes by later.
 *
 * The look stays on the key: past its end it would read the next keys' entries, which in a drain
 * are the versions their own finishes left behind (a finish of 100 took 4.3 ms against 1.8).
 */
export function markHeadsOnKeys(from: string, leftOut: string): string {
  return markFirstActive(
    'marked',
    `(${from}) AS k(ordering_key, after_seq, ended_at)
       CROSS JOIN LATERAL (
         SELECT p.seq FROM operations p
         WHERE (p.ordering_key, p.seq) > (k.ordering_key, k.after_seq) AND p.ordering_key <= k.ordering_key
           AND p.state IN ('PENDING', 'PROCESSING') AND p.id NOT IN (${leftOut})
         ORDER BY p.ordering_key, p.seq LIMIT 1) f`,
    'f.seq',
    'k.ended_at',
  );
}

/**
 * An UPDATE, aliased `alias`, that marks as heads the rows at the seqs `seq` names in `firsts`
 * (each a key's first active operation), those of them PENDING and unmarked, skipping rows another
 * transaction holds; `turnAt`, an expression over `firsts`, is written as each one's `turn_at`.
 */
function markFirstActive(alias: string, firsts: string, seq: string, turnAt: string): string {
  return `UPDATE operations AS ${alias} SET head = true, turn_at = t.turn_at
     FROM (
       SELECT h.id, ${turnAt} AS turn_at FROM ${firsts}
       JOIN operations h ON h.seq = ${seq}
       WHERE ${pendingFoundByKey('h')} AND h.head IS NOT TRUE
       FOR UPDATE OF h SKIP LOCKED) t
     WHERE ${alias}.id = t.id`;
}

/** The states an operation ends in; its key's next active operation becomes the head. */
export const ENDED_STATES_SQL = `('COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED')`;

export interface HeadMarkPage {
  /** Operations marked in this page: heads whose mark was missing. */
  marked: string[];
  /** The last key visited, where the next page starts; null when none was left. */
  lastKey: string | null;
  /** Whether keys may remain past `lastKey`. */
  more: boolean;
}

/**
 * One page of the head marker: `keys` active keys from past `afterKey` (see activeKeyVisit), and the
 * first active operation of each marked where it is PENDING and unmarked. Rows another transaction
 * holds are skipped: a claim is taking them, or a write is marking them.
 */
export async function markUnmarkedHeads(db: Queryable, options: { afterKey?: string | undefined; keys: number }): Promise<HeadMarkPage> {
  const after = options.afterKey === undefined ? null : '$2';
  const { rows } = await db.query<{ k: string | null; visited: number; marked: string[] | null }>(
    `WITH RECURSIVE ${activeKeyVisit(after, '$1')}, marked AS (
       ${markFirstActive('o', 'active_keys v', 'v.head_seq', 'NULL::timestamptz')}
       RETURNING o.id
     )
     SELECT (SELECT max(k) FROM active_keys) AS k, (SELECT count(*)::int FROM active_keys) AS visited,
            (SELECT array_agg(id)::text[] FROM marked) AS marked`,
    after === null ? [options.keys] : [options.keys, options.afterKey],
  );
  const row = rows[0];
  return { marked: row?.marked ?? [], lastKey: row?.k ?? null, more: (row?.visited ?? 0) >= options.keys };
}
