import type { FastifyInstance } from 'fastify';
import type { Db } from '../store/db.js';
import { sendError } from './errorHandler.js';

const READY_TIMEOUT_MS = 2000;

/** Liveness says the process answers; readiness says the store answers too. */
export function registerHealthRoutes(app: FastifyInstance, db: Db): void {
  const statusSchema = { type: 'object', properties: { status: { type: 'string' } } };
  app.get('/health/live', { schema: { response: { 200: statusSchema } } }, async () => ({ status: 'live' }));
  app.get('/health/ready', { schema: { response: { 200: statusSchema } } }, async (_request, reply) => {
    try {
      await withTimeout(db.query('SELECT 1'), READY_TIMEOUT_MS);
      return { status: 'ready' };
    } catch (error) {
      reply.header('retry-after', '5');
      return sendError(reply, 'OPSD_ERR_UNAVAILABLE', `store not ready: ${(error as Error).message}`);
    }
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
