import type { Queryable } from './db.js';
import type { DispatchTarget } from './findClaimableHeads.js';
import { activeKeyVisit } from './activeKeyVisit.js';
import { nothingRunsOnKey } from './headOfKey.js';
import { pendingFoundByKey } from './pendingByKey.js';

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
 * The statement of a page: `keys` active keys at most (see activeKeyVisit), and the first active
 * operation of each where it is a PENDING head nobody touched (a head waiting out a backoff holds
 * back everything queued behind it, and the visit never reads those).
 */
export function forgottenHeadsQuery(options: ForgottenHeadsOptions): { sql: string; params: unknown[] } {
  const sql = `WITH RECURSIVE ${activeKeyVisit(options.afterKey === undefined ? null : '$4', '$3')}
     SELECT v.k, h.id, h.type, h.version, h.run_at FROM active_keys v
     LEFT JOIN operations h ON h.seq = v.head_seq
       AND ${pendingFoundByKey('h')} AND h.updated_at <= $1 AND h.run_at <= $2
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
