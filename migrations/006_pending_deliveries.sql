-- Webhook deliveries waiting to run, oldest first: every worker looks here before each claim of
-- deliveries (to weigh their destinations' limits), so the look must cost nothing when there are
-- none, whatever else is PENDING. Rows enter only while they are PENDING deliveries.
CREATE INDEX operations_webhook_pending_idx ON operations (seq) WHERE state = 'PENDING' AND type = 'webhook.deliver';
