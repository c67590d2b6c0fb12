import type { Queryable } from './db.js';

/** Keeps a delivery a mapping ignored, once per (source, delivery id); false when it was kept before. */
export async function recordIgnoredDelivery(db: Queryable, delivery: { source: string; id: string; event: string }, now: Date): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO opsd_webhook_ignored (source, delivery_id, event, received_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (source, delivery_id) DO NOTHING`,
    [delivery.source, delivery.id, delivery.event, now.toISOString()],
  );
  return rowCount > 0;
}
