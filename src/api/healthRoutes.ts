import type { FastifyInstance } from 'fastify';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Db } from '../store/db.js';
import { sendError } from './errorHandler.js';
import { storeReadiness } from '../store/storeReadiness.js';

/**
 * Liveness says the process answers; readiness says the store answers too. A queue that does not
 * take wake-ups makes the process `degraded` (still 200: accepted work is safe in the store and
 * runs without its wake-up, a few seconds later).
 */
export function registerHealthRoutes(app: FastifyInstance, db: Db, dispatcher: Dispatcher): void {
  const statusSchema = {
    type: 'object',
    properties: { status: { type: 'string' }, checks: { type: 'object', additionalProperties: { type: 'string' } } },
  };
  app.get('/health/live', { schema: { response: { 200: statusSchema } } }, async () => ({ status: 'live' }));
  app.get('/health/ready', { schema: { response: { 200: statusSchema } } }, async (_request, reply) => {
    const readiness = await storeReadiness(db);
    if (readiness.ready) {
      const dispatch = dispatcher.health();
      return dispatch.status === 'ok' ? { status: 'ready' } : { status: 'degraded', checks: { dispatch: dispatch.reason ?? 'degraded' } };
    }
    return sendError(reply, 'OPSD_ERR_UNAVAILABLE', readiness.reason);
  });
}
