-- A claim's scan tests a bounded number of rows, then looks key by key.
--
-- The scan walked the PENDING rows in claim order until it had enough heads of keys. Every row queued
-- behind a head it could not start cost a probe of the active-key index with a visit to the table
-- (4 pages, about 7.5 µs): behind a head waiting out a retry's backoff, of a type this worker does not
-- run, or paused. With 100,000 queued behind 10 such heads, each claim took 0.8 s, and a worker with
-- free slots claims at every wake-up (PostgreSQL 15, 2 cores). A row behind one of the claiming
-- worker's own busy keys cost less, 0.45 µs, but with 100,000 of them every claim took 45 ms.
--
-- Now the first pass tests at most scan_cap rows (4 per slot asked for), those on its busy keys
-- included. When it ends short and the rows did not run out, the second visits the active keys one
-- by one, at the first entry of each in the active-key index (about 4 µs a key), and takes the best
-- heads among them: the same claims take 2-5 ms. With more than key_cap active keys (scheduled work on many keys, say) the second pass gives
-- up after key_cap of them for the whole scan, as before (test/claimScans.int.test.ts).
--
-- The claim of migration 008 with that scan; the start of what it picked is unchanged.
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
  more uuid[];
  runnable text[];
  -- Rows the first pass may test: room for rows another claimer holds and for a few blocked keys.
  scan_cap integer := greatest(4 * p_limit, 100);
  -- Keys the second pass may visit (about 4 µs each) before it gives up for the whole scan.
  key_cap integer := 10 * greatest(4 * p_limit, 100);
  tested integer;
  head_seqs bigint[];
  keys_complete boolean;
BEGIN
  SELECT array_agg(t) INTO runnable FROM unnest(p_types) AS t
  WHERE NOT EXISTS (SELECT 1 FROM opsd_type_controls c WHERE c.type = t AND c.paused);
  IF runnable IS NULL THEN
    RETURN;
  END IF;
  -- The first scan_cap rows in claim order that this worker could run: their keys' heads. The rows
  -- are read without locks; only the heads picked are locked, through the join back to their rows.
  -- Rows on the worker's busy keys count towards scan_cap: a backlog behind its own keys is the
  -- deepest it meets.
  SELECT array_agg(c.id) INTO picked FROM (
    SELECT o.id FROM (
      SELECT w.id, w.np, w.seq FROM (
        SELECT o.id, o.ordering_key, (-o.priority) AS np, o.seq FROM operations o
        WHERE o.state = 'PENDING' AND o.run_at <= p_now
          AND o.type = ANY(runnable)
        ORDER BY (-o.priority), o.seq
        LIMIT scan_cap) w
      WHERE CASE WHEN NOT (w.ordering_key = ANY(p_busy_keys))
            AND NOT EXISTS (
              SELECT 1 FROM operations p WHERE p.ordering_key = w.ordering_key AND p.state = 'PROCESSING')
            AND (w.ordering_key, w.seq) = (
              SELECT p.ordering_key, p.seq FROM operations p
              WHERE p.ordering_key >= w.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
              ORDER BY p.ordering_key, p.seq LIMIT 1)
            THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(w.ordering_key)) ELSE false END
    ) c JOIN operations o ON o.id = c.id
    WHERE o.state = 'PENDING'
    ORDER BY c.np, c.seq
    LIMIT p_limit
    FOR UPDATE OF o SKIP LOCKED
  ) c;
  IF coalesce(cardinality(picked), 0) < p_limit THEN
    -- Short: did the first pass stop at scan_cap, or run out of rows?
    SELECT count(*) INTO tested FROM (
      SELECT 1 FROM operations o
      WHERE o.state = 'PENDING' AND o.run_at <= p_now
        AND o.type = ANY(runnable)
      ORDER BY (-o.priority), o.seq
      LIMIT scan_cap) t;
    IF tested = scan_cap THEN
      -- Rows queued behind heads it cannot start filled the first pass: visit the active keys one
      -- by one, each at its first entry in the active-key index (its first active operation), up to
      -- key_cap of them. The recursion stops at the last key, or one past key_cap.
      WITH RECURSIVE active_keys(k, head_seq, n) AS (
        (SELECT a.ordering_key, a.seq, 1 FROM operations a
         WHERE a.state IN ('PENDING', 'PROCESSING')
         ORDER BY a.ordering_key, a.seq LIMIT 1)
        UNION ALL
        SELECT following.ordering_key, following.seq, active_keys.n + 1
        FROM active_keys CROSS JOIN LATERAL (
          SELECT a.ordering_key, a.seq FROM operations a
          WHERE a.state IN ('PENDING', 'PROCESSING') AND a.ordering_key > active_keys.k
          ORDER BY a.ordering_key, a.seq LIMIT 1) following
        WHERE active_keys.n <= key_cap
      )
      SELECT array_agg(head_seq), count(*) <= key_cap INTO head_seqs, keys_complete FROM active_keys;
      IF keys_complete THEN
        -- Materialized, so that the planner sorts these few heads instead of walking the claim
        -- index for them (which enable_sort = off would otherwise make it prefer).
        WITH heads AS MATERIALIZED (
          SELECT h.id, (-h.priority) AS np, h.seq, h.ordering_key FROM operations h
          WHERE h.seq = ANY(head_seqs)
            AND h.state = 'PENDING' AND h.run_at <= p_now
            AND h.type = ANY(runnable)
            AND NOT (h.ordering_key = ANY(p_busy_keys))
            AND NOT (h.id = ANY(coalesce(picked, '{}')))
        )
        SELECT array_agg(c.id) INTO more FROM (
          SELECT o.id FROM (
            SELECT heads.id, heads.ordering_key FROM heads ORDER BY heads.np, heads.seq
            LIMIT p_limit - coalesce(cardinality(picked), 0)
          ) c JOIN operations o ON o.id = c.id
          WHERE o.state = 'PENDING'
            AND CASE WHEN NOT EXISTS (
                  SELECT 1 FROM operations p WHERE p.ordering_key = c.ordering_key AND p.state = 'PROCESSING')
                THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(c.ordering_key)) ELSE false END
          FOR UPDATE OF o SKIP LOCKED
        ) c;
      ELSE
        -- More active keys than a visit of each is worth: the whole scan, as before, but for what the
        -- first pass picked.
        SELECT array_agg(c.id) INTO more FROM (
          SELECT o.id FROM operations o
          WHERE o.state = 'PENDING' AND o.run_at <= p_now
            AND o.type = ANY(runnable)
            AND NOT (o.ordering_key = ANY(p_busy_keys))
            AND NOT (o.id = ANY(coalesce(picked, '{}')))
            AND CASE WHEN NOT EXISTS (
                  SELECT 1 FROM operations p WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING')
                AND (o.ordering_key, o.seq) = (
                  SELECT p.ordering_key, p.seq FROM operations p
                  WHERE p.ordering_key >= o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
                  ORDER BY p.ordering_key, p.seq LIMIT 1)
                THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(o.ordering_key)) ELSE false END
          ORDER BY (-o.priority), o.seq
          LIMIT p_limit - coalesce(cardinality(picked), 0)
          FOR UPDATE OF o SKIP LOCKED
        ) c;
      END IF;
      picked := coalesce(picked, '{}') || coalesce(more, '{}');
      IF cardinality(picked) = 0 THEN
        picked := NULL;
      END IF;
    END IF;
  END IF;
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
