-- A start is never stamped before the end that made its operation its key's head.
--
-- A claim stamps its starts with its worker's clock once it holds a connection. The end of the
-- operation before on the key can commit while the claim is on its way, and the claim then starts
-- the next one with a time before that end's: in a run of test/worker, operation 3 of a key read as
-- started a few milliseconds before operation 2 completed, though it was appended after (forced by
-- hand: 22 ms before). Where an end makes the next operation on its key the head, it now also
-- writes its own time on that row (`turn_at`), and a claim's start takes the later of its stamp and
-- that time. The start clears it. A head the marker finds (its mark missing) has none, and is
-- started at the claim's stamp as before.
--
-- The claim of migration 017 otherwise unchanged.

ALTER TABLE operations ADD COLUMN turn_at timestamptz;

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
-- Migration 016: every row a claim reads, it finds through an index.
SET enable_seqscan = off
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
  due_ids uuid[];
  due_complete boolean;
  head_seqs bigint[];
  keys_complete boolean;
  -- What is left to claim, and how many of the rows picked the start took.
  wanted integer := p_limit;
  started_count integer;
BEGIN
  SELECT array_agg(t) INTO runnable FROM unnest(p_types) AS t
  WHERE NOT EXISTS (SELECT 1 FROM opsd_type_controls c WHERE c.type = t AND c.paused);
  IF runnable IS NULL THEN
    RETURN;
  END IF;
  -- A second look only if the start refused a row the first picked (below).
  FOR look IN 1..2 LOOP
    picked := NULL;
    more := NULL;
    -- Of the first scan_cap PENDING rows in claim order, the heads of keys this worker could start
    -- now: a row marked as its key's head at its mark's word (the start checks it again), any other
    -- by probes of its key. The rows are read without locks; only the heads picked are locked,
    -- through the join back to their rows. Every row counts towards scan_cap: one not due, of another
    -- type, or on one of the worker's busy keys (a backlog behind its own keys is the deepest it meets).
    SELECT array_agg(c.id) INTO picked FROM (
      SELECT o.id FROM (
        SELECT w.id, w.np, w.seq FROM (
          SELECT o.id, o.ordering_key, (-o.priority) AS np, o.seq, o.run_at, o.type, o.head FROM operations o
          WHERE o.state = 'PENDING'
          ORDER BY (-o.priority), o.seq
          LIMIT scan_cap) w
        WHERE w.run_at <= p_now AND w.type = ANY(runnable)
          AND CASE WHEN NOT (w.ordering_key = ANY(p_busy_keys))
              AND (w.head IS TRUE OR NOT EXISTS (
                    SELECT 1 FROM operations p WHERE p.ordering_key = w.ordering_key AND p.state = 'PROCESSING')
                  AND (w.ordering_key, w.seq) = (
                    SELECT p.ordering_key, p.seq FROM operations p
                    WHERE p.ordering_key >= w.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
                    ORDER BY p.ordering_key, p.seq LIMIT 1))
              THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(w.ordering_key)) ELSE false END
      ) c JOIN operations o ON o.id = c.id
      WHERE o.state = 'PENDING' COLLATE "C"
      ORDER BY c.np, c.seq
      LIMIT wanted
      FOR UPDATE OF o SKIP LOCKED
    ) c;
    IF coalesce(cardinality(picked), 0) < wanted THEN
      -- Short: did the first pass stop at scan_cap, or run out of rows?
      SELECT count(*) INTO tested FROM (
        SELECT 1 FROM operations o
        WHERE o.state = 'PENDING'
        ORDER BY (-o.priority), o.seq
        LIMIT scan_cap) t;
      IF tested = scan_cap THEN
        -- Rows not due, of other types or behind heads it cannot start filled the first pass. The due
        -- rows of the worker's types, at most scan_cap of each, the longest due first:
        WITH due AS MATERIALIZED (
          SELECT r.id, t.type FROM unnest(runnable) AS t(type) CROSS JOIN LATERAL (
            SELECT o.id FROM operations o
            WHERE o.state = 'PENDING' AND o.type = t.type AND o.run_at <= p_now
            ORDER BY o.run_at
            LIMIT scan_cap) r
        )
        SELECT array_agg(due.id), NOT EXISTS (SELECT 1 FROM due GROUP BY due.type HAVING count(*) >= scan_cap)
        INTO due_ids, due_complete FROM due;
        IF due_ids IS NOT NULL THEN
          -- The best heads among them, checked and locked as in the first pass. Materialized, so that
          -- the planner sorts these few rows instead of walking the claim index for them.
          WITH candidates AS MATERIALIZED (
            SELECT d.id, (-d.priority) AS np, d.seq, d.ordering_key FROM operations d
            WHERE d.id = ANY(due_ids) AND d.state = 'PENDING'
              AND NOT (d.ordering_key = ANY(p_busy_keys))
              AND NOT (d.id = ANY(coalesce(picked, '{}')))
          ), heads AS MATERIALIZED (
            SELECT candidates.id, candidates.np, candidates.seq FROM candidates
            WHERE CASE WHEN NOT EXISTS (
                    SELECT 1 FROM operations p WHERE p.ordering_key = candidates.ordering_key AND p.state = 'PROCESSING')
                  AND (candidates.ordering_key, candidates.seq) = (
                    SELECT p.ordering_key, p.seq FROM operations p
                    WHERE p.ordering_key >= candidates.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
                    ORDER BY p.ordering_key, p.seq LIMIT 1)
                  THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(candidates.ordering_key)) ELSE false END
          )
          SELECT array_agg(c.id) INTO more FROM (
            SELECT o.id FROM (
              SELECT heads.id FROM heads ORDER BY heads.np, heads.seq
              LIMIT wanted - coalesce(cardinality(picked), 0)
            ) c JOIN operations o ON o.id = c.id
            WHERE o.state = 'PENDING' COLLATE "C"
            FOR UPDATE OF o SKIP LOCKED
          ) c;
          picked := coalesce(picked, '{}') || coalesce(more, '{}');
          more := NULL;
        END IF;
      END IF;
      IF tested = scan_cap AND NOT due_complete AND coalesce(cardinality(picked), 0) < wanted THEN
        keys_complete := false;
        IF coalesce(nullif(current_setting('opsd.claim_keys_past_cap_until', true), ''), '0')::float8 < extract(epoch FROM clock_timestamp()) THEN
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
          IF NOT keys_complete THEN
            -- The same visit would give up again: this session skips it for the next 10 seconds.
            PERFORM set_config('opsd.claim_keys_past_cap_until', (extract(epoch FROM clock_timestamp()) + 10)::text, false);
          END IF;
        END IF;
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
              LIMIT wanted - coalesce(cardinality(picked), 0)
            ) c JOIN operations o ON o.id = c.id
            WHERE o.state = 'PENDING' COLLATE "C"
              AND CASE WHEN NOT EXISTS (
                    SELECT 1 FROM operations p WHERE p.ordering_key = c.ordering_key AND p.state = 'PROCESSING')
                  THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(c.ordering_key)) ELSE false END
            FOR UPDATE OF o SKIP LOCKED
          ) c;
        ELSE
          -- More active keys than a visit of each is worth: the due heads of the worker's types, from
          -- the index of the rows marked as heads, each type longest due first, until enough pass the
          -- checks; then the best of those. Nothing queued behind a head is read.
          WITH heads AS MATERIALIZED (
            SELECT h.id, h.np, h.seq FROM unnest(runnable) AS t(type) CROSS JOIN LATERAL (
              SELECT o.id, (-o.priority) AS np, o.seq FROM operations o
              WHERE o.state = 'PENDING' AND o.head AND o.type = t.type AND o.run_at <= p_now
                AND NOT (o.ordering_key = ANY(p_busy_keys))
                AND NOT (o.id = ANY(coalesce(picked, '{}')))
                AND CASE WHEN NOT EXISTS (
                      SELECT 1 FROM operations p WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING')
                    AND (o.ordering_key, o.seq) = (
                      SELECT p.ordering_key, p.seq FROM operations p
                      WHERE p.ordering_key >= o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
                      ORDER BY p.ordering_key, p.seq LIMIT 1)
                    THEN pg_try_advisory_xact_lock(p_lock_namespace, hashtext(o.ordering_key)) ELSE false END
              ORDER BY o.run_at
              LIMIT wanted - coalesce(cardinality(picked), 0)) h
          )
          SELECT array_agg(c.id) INTO more FROM (
            SELECT o.id FROM (
              SELECT heads.id FROM heads ORDER BY heads.np, heads.seq
              LIMIT wanted - coalesce(cardinality(picked), 0)
            ) c JOIN operations o ON o.id = c.id
            WHERE o.state = 'PENDING' COLLATE "C"
            FOR UPDATE OF o SKIP LOCKED
          ) c;
        END IF;
        picked := coalesce(picked, '{}') || coalesce(more, '{}');
      END IF;
      IF cardinality(picked) = 0 THEN
        picked := NULL;
      END IF;
    END IF;
    IF picked IS NULL THEN
      RETURN;
    END IF;
    RETURN QUERY
      WITH probed AS MATERIALIZED (
        -- Each picked row's key, its first two active entries in key order: the first must be the row
        -- itself (the head check again, in the snapshot of the statement that starts it, taken after
        -- the key's lock was held), the second is what follows it.
        SELECT c.id, f.keys, f.seqs FROM operations c
        CROSS JOIN LATERAL (
          SELECT array_agg(p.ordering_key) AS keys, array_agg(p.seq) AS seqs FROM (
            SELECT p.ordering_key, p.seq FROM operations p
            WHERE p.ordering_key >= c.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
            ORDER BY p.ordering_key, p.seq LIMIT 2) p) f
        WHERE c.id = ANY(picked)
      ), started AS (
        UPDATE operations AS o
        SET state = 'PROCESSING', attempts = o.attempts + 1, fencing_token = o.fencing_token + 1,
            lease_owner = p_owner, lease_expires_at = p_lease_expires_at, version = o.version + 1,
            updated_at = greatest(p_now, o.turn_at), head = NULL, turn_at = NULL
        FROM probed h
        WHERE o.id = h.id
          AND h.keys[1] = o.ordering_key AND h.seqs[1] = o.seq
          -- OFFSET 0 keeps the check a probe per row: pulled up into an anti-join, it was planned on
          -- statistics that lag a queue table's bursts as a hash of every active row (5.7 ms of a
          -- 7 ms claim of 100 with 20,000 PENDING, against 0.2 ms as probes).
          AND NOT EXISTS (
            SELECT 1 FROM operations p WHERE p.ordering_key = o.ordering_key AND p.state = 'PROCESSING'
            OFFSET 0)
        RETURNING o.*, CASE WHEN h.keys[2] = o.ordering_key THEN h.seqs[2] END AS next_seq
      ), appended AS (
        INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
        SELECT s.id, s.version, 'started',
               jsonb_build_object('attempt', s.attempts, 'fencingToken', s.fencing_token, 'leaseOwner', p_owner, 'leaseExpiresAt', p_lease_expires_at_text),
               NULL, NULL, s.updated_at
        FROM started s
      ), unmarked AS (
        -- A picked row the start refused is not its key's head. If it was marked as one (accepted
        -- beside the operation before it, neither statement seeing the other), its mark goes, so that
        -- no pass takes the mark's word again.
        -- Found by id from the list of refused rows (most often empty): a join to it was planned on
        -- statistics that took marks for rare as a walk of every row for the marked ones.
        UPDATE operations AS u SET head = NULL
        WHERE u.id = ANY(ARRAY(SELECT unnest(picked) EXCEPT SELECT s.id FROM started s)) AND u.head
      )
      SELECT s.id, s.seq, s.external_id, s.type, s.payload, s.payload_hash, s.ordering_key, s.priority, s.state,
             s.attempts, s.max_attempts, s.run_at, s.fencing_token, s.lease_owner, s.lease_expires_at, s.result,
             s.last_error, s.version, s.created_at, s.updated_at,
             (SELECT to_jsonb(n) FROM operations n WHERE n.seq = s.next_seq AND n.state = 'PENDING' COLLATE "C")
      FROM started s;
    GET DIAGNOSTICS started_count = ROW_COUNT;
    EXIT WHEN started_count = cardinality(picked);
    -- The start refused some of them: look once more for the rest, past the rows just refused
    -- (their marks cleared, each now probed as any unmarked row).
    wanted := wanted - started_count;
  END LOOP;
END
$$;
