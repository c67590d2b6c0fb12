import type { Logger } from 'pino';
import { operationBody } from '../api/serialize.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Duty } from '../lib/periodic.js';
import { acceptOperations, type NewOperation } from '../store/acceptOperations.js';
import type { Db } from '../store/db.js';
import { deleteOutbox, deliveryOrderingKey, getOperations, readOutbox, type OutboxEntry } from '../store/subscriptions.js';
import type { StoredOperation } from '../store/operationRow.js';
import { WEBHOOK_DELIVER_TYPE, DELIVERY_MAX_ATTEMPTS, type DeliveryPayload } from './deliverWebhook.js';

/** Outcomes turned into deliveries per pass, at most. */
const BATCH = 500;

/** The `webhook-id` of the delivery of one event of one operation: the same on every attempt. */
export function webhookId(operationId: string, event: string): string {
  return `msg_${operationId}_${event.replace(/^operation\./, '')}`;
}

function deliveryOf(entry: OutboxEntry, operation: StoredOperation): NewOperation {
  const payload: DeliveryPayload = {
    subscription_id: entry.subscriptionId,
    event: entry.event,
    webhook_id: webhookId(entry.operationId, entry.event),
    occurred_at: entry.occurredAt,
    operation: operationBody(operation) as unknown as DeliveryPayload['operation'],
  };
  return {
    type: WEBHOOK_DELIVER_TYPE,
    externalId: `webhook:${entry.subscriptionId}:${entry.operationId}:${entry.event}`,
    orderingKey: deliveryOrderingKey(entry.subscriptionId),
    payload: payload as never,
    maxAttempts: DELIVERY_MAX_ATTEMPTS,
  };
}

/**
 * The leader's duty that turns owed outcomes (rows the store's trigger wrote in the transaction of
 * each outcome) into `webhook.deliver` operations, then forgets them. A crash between the two
 * steps queues the same deliveries again next pass, where their external ids make them replays;
 * a delivery whose operation changed meanwhile is a conflict on the same id, also already queued.
 */
export function createOutboxRelay(options: { db: Db; dispatcher: Dispatcher; logger: Logger; now?: () => Date }): Duty & { runOnce(): Promise<number> } {
  const { db, dispatcher, logger } = options;
  const now = options.now ?? (() => new Date());
  return {
    name: 'webhook-outbox-relay',
    async runOnce() {
      const entries = await readOutbox(db, BATCH);
      if (entries.length === 0) return 0;
      const operations = await getOperations(db, [...new Set(entries.map((e) => e.operationId))]);
      const deliverable = entries.filter((e) => operations.has(e.operationId));
      const results = await acceptOperations(db, deliverable.map((e) => deliveryOf(e, operations.get(e.operationId) as StoredOperation)), now());
      const queued = results.flatMap((r) => (r.outcome === 'accepted' ? [r.operation] : []));
      await deleteOutbox(db, entries.map((e) => e.position));
      if (queued.length > 0) {
        logger.debug({ count: queued.length }, 'webhook deliveries queued');
        await dispatcher.dispatch(queued).catch((error: unknown) => logger.warn({ err: error }, 'waking workers for webhook deliveries failed; they run on the next poll'));
      }
      return queued.length;
    },
  };
}
