-- The projection: one row per operation, its current state. Rebuildable from operation_events.
CREATE TABLE operations (
  id uuid PRIMARY KEY,
  -- Acceptance order: per-key ordering and list pagination follow it.
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  external_id text NOT NULL UNIQUE,
  type text NOT NULL,
  payload jsonb NOT NULL,
  payload_hash text NOT NULL,
  ordering_key text NOT NULL,
  state text NOT NULL CHECK (state IN ('PENDING', 'PROCESSING', 'COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED')),
  attempts integer NOT NULL,
  max_attempts integer NOT NULL,
  run_at timestamptz NOT NULL,
  fencing_token bigint NOT NULL,
  lease_owner text,
  lease_expires_at timestamptz,
  result jsonb,
  last_error jsonb,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

-- Claim scan: due PENDING rows in acceptance order.
CREATE INDEX operations_pending_idx ON operations (seq) WHERE state = 'PENDING';
-- Head-of-key check: is anything earlier, or anything running, on the same key?
CREATE INDEX operations_active_key_idx ON operations (ordering_key, seq) WHERE state IN ('PENDING', 'PROCESSING');
-- Lease rescue.
CREATE INDEX operations_lease_idx ON operations (lease_expires_at) WHERE state = 'PROCESSING';
-- List filters.
CREATE INDEX operations_state_idx ON operations (state, seq);
CREATE INDEX operations_type_idx ON operations (type, seq);

-- Every change to every operation, append-only.
CREATE TABLE operation_events (
  position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  operation_id uuid NOT NULL,
  seq integer NOT NULL,
  type text NOT NULL,
  data jsonb NOT NULL,
  -- Set on events a client caused; the dedup key of what clients send.
  external_id text,
  payload_hash text,
  occurred_at timestamptz NOT NULL,
  UNIQUE (operation_id, seq)
);

CREATE UNIQUE INDEX operation_events_dedup_idx
  ON operation_events (external_id, type, payload_hash)
  WHERE external_id IS NOT NULL;

CREATE FUNCTION opsd_forbid_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'operation_events is append-only (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER operation_events_append_only
  BEFORE UPDATE OR DELETE ON operation_events
  FOR EACH ROW EXECUTE FUNCTION opsd_forbid_event_change();
