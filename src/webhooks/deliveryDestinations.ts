import { defineResource, type DestinationLimits, type ResourceDefinition } from '../protect/resourcePolicy.js';
import type { DestinationSource } from '../store/claimOnDestinations.js';
import type { Db } from '../store/db.js';
import { dueDeliveryKeys } from '../store/dueDeliveryKeys.js';
import { subscriptionOfOrderingKey, subscriptionUrls } from '../store/subscriptions.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { createWebhookDelivery, WEBHOOK_DELIVER_TYPE } from './deliverWebhook.js';

/** The resource every webhook delivery goes through; its limits hold per destination host. */
export const WEBHOOK_DESTINATIONS = 'webhook-destinations';

export function webhookDestinations(limits: DestinationLimits): ResourceDefinition {
  return defineResource({ name: WEBHOOK_DESTINATIONS, types: [WEBHOOK_DELIVER_TYPE], perDestination: limits });
}

/** A subscriber's destination: the host and port its URL names (`hooks.example.com`, `10.0.0.5:8443`). */
export function destinationOfUrl(url: string): string | null {
  try {
    return new URL(url).host || null;
  } catch {
    return null;
  }
}

/**
 * Where deliveries wait, and where each goes: the host of its subscription's URL. A subscription's
 * URL never changes, so each is read once; one unknown or deleted when first read has none (its
 * deliveries are skipped without a call).
 */
export function subscriptionDestinations(): DestinationSource {
  const known = new Map<string, string>();
  const destinationsOf: DestinationSource['destinationsOf'] = async (session, orderingKeys) => {
    const bySubscription = new Map<string, string>();
    for (const key of orderingKeys) {
      const id = subscriptionOfOrderingKey(key);
      if (id !== null) bySubscription.set(id, key);
    }
    const unknown = [...bySubscription.keys()].filter((id) => !known.has(id));
    for (const [id, url] of await subscriptionUrls(session, unknown)) {
      const destination = destinationOfUrl(url);
      if (destination !== null) known.set(id, destination);
    }
    const destinations = new Map<string, string>();
    for (const [id, key] of bySubscription) {
      const destination = known.get(id);
      if (destination !== undefined) destinations.set(key, destination);
    }
    return destinations;
  };
  return { dueKeys: dueDeliveryKeys, destinationsOf };
}

/** Teaches a registry webhook deliveries: the built-in type, its resource and how to find each delivery's destination. */
export function registerWebhookDeliveries(registry: HandlerRegistry, db: Db, limits: DestinationLimits): void {
  registry
    .registerInternal(createWebhookDelivery(db))
    .registerResource(webhookDestinations(limits))
    .registerDestinations(WEBHOOK_DESTINATIONS, subscriptionDestinations());
}
