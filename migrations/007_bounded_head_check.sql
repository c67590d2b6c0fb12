-- The head-of-key check in two probes, each bounded by what is ahead of or running on a key.
--
-- As one probe (`seq < o.seq OR state = 'PROCESSING'`) the check had to walk the key's whole
-- backlog to rule out something running behind the operation: a start on a key with 2,000 waiting
-- read 1,900 pages (test/headCheck.int.test.ts). Now one probe reads the first live entry of the key
-- in the active-key index, which must be the operation itself, and the other an index of running
-- operations by key.
--
-- That index replaces the lease index. No query ranged over lease_expires_at: the rescue's filter is
-- an OR with the lease owner, so while nothing is due it read every running row either way, and now
-- reads them from this index. With lease_expires_at in no index, a lease renewal can be a HOT update.
CREATE INDEX operations_running_key_idx ON operations (ordering_key) WHERE state = 'PROCESSING';
DROP INDEX operations_lease_idx;

-- The claim of migration 004 with the two probes (src/store/headOfKey.ts spells the same rule and says
-- why each has its shape).
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
      AND CASE WHEN o.seq = (
            SELECT p.seq FROM operations p
            WHERE p.ordering_key = o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
            ORDER BY p.seq LIMIT 1)
          AND NOT EXISTS (
            SELECT 1 FROM operations p WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING')
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
        AND o.seq = (
          SELECT p.seq FROM operations p
          WHERE p.ordering_key = o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
          ORDER BY p.seq LIMIT 1)
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
           (SELECT to_jsonb(n) FROM operations n
            WHERE n.ordering_key = s.ordering_key AND n.state = 'PENDING' AND n.seq > s.seq
            ORDER BY n.seq LIMIT 1)
    FROM started s;
END
$$;
