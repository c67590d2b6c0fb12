-- The claim's probes of a key: whether anything runs on it first, then whether the row is the key's
-- first active operation, and which waits next, each asked in an order only the active-key index has.
--
-- 1. In the other order, every PENDING row queued behind a running operation cost a probe of the
--    active-key index with a visit to the table: 4 pages and about 7.5 µs a row, so a claim by a
--    worker that does not hold those keys took 0.75-0.9 s with 100,000 waiting behind 10 running
--    keys (PostgreSQL 15, 2 cores). Asked first, the running check is one hash of the running
--    operations' keys, built once per claim and bounded by what runs: the same claim took 30 ms,
--    the cost of reading the rows (test/headCheck.int.test.ts: 6,000 pages more for 2,000 behind a
--    running head, now none).
-- 2. "The key's first active operation" was `WHERE ordering_key = k ORDER BY seq LIMIT 1`. On
--    statistics that expect many operations per key, the planner answered it by walking the seq index
--    from the start until a row of the key came up: thousands of pages per probe, 34 million for one
--    claim past 10 keys with 500 waiting on each behind a head in backoff. Asked as the first entry
--    at or after `(k, seq)` in `(ordering_key, seq)` order, it has one index to use: 4 pages a probe.
-- 3. The same for the operation waiting next behind each one started: the entry after it in that
--    order, if on its key and PENDING. Asked with `seq > s ORDER BY seq`, a key with nothing behind
--    walked the seq index to the end of the table: 18,800 pages each, with 20,000 accepted on new
--    keys since an ANALYZE that saw 10. The entry is read from the index alone, so that the row of
--    the key after it (on distinct keys, always there) is not fetched: fetching it cost 8 µs more
--    for each operation claimed.
--
-- The claim of migration 007 with those changes; nothing else changes.
CREATE OR REPLACE FUNCTION opsd_claim(
  p_now timestamptz,
  p_limit integer,
  p_types text[],
  p_busy_keys text[],
  p_owner text,
  p_lease_expires_at timestamptz,
  p_lease_expires_at_text text,
  p_lock_namespace integer
) RETURNS TABLE (
  id uuid, seq bigint, external_id text, type text, payload jsonb, payload_hash text, ordering_key text, priority smallint,
  state text, attempts integer, max_attempts integer, run_at timestamptz, fencing_token bigint, lease_owner text,
  lease_expires_at timestamptz, result jsonb, last_error jsonb, version integer, created_at timestamptz,
  updated_at timestamptz, next jsonb
)
LANGUAGE plpgsql
-- See claimOperations.ts: on stale statistics the planner would sort every PENDING row.
SET enable_sort = off
-- A sort refused by enable_sort costs 10^10 in the planner's eyes, past the JIT threshold: 260 ms
-- of compiling per call, for statements that run in a millisecond.
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  picked uuid[];
  runnable text[];
BEGIN
  SELECT array_agg(t) INTO runnable FROM unnest(p_types) AS t
  WHERE NOT EXISTS (SELECT 1 FROM opsd_type_controls c WHERE c.type = t AND c.paused);
  IF runnable IS NULL THEN
    RETURN;
  END IF;
  SELECT array_agg(c.id) INTO picked FROM (
    SELECT o.id FROM operations o
    WHERE o.state = 'PENDING' AND o.run_at <= p_now
      AND o.type = ANY(runnable)
      AND NOT (o.ordering_key = ANY(p_busy_keys))
      AND CASE WHEN NOT EXISTS (
            SELECT 1 FROM operations p WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING')
          AND (o.ordering_key, o.seq) = (
            SELECT p.ordering_key, p.seq FROM operations p
            WHERE p.ordering_key >= o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
            ORDER BY p.ordering_key, p.seq LIMIT 1)
          THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(o.ordering_key)) ELSE false END
    ORDER BY (-o.priority), o.seq
    LIMIT p_limit
    FOR UPDATE OF o SKIP LOCKED
  ) c;
  IF picked IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
    WITH started AS (
      UPDATE operations AS o
      SET state = 'PROCESSING', attempts = o.attempts + 1, fencing_token = o.fencing_token + 1,
          lease_owner = p_owner, lease_expires_at = p_lease_expires_at, version = o.version + 1, updated_at = p_now
      WHERE o.id = ANY(picked)
        AND (o.ordering_key, o.seq) = (
          SELECT p.ordering_key, p.seq FROM operations p
          WHERE p.ordering_key >= o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
          ORDER BY p.ordering_key, p.seq LIMIT 1)
        -- OFFSET 0 keeps the check a probe per row: pulled up into an anti-join, it was planned on
        -- statistics that lag a queue table's bursts as a hash of every active row (5.7 ms of a
        -- 7 ms claim of 100 with 20,000 PENDING, against 0.2 ms as probes).
        AND NOT EXISTS (
          SELECT 1 FROM operations p WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING'
          OFFSET 0)
      RETURNING o.*
    ), appended AS (
      INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
      SELECT s.id, s.version, 'started',
             jsonb_build_object('attempt', s.attempts, 'fencingToken', s.fencing_token, 'leaseOwner', p_owner, 'leaseExpiresAt', p_lease_expires_at_text),
             NULL, NULL, p_now
      FROM started s
    )
    SELECT s.id, s.seq, s.external_id, s.type, s.payload, s.payload_hash, s.ordering_key, s.priority, s.state,
           s.attempts, s.max_attempts, s.run_at, s.fencing_token, s.lease_owner, s.lease_expires_at, s.result,
           s.last_error, s.version, s.created_at, s.updated_at,
           (SELECT to_jsonb(n) FROM (
              SELECT p.ordering_key, p.seq FROM operations p
              WHERE (p.ordering_key, p.seq) > (s.ordering_key, s.seq) AND p.state IN ('PENDING', 'PROCESSING')
              ORDER BY p.ordering_key, p.seq LIMIT 1) following
            JOIN operations n ON n.seq = following.seq
            WHERE following.ordering_key = s.ordering_key AND n.state = 'PENDING')
    FROM started s;
END
$$;
