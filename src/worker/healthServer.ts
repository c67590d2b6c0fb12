import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { storeReadiness } from '../store/storeReadiness.js';
import type { Db } from '../store/db.js';
import { RETRY_AFTER_S } from '../domain/errors.js';
import type { DispatchHealth } from '../dispatch/dispatcher.js';
import type { Worker } from './worker.js';
import { observeNodeRequest, serveObservability } from '../observe/serveObservability.js';
import type { Observability } from '../observe/startObservability.js';
import { gateNodeRequest, type Authenticator } from '../auth/authenticator.js';

/** Ready, or degraded (still 200) while the queue does not take wake-ups: the worker polls the store meanwhile. */
function readyBody(dispatch: DispatchHealth | undefined) {
  return !dispatch || dispatch.status === 'ok' ? { status: 'ready' } : { status: 'degraded', checks: { dispatch: dispatch.reason ?? 'degraded' } };
}

/** What a worker reports about itself on `/stats`. */
export interface WorkerReport {
  worker: string;
  running: number;
  claimed: number;
  completed: number;
  rejected: number;
  retried: number;
  failed: number;
  released: number;
  deferred: number;
  lease_losses: number;
  /** Claims held back by a shared limit, by reason, and what attempts told their resources. */
  protection: { waits: Record<string, number>; throttled: number; breaker_opened: number; reports_lost: number };
  /** Operations waiting to run, as this worker last saw it (refreshed at most once a second). */
  queue_depth: number | null;
  leader: boolean;
}

/**
 * A worker's own small HTTP server: `/health/live`, `/health/ready` (the store answers and the
 * worker is not draining), `/stats`. Plain node:http: a worker needs no framework for three routes.
 */
export async function startHealthServer(options: {
  port: number;
  host: string;
  worker: Worker;
  db: Db;
  queueDepth: () => Promise<number>;
  isLeader: () => boolean;
  isDraining: () => boolean;
  /** Whether wake-ups through the queue get through (queue mode). Default: always. */
  dispatchHealth?: () => DispatchHealth;
  /** `/metrics` and `/health`; read once the store is, so given late. */
  observability?: () => Observability | undefined;
  /** Who may read `/stats` (and `/metrics` when it needs a key); without it every route is open. */
  authenticator?: Authenticator;
}): Promise<{ url: string; close(): Promise<void> }> {
  let depth: { value: number | null; at: number } = { value: null, at: 0 };
  const refreshDepth = async () => {
    if (Date.now() - depth.at < 1000) return depth.value;
    try {
      depth = { value: await options.queueDepth(), at: Date.now() };
    } catch {
      depth = { value: null, at: Date.now() };
    }
    return depth.value;
  };

  const server: Server = createServer((request, response) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json', ...(status === 503 ? { 'retry-after': String(RETRY_AFTER_S.OPSD_ERR_UNAVAILABLE) } : {}) });
      response.end(JSON.stringify(body));
    };
    const path = (request.url ?? '/').split('?')[0] as string;
    const observability = options.observability?.();
    observeNodeRequest(observability, request, response, ['/health/live', '/health/ready', '/health', '/metrics', '/stats'].includes(path) ? path : 'unmatched');
    const serve = () => {
      if (serveObservability(request, response, path, observability)) return;
      if (path === '/health/live') return send(200, { status: 'live' });
      if (path === '/health/ready') {
        if (options.isDraining()) return send(503, { error: { code: 'OPSD_ERR_UNAVAILABLE', message: 'worker is draining' } });
        void storeReadiness(options.db).then((readiness) =>
          readiness.ready ? send(200, readyBody(options.dispatchHealth?.())) : send(503, { error: { code: 'OPSD_ERR_UNAVAILABLE', message: readiness.reason } }),
        );
        return;
      }
      if (path === '/stats') {
        void refreshDepth().then((queueDepth) => {
          const stats = options.worker.stats;
          const protection = options.worker.protection;
          const report: WorkerReport = {
            worker: options.worker.id,
            running: stats.running,
            claimed: stats.claimed,
            completed: stats.completed,
            rejected: stats.rejected,
            retried: stats.retried,
            failed: stats.failed,
            released: stats.released,
            deferred: stats.deferred,
            lease_losses: stats.leaseLost,
            protection: {
              waits: protection.waits,
              throttled: protection.throttled,
              breaker_opened: protection.breakerOpened,
              reports_lost: protection.lost,
            },
            queue_depth: queueDepth,
            leader: options.isLeader(),
          };
          send(200, report);
        });
        return;
      }
      send(404, { error: { code: 'OPSD_ERR_ROUTE_NOT_FOUND', message: `no route ${request.method} ${path}` } });
    };
    gateNodeRequest(
      options.authenticator,
      request,
      path,
      serve,
      (refusal) => {
        response.writeHead(refusal.error.status, { 'content-type': 'application/json', ...refusal.headers });
        response.end(JSON.stringify({ error: { code: refusal.error.code, message: refusal.error.message } }));
      },
      () => send(503, { error: { code: 'OPSD_ERR_UNAVAILABLE', message: 'the store is unavailable; retry later' } }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
