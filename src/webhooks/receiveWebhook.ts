import type { IncomingHttpHeaders } from 'node:http';
import { OpsdError } from '../domain/errors.js';
import type { Json } from '../domain/operation.js';
import { parseJsonBody } from '../api/parseJsonBody.js';
import type { SubmissionReply, Submissions } from '../api/submissions.js';
import type { Db } from '../store/db.js';
import { recordIgnoredDelivery } from '../store/ignoredDeliveries.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { mapDelivery, type WebhookDelivery } from './webhookSource.js';

export const WEBHOOK_PATH_PREFIX = '/v1/webhooks/';

/** Headers kept with every delivery, besides those its verifier names. */
const ALWAYS_KEPT = ['content-type', 'user-agent'];

export type ReceiveWebhook = (source: string, rawBody: Buffer, headers: IncomingHttpHeaders) => Promise<SubmissionReply>;

/**
 * A provider's delivery, verified over its raw bytes before anything is parsed or written, then
 * mapped and submitted like any operation: its external id is the provider's delivery id, so a
 * redelivery is a replay (200) and never a second operation. The delivery itself (the headers
 * that matter and the raw body) is kept with the `received` event.
 */
export function createWebhookReceiver(deps: { db: Db; registry: HandlerRegistry; submissions: Submissions; now: () => Date }): ReceiveWebhook {
  return async (sourceName, rawBody, headers) => {
    const source = deps.registry.webhookSource(sourceName);
    if (!source) {
      throw new OpsdError('OPSD_ERR_UNKNOWN_WEBHOOK_SOURCE', `no webhook source "${sourceName}" is defined`, { known_sources: deps.registry.webhookSources() });
    }
    const verified = source.verifier.verify(rawBody, headers, deps.now().getTime());
    const text = rawBody.toString('utf8');
    const body = parseJsonBody(text) as Json;
    const fromBody = (field: string) => {
      const value = typeof body === 'object' && body !== null && !Array.isArray(body) ? body[field] : undefined;
      return typeof value === 'string' ? value : null;
    };
    const id = verified.deliveryId ?? fromBody('id');
    if (!id) throw new OpsdError('OPSD_ERR_VALIDATION', `the delivery carries no id (the ${source.verifier.kind} verifier found none)`);
    const kept: Record<string, string> = {};
    for (const name of [...ALWAYS_KEPT, ...source.verifier.headers]) {
      const value = headers[name];
      if (value !== undefined) kept[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const delivery: WebhookDelivery = { source: source.name, id, event: verified.event ?? fromBody('type') ?? '', headers: kept, body };
    const mapping = mapDelivery(source, delivery);
    if (mapping === null) {
      const first = await recordIgnoredDelivery(deps.db, delivery, deps.now());
      return { status: 200, headers: first ? {} : { 'idempotent-replayed': 'true' }, body: { status: 'ignored', source: source.name, delivery_id: id, event: delivery.event } };
    }
    return deps.submissions.submitOne(
      {
        type: mapping.type,
        external_id: mapping.externalId,
        payload: mapping.payload,
        ...(mapping.orderingKey !== undefined ? { ordering_key: mapping.orderingKey } : {}),
        ...(mapping.priority !== undefined ? { priority: mapping.priority } : {}),
      },
      { source: source.name, delivery_id: id, event: delivery.event, headers: kept, body: text },
    );
  };
}
