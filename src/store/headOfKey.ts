/**
 * The per-key order rule, as SQL on an `operations` row aliased `o`: nothing accepted earlier on
 * its ordering key is still active, and nothing on its key is running. The second clause also
 * covers an earlier operation whose insert committed late. Claims and dispatch share this one
 * definition, so "claimable" means the same thing everywhere.
 */
export const IS_HEAD_OF_KEY = `NOT EXISTS (
  SELECT 1 FROM operations p
  WHERE p.ordering_key = o.ordering_key
    AND p.state IN ('PENDING', 'PROCESSING')
    AND (p.seq < o.seq OR p.state = 'PROCESSING'))`;
