import type { FastifyInstance } from 'fastify';
import type { OpsdMetrics } from './metrics.js';

/** `2xx`, `4xx`…: status classes keep the label set small. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

const STARTED = Symbol('opsd.requestStarted');

/**
 * Request durations by route template (never the raw URL: ids would make a series each), method
 * and status class, and the requests in flight, for every route of a Fastify app.
 */
export function registerHttpMetrics(app: FastifyInstance, metrics: OpsdMetrics): void {
  app.addHook('onRequest', async (request) => {
    (request as unknown as Record<symbol, number>)[STARTED] = performance.now();
    metrics.httpInFlight.inc();
  });
  app.addHook('onResponse', async (request, reply) => {
    const started = (request as unknown as Record<symbol, number | undefined>)[STARTED];
    if (started === undefined) return;
    metrics.httpInFlight.dec();
    metrics.httpDuration.observe(
      { route: request.routeOptions.url ?? 'unmatched', method: request.method, status: statusClass(reply.statusCode) },
      (performance.now() - started) / 1000,
    );
  });
}
