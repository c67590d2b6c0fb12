import { Webhook } from 'standardwebhooks';
import type { Json } from '../domain/operation.js';
import type { Db } from '../store/db.js';
import { findSubscription } from '../store/subscriptions.js';
import { httpRequest } from '../worker/builtinOperations.js';
import { defineOperation, type OperationDefinition } from '../worker/defineOperation.js';

export const WEBHOOK_DELIVER_TYPE = 'webhook.deliver';

/**
 * Attempts per delivery: with backoff from 1 s up to 5 min (full jitter), 60 attempts span about
 * two hours, so a subscriber that is down for an hour still receives everything.
 */
export const DELIVERY_MAX_ATTEMPTS = 60;

/** What the outbox relay queues for each outcome owed to a subscriber. */
export interface DeliveryPayload {
  subscription_id: string;
  /** `operation.completed`, `operation.rejected`, `operation.failed` or `operation.cancelled`. */
  event: string;
  /** Stable across attempts, so a receiver can deduplicate. */
  webhook_id: string;
  occurred_at: string;
  /** The operation as it stood when the delivery was queued. */
  operation: Json;
}

/**
 * The built-in delivery of an outcome to a subscriber: a POST signed per Standard Webhooks with the
 * subscription's secret, sent through `http.request` (its destination rules, retries on 429, 5xx
 * and network errors with Retry-After honoured, and rejection on other statuses). A subscription
 * deleted since is skipped. Deliveries of one subscription share an ordering key: one at a time,
 * in the order the outcomes were recorded.
 */
export function createWebhookDelivery(db: Db): OperationDefinition {
  return defineOperation<DeliveryPayload>({
    type: WEBHOOK_DELIVER_TYPE,
    maxAttempts: DELIVERY_MAX_ATTEMPTS,
    timeoutMs: 30_000,
    backoff: { baseMs: 1000, maxMs: 300_000 },
    async handle(context) {
      const { payload } = context;
      const subscription = await findSubscription(db, payload.subscription_id);
      if (!subscription) return { skipped: 'the subscription was deleted' };
      const sentAt = new Date();
      const body = JSON.stringify({ type: payload.event, timestamp: sentAt.toISOString(), data: payload.operation });
      const signature = new Webhook(subscription.secret).sign(payload.webhook_id, sentAt, body);
      return httpRequest.handle({
        ...context,
        payload: {
          method: 'POST',
          url: subscription.url,
          headers: {
            'content-type': 'application/json',
            'webhook-id': payload.webhook_id,
            'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
            'webhook-signature': signature,
          },
          body,
        },
      } as never);
    },
  }) as unknown as OperationDefinition;
}
