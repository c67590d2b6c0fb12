import type { Queryable } from './db.js';
import { rowToOperation, type OperationRow, type StoredOperation } from './operationRow.js';
import { isUuid } from '../domain/uuid.js';

/** Who hears about which outcomes. */
export interface Subscription {
  id: string;
  url: string;
  events: string[];
  /** Null: every type. */
  types: string[] | null;
  createdAt: string;
}

interface SubscriptionRow {
  id: string;
  url: string;
  events: string[];
  types: string[] | null;
  secret: string;
  created_at: Date | string;
}

function toSubscription(row: SubscriptionRow): Subscription {
  return { id: row.id, url: row.url, events: row.events, types: row.types, createdAt: new Date(row.created_at).toISOString() };
}

export async function insertSubscription(db: Queryable, subscription: Subscription & { secret: string }): Promise<Subscription> {
  const { rows } = await db.query<SubscriptionRow>(
    `INSERT INTO opsd_subscriptions (id, url, events, types, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
    [subscription.id, subscription.url, subscription.events, subscription.types, subscription.secret, subscription.createdAt],
  );
  return toSubscription(rows[0] as SubscriptionRow);
}

export async function listSubscriptions(db: Queryable): Promise<Subscription[]> {
  const { rows } = await db.query<SubscriptionRow>('SELECT * FROM opsd_subscriptions WHERE deleted_at IS NULL ORDER BY created_at, id');
  return rows.map(toSubscription);
}

/** A live subscription with the secret that signs its deliveries, or null (unknown or deleted). */
export async function findSubscription(db: Queryable, id: string): Promise<(Subscription & { secret: string }) | null> {
  const { rows } = await db.query<SubscriptionRow>('SELECT * FROM opsd_subscriptions WHERE id = $1 AND deleted_at IS NULL', [id]);
  const row = rows[0];
  return row ? { ...toSubscription(row), secret: row.secret } : null;
}

/** Stops new deliveries to a subscription; false when there is no live one. Those already queued are skipped when they run. */
export async function deleteSubscription(db: Queryable, id: string, now: Date): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE opsd_subscriptions SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL', [id, now.toISOString()]);
  return rowCount > 0;
}

/** The ordering key of a subscription's deliveries: one at a time, in the order they were queued. */
export function deliveryOrderingKey(subscriptionId: string): string {
  return `webhook:${subscriptionId}`;
}

/** The subscription whose deliveries go by `orderingKey`, or null for a key of something else. */
export function subscriptionOfOrderingKey(orderingKey: string): string | null {
  return orderingKey.startsWith('webhook:') ? orderingKey.slice('webhook:'.length) : null;
}

/** The URLs of the live subscriptions among `ids`, by id (ids that cannot be one are left out). */
export async function subscriptionUrls(db: Queryable, ids: readonly string[]): Promise<Map<string, string>> {
  const candidates = ids.filter((id) => isUuid(id));
  if (candidates.length === 0) return new Map();
  const { rows } = await db.query<{ id: string; url: string }>('SELECT id, url FROM opsd_subscriptions WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL', [candidates]);
  return new Map(rows.map((row) => [row.id, row.url]));
}

/** A subscription's deliveries, oldest first, after `afterSeq`. */
export async function listDeliveries(db: Queryable, subscriptionId: string, options: { afterSeq?: number | undefined; limit: number }): Promise<{ deliveries: StoredOperation[]; hasMore: boolean }> {
  const { rows } = await db.query<OperationRow>(
    `SELECT * FROM operations
      WHERE ordering_key = $1 AND type = 'webhook.deliver' AND ($2::bigint IS NULL OR seq > $2)
      ORDER BY seq
      LIMIT $3`,
    [deliveryOrderingKey(subscriptionId), options.afterSeq ?? null, options.limit + 1],
  );
  return { deliveries: rows.slice(0, options.limit).map(rowToOperation), hasMore: rows.length > options.limit };
}

/** An outcome owed to a subscriber (see migration 005). */
export interface OutboxEntry {
  position: number;
  subscriptionId: string;
  operationId: string;
  event: string;
  occurredAt: string;
}

export async function readOutbox(db: Queryable, limit: number): Promise<OutboxEntry[]> {
  const { rows } = await db.query<{ position: string | number; subscription_id: string; operation_id: string; event: string; occurred_at: Date | string }>(
    'SELECT * FROM opsd_webhook_outbox ORDER BY position LIMIT $1',
    [limit],
  );
  return rows.map((r) => ({ position: Number(r.position), subscriptionId: r.subscription_id, operationId: r.operation_id, event: r.event, occurredAt: new Date(r.occurred_at).toISOString() }));
}

export async function deleteOutbox(db: Queryable, positions: readonly number[]): Promise<void> {
  await db.query('DELETE FROM opsd_webhook_outbox WHERE position = ANY ($1::bigint[])', [positions]);
}

export async function getOperations(db: Queryable, ids: readonly string[]): Promise<Map<string, StoredOperation>> {
  const { rows } = await db.query<OperationRow>('SELECT * FROM operations WHERE id = ANY ($1::uuid[])', [ids]);
  return new Map(rows.map((r) => [r.id, rowToOperation(r)]));
}
