import type { FastifyInstance } from 'fastify';
import { RETRY_AFTER_S } from '../domain/errors.js';
import type { Observability } from './startObservability.js';

const checkSchema = {
  type: 'object',
  required: ['status', 'observed_value', 'observed_unit'],
  properties: {
    status: { type: 'string', enum: ['pass', 'warn', 'fail'] },
    observed_value: { type: ['number', 'string', 'boolean', 'null'] },
    observed_unit: { type: 'string' },
    output: { type: 'string' },
  },
} as const;

export const healthSchema = {
  type: 'object',
  required: ['status', 'checks'],
  properties: {
    status: { type: 'string', enum: ['healthy', 'degraded', 'unhealthy'] },
    checks: { type: 'object', additionalProperties: checkSchema },
  },
} as const;

/**
 * `GET /metrics` (Prometheus text format) and `GET /health` (healthy or degraded: 200; unhealthy:
 * 503 with Retry-After) on the api.
 */
export function registerObservabilityRoutes(app: FastifyInstance, observability: Observability): void {
  const text = { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } };
  app.get('/metrics', { schema: { response: { 200: text } } }, async (_request, reply) =>
    reply.type(observability.metrics.contentType).send(await observability.metrics.render()),
  );
  app.get('/health', { schema: { response: { 200: healthSchema, 503: healthSchema } } }, async (_request, reply) => {
    const health = await observability.health.check();
    if (health.status === 'unhealthy') reply.code(503).header('retry-after', String(RETRY_AFTER_S.OPSD_ERR_UNAVAILABLE));
    return health;
  });
}
