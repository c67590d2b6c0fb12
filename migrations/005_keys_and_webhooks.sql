-- API keys, webhook deliveries that were ignored, and subscriptions to outcomes with their outbox.

-- A key is `opsd_<id>_<secret>`: the id finds the row, the secret is only kept as its SHA-256
-- (the secret is 32 random bytes, so a slow hash would add nothing but latency).
CREATE TABLE opsd_api_keys (
  id text PRIMARY KEY,
  name text NOT NULL,
  secret_sha256 bytea NOT NULL,
  scopes text[] NOT NULL,
  created_at timestamptz NOT NULL,
  revoked_at timestamptz
);

-- Deliveries a webhook source's mapping chose to ignore: answered 200 and kept here, once per
-- delivery id. Deliveries that became operations are the operations themselves.
CREATE TABLE opsd_webhook_ignored (
  source text NOT NULL,
  delivery_id text NOT NULL,
  event text NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (source, delivery_id)
);

-- Who hears about outcomes. `secret` signs deliveries (Standard Webhooks), so it is kept as is.
CREATE TABLE opsd_subscriptions (
  id uuid PRIMARY KEY,
  url text NOT NULL,
  events text[] NOT NULL,
  -- NULL: every type.
  types text[],
  secret text NOT NULL,
  created_at timestamptz NOT NULL,
  deleted_at timestamptz
);

-- Outcomes owed to subscribers, written in the transaction that records the outcome, so none is
-- lost to a crash or a late commit; the leader turns them into `webhook.deliver` operations and
-- deletes them (src/webhooks/outboxRelay.ts).
CREATE TABLE opsd_webhook_outbox (
  position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subscription_id uuid NOT NULL,
  operation_id uuid NOT NULL,
  event text NOT NULL,
  occurred_at timestamptz NOT NULL
);

-- One call per statement, not per row: with no subscription the join finds nothing and the
-- statement that finished a batch of operations pays for one empty lookup.
CREATE FUNCTION opsd_queue_outcome_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM opsd_subscriptions WHERE deleted_at IS NULL) THEN
    RETURN NULL;
  END IF;
  INSERT INTO opsd_webhook_outbox (subscription_id, operation_id, event, occurred_at)
  SELECT s.id, e.operation_id, 'operation.' || e.type, e.occurred_at
    FROM inserted_events e
    JOIN operations o ON o.id = e.operation_id
    JOIN opsd_subscriptions s
      ON s.deleted_at IS NULL
     AND ('operation.' || e.type) = ANY (s.events)
     AND (s.types IS NULL OR o.type = ANY (s.types))
   WHERE e.type IN ('completed', 'rejected', 'failed', 'cancelled')
     -- A delivery's own outcome is never announced: it would announce itself forever.
     AND o.type <> 'webhook.deliver'
   ORDER BY e.position;
  RETURN NULL;
END
$$;

CREATE TRIGGER operation_events_outcome_webhooks
  AFTER INSERT ON operation_events
  REFERENCING NEW TABLE AS inserted_events
  FOR EACH STATEMENT EXECUTE FUNCTION opsd_queue_outcome_webhooks();

-- A subscription's deliveries, for GET /v1/subscriptions/:id/deliveries. Neither column changes
-- once a row is written, so transitions of other operations stay HOT updates.
CREATE INDEX operations_webhook_deliveries_idx ON operations (ordering_key, seq) WHERE type = 'webhook.deliver';
