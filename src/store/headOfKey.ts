/**
 * The per-key order rule, as SQL on an `operations` row aliased `o`: nothing on its key is running,
 * and nothing accepted earlier on its key is still active. The first clause also covers an earlier
 * operation whose insert committed late. Dispatch and successor starts use this definition, and
 * the walks of the keys (the reconciler's, the look for due deliveries) its first clause; the claim
 * function `opsd_claim` (its latest body in migrations/017) spells out the same clauses, so a change
 * here is a new migration there too.
 *
 * `o` must be active itself; `except`: a query of the `seq`s of operations to leave out (operations
 * ending in the same statement).
 *
 * Two probes, each bounded by what is ahead of or running on the key, never by what waits behind.
 * As one probe with `seq < o.seq OR running`, the check walked the key's whole backlog to rule out
 * something running behind (1,900 pages for the head of a key with 2,000 waiting, test/headCheck).
 * - Nothing on the key runs: the index of running operations by key (migration 007). Asked first:
 *   a scan meets every operation queued behind a running one, and this check turns each away
 *   without the next probe (4 pages a row, test/headCheck). Inside a CASE the planner keeps that
 *   order, and it cannot pull the check up into an anti-join, which on statistics that lag a queue
 *   table's bursts once hashed every active row; it can make it one hash of the running keys, which
 *   what runs bounds.
 * - The first active operation on the key is this one: the first entry at or after the operation's
 *   key in the active-key index, `(ordering_key, seq)`. Asked as `ordering_key = k ORDER BY seq`, the
 *   planner could answer by walking the seq index until a row of the key came up, on statistics
 *   that expect many rows per key (34 million pages for one claim, test/headCheck); no other index
 *   has this order. Asked as "nothing earlier is active", it costs the probe by the first match it
 *   expects and may pick a scan that, for a head (which has none), reads the table.
 * - With `except`, the probe reads the key's first two active entries and leaves the excepted out
 *   after. Two are enough: operations ending together each ran on their key, and at most one runs
 *   on a key. With the filter inside, on a column the index does not hold, the planner of the finish
 *   that starts successors walked every active entry from the key on and sorted them, for each start
 *   (a finish of 10 keys with 100 waiting on each, timed by auto_explain: 1.06 ms of its 1.86).
 * - The probe reads only what the active-key index holds, `(ordering_key, seq)`, and leaves the
 *   excepted out by `seq`, so that it is an index-only scan. On a key that has run many operations
 *   since the last vacuum, it starts past their entries, which point at row versions no longer
 *   active. A plain index scan visits each of those rows at every probe: it may mark an entry as
 *   dead only if the index page has not changed since it read it, and a busy key's page changes
 *   with each start. An index-only scan holds its page meanwhile, so it marks them, and the next
 *   probe skips them.
 */
export function isHeadOfKey(except?: string): string {
  const leftOut = except ? `AND p.seq NOT IN (${except})` : '';
  // The first `limit` active entries at or after the operation's key, in the active-key index's order.
  const firsts = (limit: number) => `SELECT p.ordering_key, p.seq FROM operations p
      WHERE p.ordering_key >= o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
      ORDER BY p.ordering_key, p.seq LIMIT ${limit}`;
  const firstActive = except
    ? `SELECT f.ordering_key, f.seq FROM (${firsts(2)}) f
      WHERE f.seq NOT IN (${except})
      ORDER BY f.ordering_key, f.seq LIMIT 1`
    : firsts(1);
  return `CASE WHEN ${nothingRunsOnKey('o.ordering_key', leftOut)}
    THEN (o.ordering_key, o.seq) = (${firstActive})
    ELSE false END`;
}

/**
 * The first clause of the rule alone, for `key` (an SQL expression): for a walk that already stands
 * at a key's first active operation, which only this clause can still rule out. `leftOut`: an extra
 * condition on the running row `p`.
 */
export function nothingRunsOnKey(key: string, leftOut = ''): string {
  return `NOT EXISTS (SELECT 1 FROM operations p WHERE p.ordering_key = ${key} AND p.state = 'PROCESSING' ${leftOut})`;
}
