import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { OpsdError } from '../domain/errors.js';
import type { Db } from '../store/db.js';
import { deleteSubscription, findSubscription, insertSubscription, listDeliveries, listSubscriptions, type Subscription } from '../store/subscriptions.js';
import { errorSchema, idParamsSchema, operationSchema } from './schemas.js';
import { operationBody } from './serialize.js';
import { isUuid } from '../domain/uuid.js';

/** What a subscription can hear about: each terminal outcome of an operation. */
export const SUBSCRIBABLE_EVENTS = ['operation.completed', 'operation.rejected', 'operation.failed', 'operation.cancelled'] as const;

const errors = { '4xx': errorSchema, '5xx': errorSchema };

const newSubscriptionSchema = {
  type: 'object',
  required: ['url', 'events'],
  additionalProperties: false,
  properties: {
    url: { type: 'string', pattern: '^https?://', maxLength: 2048 },
    events: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: SUBSCRIBABLE_EVENTS } },
    types: { type: 'array', minItems: 1, maxItems: 100, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 128 } },
  },
} as const;

const subscriptionSchema = {
  type: 'object',
  required: ['id', 'url', 'events', 'types', 'created_at'],
  properties: {
    id: { type: 'string' },
    url: { type: 'string' },
    events: { type: 'array', items: { type: 'string' } },
    types: { type: ['array', 'null'], items: { type: 'string' } },
    created_at: { type: 'string' },
    secret: { type: 'string', description: 'Signs the deliveries (Standard Webhooks); shown only in the answer to the POST that created it.' },
  },
} as const;

const deliveriesQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
    cursor: { type: 'string', pattern: '^[0-9]{1,15}$' },
  },
} as const;

function subscriptionBody(s: Subscription) {
  return { id: s.id, url: s.url, events: s.events, types: s.types, created_at: s.createdAt };
}

/** Subscriptions to outcomes: create (the signing secret is shown once), list, read, delete, and each one's deliveries. */
export function registerSubscriptionRoutes(app: FastifyInstance, deps: { db: Db; now: () => Date }): void {
  const { db, now } = deps;
  const findOrThrow = async (id: string) => {
    const subscription = isUuid(id) ? await findSubscription(db, id) : null;
    if (!subscription) throw new OpsdError('OPSD_ERR_SUBSCRIPTION_NOT_FOUND', `no subscription ${id}`);
    return subscription;
  };

  app.post<{ Body: { url: string; events: string[]; types?: string[] } }>(
    '/v1/subscriptions',
    { schema: { summary: 'Subscribe a URL to outcomes', body: newSubscriptionSchema, response: { 201: subscriptionSchema, ...errors } } },
    async (request, reply) => {
      try {
        new URL(request.body.url);
      } catch {
        throw new OpsdError('OPSD_ERR_VALIDATION', `url "${request.body.url}" is not a URL`, [{ path: '/url', message: 'must be a URL' }]);
      }
      const secret = `whsec_${randomBytes(24).toString('base64')}`;
      const created = await insertSubscription(db, {
        id: randomUUID(),
        url: request.body.url,
        events: request.body.events,
        types: request.body.types ?? null,
        secret,
        createdAt: now().toISOString(),
      });
      return reply.code(201).header('location', `/v1/subscriptions/${created.id}`).send({ ...subscriptionBody(created), secret });
    },
  );

  app.get(
    '/v1/subscriptions',
    { schema: { summary: 'List subscriptions', response: { 200: { type: 'object', required: ['subscriptions'], properties: { subscriptions: { type: 'array', items: subscriptionSchema } } }, ...errors } } },
    async () => ({ subscriptions: (await listSubscriptions(db)).map(subscriptionBody) }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/subscriptions/:id',
    { schema: { summary: 'Read a subscription', params: idParamsSchema, response: { 200: subscriptionSchema, ...errors } } },
    async (request) => subscriptionBody(await findOrThrow(request.params.id)),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/subscriptions/:id',
    { schema: { summary: 'Delete a subscription; deliveries already queued are skipped', params: idParamsSchema, response: { 204: { type: 'null' }, ...errors } } },
    async (request, reply) => {
      await findOrThrow(request.params.id);
      await deleteSubscription(db, request.params.id, now());
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { id: string }; Querystring: { limit: number; cursor?: string } }>(
    '/v1/subscriptions/:id/deliveries',
    {
      schema: {
        summary: "A subscription's deliveries, oldest first: each is a webhook.deliver operation with its attempts, result and error",
        params: idParamsSchema,
        querystring: deliveriesQuerySchema,
        response: { 200: { type: 'object', required: ['deliveries', 'next_cursor'], properties: { deliveries: { type: 'array', items: operationSchema }, next_cursor: { type: ['string', 'null'] } } }, ...errors },
      },
    },
    async (request) => {
      await findOrThrow(request.params.id);
      const { limit, cursor } = request.query;
      const page = await listDeliveries(db, request.params.id, { afterSeq: cursor === undefined ? undefined : Number(cursor), limit });
      const last = page.deliveries.at(-1);
      return { deliveries: page.deliveries.map(operationBody), next_cursor: page.hasMore && last ? String(last.seq) : null };
    },
  );
}
