/**
 * The per-key order rule, as SQL on an `operations` row aliased `o`: nothing accepted earlier on
 * its ordering key is still active, and nothing on its key is running. The second clause also
 * covers an earlier operation whose insert committed late. Dispatch and successor starts use this
 * definition; the claim function `opsd_claim` (migrations/003) spells out the same clause, so a
 * change here is a new migration there too.
 *
 * `OFFSET 0` keeps it a probe of the active-key index per row. Without it the planner may pull the
 * check up into an anti-join and, on statistics that lag a queue table's bursts, hash every active
 * row for it (5.7 ms of a 7 ms claim of 100 with 20,000 PENDING, against 0.2 ms as probes).
 */
export const IS_HEAD_OF_KEY = `NOT EXISTS (
  SELECT 1 FROM operations p
  WHERE p.ordering_key = o.ordering_key
    AND p.state IN ('PENDING', 'PROCESSING')
    AND (p.seq < o.seq OR p.state = 'PROCESSING')
  OFFSET 0)`;
