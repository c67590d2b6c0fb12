/**
 * `alias` is PENDING, for a row the statement finds by its key (its id, or seq): written so that
 * the planner finds the row by that key whatever its statistics say of the PENDING rows.
 *
 * A queue that has caught up is vacuumed and analyzed with nothing PENDING. Its statistics then say
 * that the partial indexes of PENDING rows are empty, however large they grow until the next vacuum
 * (on a large table, a burst does not bring one). On them the planner found "the row with this key,
 * if PENDING" by walking such an index, the cheapest path in its eyes, once for each row it looked
 * up: 1.5 million pages to mark the next heads of 100 keys with 5,000 PENDING (test/staleStatistics).
 *
 * The condition is the same under the "C" collation (equality of text ignores deterministic
 * collations), but the planner uses a partial index only for a condition it proves implies the
 * index's, and it proves none across collations. migrations/015 writes the claim's the same way.
 */
export function pendingFoundByKey(alias: string): string {
  return `${alias}.state = 'PENDING' COLLATE "C"`;
}
