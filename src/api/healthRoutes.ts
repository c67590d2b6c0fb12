import type { FastifyInstance } from 'fastify';
import type { Db } from '../store/db.js';
import { sendError } from './errorHandler.js';
import { UNAVAILABLE_RETRY_AFTER_S } from './httpErrors.js';
import { storeReadiness } from '../store/storeReadiness.js';

/** Liveness says the process answers; readiness says the store answers too. */
export function registerHealthRoutes(app: FastifyInstance, db: Db): void {
  const statusSchema = { type: 'object', properties: { status: { type: 'string' } } };
  app.get('/health/live', { schema: { response: { 200: statusSchema } } }, async () => ({ status: 'live' }));
  app.get('/health/ready', { schema: { response: { 200: statusSchema } } }, async (_request, reply) => {
    const readiness = await storeReadiness(db);
    if (readiness.ready) return { status: 'ready' };
    reply.header('retry-after', String(UNAVAILABLE_RETRY_AFTER_S));
    return sendError(reply, 'OPSD_ERR_UNAVAILABLE', readiness.reason);
  });
}
