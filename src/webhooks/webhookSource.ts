import type { Json } from '../domain/operation.js';
import type { WebhookVerifier } from './verifiers.js';

/** A verified delivery as a mapping sees it. */
export interface WebhookDelivery {
  source: string;
  /** The provider's delivery id (a header, or the event id in the body for Stripe). */
  id: string;
  /** The provider's event name (a header, or the body's `type` for Stripe); '' when it sends none. */
  event: string;
  /** The headers worth keeping, lower-cased. */
  headers: Record<string, string>;
  body: Json;
}

/** What a delivery becomes; `null` from a mapping ignores it (answered 200, recorded as ignored). */
export interface WebhookMapping {
  type: string;
  /** Default: `<source>:<delivery id>`, so a provider's redeliveries are one operation. */
  externalId?: string;
  /** Default: the external id (no ordering with other deliveries). */
  orderingKey?: string;
  /** Default: `{ event, delivery_id, body }`. */
  payload?: Json;
  priority?: number;
}

export interface WebhookSourceDefinition {
  readonly kind: 'opsd.webhook-source';
  /** The `:source` of `POST /v1/webhooks/:source`. */
  name: string;
  verifier: WebhookVerifier;
  /** The operation type deliveries become, unless `map` says otherwise. */
  type: string;
  /** When given, deliveries of other events are ignored (the declarative default). */
  events?: readonly string[];
  /** Turns a delivery into an operation, or null to ignore it. */
  map?: (delivery: WebhookDelivery) => WebhookMapping | null;
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** A webhook source for a handlers module to export. */
export function defineWebhookSource(definition: Omit<WebhookSourceDefinition, 'kind'>): WebhookSourceDefinition {
  if (!NAME.test(definition.name)) throw new Error(`webhook source name "${definition.name}" must match ${NAME}`);
  return { ...definition, kind: 'opsd.webhook-source' };
}

export function isWebhookSource(value: unknown): value is WebhookSourceDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'opsd.webhook-source';
}

/** The declarative default: the source's type, with mapDelivery's external id and payload; other events ignored when `events` lists some. */
export function defaultMapping(source: WebhookSourceDefinition, delivery: WebhookDelivery): WebhookMapping | null {
  if (source.events && !source.events.includes(delivery.event)) return null;
  return { type: source.type };
}

/** The mapping of a delivery with every default filled in, or null when it is ignored. */
export function mapDelivery(source: WebhookSourceDefinition, delivery: WebhookDelivery): Required<Omit<WebhookMapping, 'orderingKey' | 'priority'>> & Pick<WebhookMapping, 'orderingKey' | 'priority'> | null {
  const mapped = source.map ? source.map(delivery) : defaultMapping(source, delivery);
  if (mapped === null) return null;
  return {
    type: mapped.type,
    externalId: mapped.externalId ?? `${source.name}:${delivery.id}`,
    payload: mapped.payload ?? { event: delivery.event, delivery_id: delivery.id, body: delivery.body },
    ...(mapped.orderingKey !== undefined ? { orderingKey: mapped.orderingKey } : {}),
    ...(mapped.priority !== undefined ? { priority: mapped.priority } : {}),
  };
}
