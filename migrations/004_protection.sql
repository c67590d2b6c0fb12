-- Priorities, and the state that protects third parties and the service: resources (rate, slots,
-- breaker, pauses), per-key starts on a resource, paused types, and per-type outcome counts.

-- Claimed first when higher; never ahead of an earlier operation on its key. Operations accepted
-- before this migration have priority 0, as their received events (which carry none) fold to.
ALTER TABLE operations ADD COLUMN priority smallint NOT NULL DEFAULT 0;

-- The claim walks due PENDING rows by priority, then acceptance order. The expression lets a row
-- comparison page through it in that order (the reconciler does).
CREATE INDEX operations_claim_idx ON operations ((-priority), seq) WHERE state = 'PENDING';
DROP INDEX IF EXISTS operations_pending_idx;

-- One row per resource a handlers module defines, created when a worker first claims for it.
-- `state` is what src/protect/resourceRules.ts reads and writes (times in ms since the epoch);
-- claims for the resource lock the row, so every process sees one rate, one set of slots and
-- one breaker.
CREATE TABLE opsd_resources (
  name text PRIMARY KEY,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL
);

-- Recent starts per ordering key on a resource with a per-key rate (ms since the epoch, a JSON array).
CREATE TABLE opsd_key_starts (
  resource text NOT NULL,
  ordering_key text NOT NULL,
  starts jsonb NOT NULL,
  last_start timestamptz NOT NULL,
  PRIMARY KEY (resource, ordering_key)
);
CREATE INDEX opsd_key_starts_recent_idx ON opsd_key_starts (resource, last_start);

-- Per type: paused by an operator, and the row claims of a type with a cluster-wide cap lock.
CREATE TABLE opsd_type_controls (
  type text PRIMARY KEY,
  paused boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL
);

-- Outcomes per type in 10-second buckets, added to by each worker every few seconds.
CREATE TABLE opsd_type_counts (
  type text NOT NULL,
  bucket timestamptz NOT NULL,
  worker text NOT NULL,
  completed integer NOT NULL DEFAULT 0,
  rejected integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  retried integer NOT NULL DEFAULT 0,
  deferred integer NOT NULL DEFAULT 0,
  PRIMARY KEY (type, bucket, worker)
);

-- The claim of migration 003, in priority order, leaving out paused types, and returning priority.
DROP FUNCTION opsd_claim(timestamptz, integer, text[], text[], text, timestamptz, text, integer);
CREATE FUNCTION opsd_claim(
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
            SELECT 1 FROM operations p
            WHERE p.ordering_key = o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
              AND (p.seq < o.seq OR p.state = 'PROCESSING'))
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
        -- OFFSET 0 keeps the check a probe per row: pulled up into an anti-join, it was planned on
        -- statistics that lag a queue table's bursts as a hash of every active row (5.7 ms of a
        -- 7 ms claim of 100 with 20,000 PENDING, against 0.2 ms as probes).
        AND NOT EXISTS (
          SELECT 1 FROM operations p
          WHERE p.ordering_key = o.ordering_key AND p.state IN ('PENDING', 'PROCESSING')
            AND (p.seq < o.seq OR p.state = 'PROCESSING')
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
