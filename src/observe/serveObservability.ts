import type { IncomingMessage, ServerResponse } from 'node:http';
import { RETRY_AFTER_S } from '../domain/errors.js';
import { statusClass } from './httpMetrics.js';
import type { Observability } from './startObservability.js';

/**
 * `GET /metrics` and `GET /health` on a plain node:http server (the intake, a worker's health
 * port). Returns false for any other path. The api serves the same through Fastify routes.
 */
export function serveObservability(request: IncomingMessage, response: ServerResponse, path: string, observability: Observability | undefined): boolean {
  if (!observability || request.method !== 'GET' || (path !== '/metrics' && path !== '/health')) return false;
  const answer = path === '/metrics' ? metricsAnswer(observability) : healthAnswer(observability);
  void answer.then(
    ({ status, type, body }) => {
      response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...(status === 503 ? { 'retry-after': String(RETRY_AFTER_S.OPSD_ERR_UNAVAILABLE) } : {}) });
      response.end(body);
    },
    (error: unknown) => {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 'OPSD_ERR_INTERNAL', message: (error as Error).message } }));
    },
  );
  return true;
}

async function metricsAnswer(observability: Observability) {
  return { status: 200, type: observability.metrics.contentType, body: await observability.metrics.render() };
}

async function healthAnswer(observability: Observability) {
  const health = await observability.health.check();
  return { status: health.status === 'unhealthy' ? 503 : 200, type: 'application/json; charset=utf-8', body: JSON.stringify(health) };
}

/** Counts a node:http request in the HTTP metrics once its answer is sent; `route` from a fixed set. */
export function observeNodeRequest(observability: Observability | undefined, request: IncomingMessage, response: ServerResponse, route: string): void {
  if (!observability) return;
  const started = performance.now();
  const { metrics } = observability;
  metrics.httpInFlight.inc();
  response.once('close', () => {
    metrics.httpInFlight.dec();
    metrics.httpDuration.observe({ route, method: request.method ?? 'GET', status: statusClass(response.statusCode) }, (performance.now() - started) / 1000);
  });
}
