import type { Queryable } from './db.js';
import { isHeadOfKey, nothingRunsOnKey } from './headOfKey.js';
import { pendingFoundByKey } from './pendingByKey.js';

export interface DueDeliveryKeysOptions {
  now: Date;
  /** Keys this worker runs a delivery on: left out. */
  busyKeys: readonly string[];
  limit: number;
}

/**
 * Keys (subscriptions) whose next delivery is due and may start: nothing earlier on the key still
 * active, nothing on it running. Oldest head first.
 *
 * Every worker asks every 100 ms while no delivery is due, so the look is bounded by the
 * subscriptions, never by the deliveries waiting: a subscriber that fails holds all of its own
 * behind a head in backoff, and a walk of the pending deliveries tested each of them (85 ms a look
 * with 20,000 waiting behind one subscriber, test/deliveryLook). The first pass takes the first
 * pending deliveries in acceptance order, 4 per key asked for (100 at least); if they hold fewer due
 * heads than asked and did not run out, the second visits the keys with active deliveries one by one.
 */
export async function dueDeliveryKeys(db: Queryable, options: DueDeliveryKeysOptions): Promise<string[]> {
  const scanCap = Math.max(4 * options.limit, 100);
  const params = [options.now.toISOString(), [...options.busyKeys]];
  const { rows } = await db.query<{ ordering_key: string; ready: boolean }>(FIRST_PENDING_DELIVERIES, [...params, scanCap]);
  const ready = rows.filter((row) => row.ready).map((row) => row.ordering_key);
  if (ready.length >= options.limit || rows.length < scanCap) return ready.slice(0, options.limit);
  const visited = await db.query<{ ordering_key: string }>(HEADS_BY_DELIVERY_KEY, [...params, options.limit]);
  return visited.rows.map((row) => row.ordering_key);
}

/** The first pending deliveries in acceptance order, each with whether it is a due head of a key not busy here. */
const FIRST_PENDING_DELIVERIES = `SELECT o.ordering_key,
       CASE WHEN o.run_at <= $1 AND NOT (o.ordering_key = ANY ($2::text[])) THEN ${isHeadOfKey()} ELSE false END AS ready
  FROM (SELECT d.ordering_key, d.seq, d.run_at FROM operations d
        WHERE d.state = 'PENDING' AND d.type = 'webhook.deliver'
        ORDER BY d.seq
        LIMIT $3) o
  ORDER BY o.seq`;

/**
 * Every key with a delivery still active, in key order on the index of active deliveries by key
 * (migration 012), each at its first active operation in the active-key index: where that is a due
 * PENDING delivery with nothing running on its key, its key. Keys whose deliveries have all ended
 * are not visited, however many subscribers came and went.
 */
const HEADS_BY_DELIVERY_KEY = `WITH RECURSIVE delivery_keys(k) AS (
    (SELECT d.ordering_key FROM operations d
     WHERE d.type = 'webhook.deliver' AND d.state IN ('PENDING', 'PROCESSING')
     ORDER BY d.ordering_key, d.seq LIMIT 1)
    UNION ALL
    SELECT (SELECT d.ordering_key FROM operations d
            WHERE d.type = 'webhook.deliver' AND d.state IN ('PENDING', 'PROCESSING') AND d.ordering_key > delivery_keys.k
            ORDER BY d.ordering_key, d.seq LIMIT 1)
    FROM delivery_keys WHERE delivery_keys.k IS NOT NULL
  )
  SELECT o.ordering_key FROM delivery_keys v
  CROSS JOIN LATERAL (
    SELECT a.ordering_key, a.seq FROM operations a
    WHERE a.ordering_key >= v.k AND a.state IN ('PENDING', 'PROCESSING')
    ORDER BY a.ordering_key, a.seq LIMIT 1) first_active
  JOIN operations o ON o.seq = first_active.seq
  WHERE first_active.ordering_key = v.k
    AND ${pendingFoundByKey('o')} AND o.type = 'webhook.deliver' AND o.run_at <= $1
    AND NOT (o.ordering_key = ANY ($2::text[]))
    AND ${nothingRunsOnKey('o.ordering_key')}
  ORDER BY o.seq
  LIMIT $3`;
