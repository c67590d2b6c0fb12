/**
 * The active keys in key order, each at its first entry in the active-key index (its first active
 * operation), as the recursive CTE `active_keys(k, head_seq, n)`: one probe per key, so a visit never
 * reads the operations queued behind a head, however many there are. `after`: an SQL expression of
 * the key to start past, or null to start at the first; `keys`: an SQL expression of how many to visit.
 */
export function activeKeyVisit(after: string | null, keys: string): string {
  const start = after === null ? '' : `AND a.ordering_key > ${after}`;
  return `active_keys(k, head_seq, n) AS (
       (SELECT a.ordering_key, a.seq, 1 FROM operations a
        WHERE a.state IN ('PENDING', 'PROCESSING') ${start}
        ORDER BY a.ordering_key, a.seq LIMIT 1)
       UNION ALL
       SELECT following.ordering_key, following.seq, active_keys.n + 1
       FROM active_keys CROSS JOIN LATERAL (
         SELECT a.ordering_key, a.seq FROM operations a
         WHERE a.state IN ('PENDING', 'PROCESSING') AND a.ordering_key > active_keys.k
         ORDER BY a.ordering_key, a.seq LIMIT 1) following
       WHERE active_keys.n < ${keys}
     )`;
}
