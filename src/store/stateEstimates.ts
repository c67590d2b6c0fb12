import type { Queryable } from './db.js';

/** What the planner assumes of the operations in one state, and how many there are. */
export interface StateEstimate {
  state: 'PENDING' | 'PROCESSING';
  /**
   * The rows the planner expects in the state's partial index: the count of its last vacuum or
   * analyze, scaled to the index's size now (as the planner does). Null before any counted it.
   */
  estimated: number | null;
  /** The rows in the state, counted up to the cap asked for. */
  counted: number;
}

/**
 * The planner's estimate of the PENDING and of the PROCESSING operations, each from the partial
 * index the claim reads them by, and a count of each up to `cap` from the same index (1.2 ms with
 * 20,000 PENDING). Each count asks for its index's order, so that no statistics can make a scan of
 * the whole table look cheaper, as one that expected many PENDING rows, taken in a burst, would.
 */
export async function readStateEstimates(db: Queryable, cap: number): Promise<StateEstimate[]> {
  const { rows } = await db.query<{ state: StateEstimate['state']; estimated: number | null; counted: number }>(
    `SELECT s.state,
            CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                 THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int) END::float8 AS estimated,
            CASE s.state
              WHEN 'PENDING' THEN (SELECT count(*) FROM (
                SELECT 1 FROM operations WHERE state = 'PENDING' ORDER BY (-priority), seq LIMIT $1) p)
              ELSE (SELECT count(*) FROM (
                SELECT 1 FROM operations WHERE state = 'PROCESSING' ORDER BY ordering_key LIMIT $1) r)
            END::int AS counted
     FROM (VALUES ('PENDING', 'operations_claim_idx'), ('PROCESSING', 'operations_running_key_idx')) AS s(state, index_name)
     JOIN pg_class c ON c.oid = to_regclass(s.index_name)
     ORDER BY s.state`,
    [cap],
  );
  return rows.map((row) => ({ state: row.state, estimated: row.estimated === null ? null : Number(row.estimated), counted: Number(row.counted) }));
}

/** Whether `operations` was ever vacuumed or analyzed, and the pages it holds now. */
export interface TableEstimate {
  known: boolean;
  pages: number;
}

export async function readTableEstimate(db: Queryable): Promise<TableEstimate> {
  const { rows } = await db.query<{ known: boolean; pages: number }>(
    `SELECT c.reltuples >= 0 AS known, (pg_relation_size(c.oid) / current_setting('block_size')::int)::int AS pages
     FROM pg_class c WHERE c.oid = to_regclass('operations')`,
  );
  return { known: rows[0]?.known ?? true, pages: Number(rows[0]?.pages ?? 0) };
}

/**
 * Refreshes the planner's statistics of `operations`, its indexes' row counts among them. Skipped,
 * without waiting, while another holds the table's maintenance lock: a vacuum under way, which
 * the wait would otherwise cancel if autovacuum runs it.
 */
export async function analyzeOperations(db: Queryable): Promise<void> {
  await db.query('ANALYZE (SKIP_LOCKED) operations');
}
