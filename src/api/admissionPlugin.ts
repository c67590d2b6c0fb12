import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OpsdError } from '../domain/errors.js';
import type { Admission, PressureOptions } from '../protect/admission.js';
import type { Db } from '../store/db.js';

/** Health (and metrics) routes answer whatever the load: a probe that gets 429 restarts a busy process. */
export function isExempt(url: string | undefined): boolean {
  return url !== undefined && (url.startsWith('/health') || url === '/metrics');
}

/**
 * Admission control on the api: a bounded number of requests in flight with a bounded wait for a
 * turn (then 429 with Retry-After), and `@fastify/under-pressure` for saturation (then 503 with
 * Retry-After): an event loop that lags past its threshold, or a store pool with too many callers
 * waiting. Health routes are always served.
 */
export function registerAdmission(app: FastifyInstance, options: { admission: Admission; pressure: PressureOptions; db: Db }): void {
  const { admission, pressure, db } = options;
  void app.register(underPressure, {
    maxEventLoopDelay: pressure.maxEventLoopDelayMs,
    ...(pressure.maxPoolWaiting > 0
      ? {
          healthCheck: async () => (db.poolStats()?.waiting ?? 0) < pressure.maxPoolWaiting,
          healthCheckInterval: 250,
        }
      : {}),
    pressureHandler: async (request: FastifyRequest, _reply: unknown, type: string) => {
      if (isExempt(request.routeOptions.url)) return;
      admission.stats.refusedSaturated += 1;
      throw new OpsdError('OPSD_ERR_SATURATED', type === 'healthCheck' ? 'too many requests are waiting for the store' : `the event loop is saturated (${type})`);
    },
  });
  app.addHook('onRequest', async (request, reply) => {
    if (isExempt(request.routeOptions.url)) return;
    const release = await admission.admit();
    reply.raw.once('close', release);
  });
}
