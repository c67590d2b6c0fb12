/**
 * The per-key order rule, as SQL on an `operations` row aliased `o`: nothing accepted earlier on
 * its ordering key is still active, and nothing on its key is running. The second clause also
 * covers an earlier operation whose insert committed late. Dispatch and successor starts use this
 * definition; the claim function `opsd_claim` (migrations/007) spells out the same clauses, so a
 * change here is a new migration there too.
 *
 * `o` must be active itself; `except`: a query of ids to leave out (operations ending in the same
 * statement).
 *
 * Two probes, each bounded by what is ahead of or running on the key, never by what waits behind.
 * As one probe with `seq < o.seq OR running`, the check walked the key's whole backlog to rule out
 * something running behind (1,900 pages for the head of a key with 2,000 waiting, test/headCheck).
 * - The first active operation on the key is this one: the first live entry of the key in the
 *   active-key index. Asked as "nothing earlier is active", the planner costs the probe by the
 *   first match it expects and may pick a scan that, for a head (which has none), reads the table.
 * - Nothing on the key runs: the index of running operations by key (migration 007). `OFFSET 0`
 *   keeps it a probe per row: pulled up into an anti-join, on statistics that lag a queue table's
 *   bursts, the check hashed every active row (5.7 ms of a 7 ms claim of 100 with 20,000 PENDING,
 *   against 0.2 ms as probes).
 */
export function isHeadOfKey(except?: string): string {
  const leftOut = except ? `AND p.id NOT IN (${except})` : '';
  return `o.seq = (
    SELECT p.seq FROM operations p
    WHERE p.ordering_key = o.ordering_key AND p.state IN ('PENDING', 'PROCESSING') ${leftOut}
    ORDER BY p.seq LIMIT 1)
  AND NOT EXISTS (
    SELECT 1 FROM operations p
    WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING' ${leftOut}
    OFFSET 0)`;
}
