-- The look for due webhook deliveries visits the keys that have a delivery still active, not every
-- subscriber that ever had one.
--
-- When the first pass of the look (src/store/dueDeliveryKeys.ts) is filled by deliveries waiting
-- behind a head in backoff, the look visits the delivery keys one by one. It walked the index of
-- every delivery by key (migration 005), so it visited each subscriber that ever had a delivery,
-- deleted ones included, and probed the active-key index at each: 67,000-72,000 pages past 3,000
-- subscribers whose deliveries had all ended (test/deliveryLook.int.test.ts), every 100 ms in
-- every worker. This index holds only the active deliveries; an ended delivery leaves it, and
-- operations of other types never enter it.
CREATE INDEX operations_active_deliveries_idx ON operations (ordering_key, seq)
  WHERE type = 'webhook.deliver' AND state IN ('PENDING', 'PROCESSING');
