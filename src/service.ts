import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { buildApp } from './api/app.js';
import type { Config } from './config.js';
import { createInProcessDispatcher } from './dispatch/dispatcher.js';
import { runPeriodically } from './lib/periodic.js';
import type { Db } from './store/db.js';
import { openDb } from './store/openDb.js';
import { createLeaseRescuer } from './worker/leaseRescuer.js';
import { loadHandlers } from './worker/loadHandlers.js';
import { Worker } from './worker/worker.js';

/** A running opsd process. */
export interface RunningService {
  /** Base URL the API listens on. */
  url: string;
  app: FastifyInstance;
  db: Db;
  worker: Worker;
  logger: Logger;
  /** Stops accepting, drains workers within the grace period, closes the store. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'opsd', pid: process.pid } });
}

/** Everything in one process: API, worker and lease rescuer, on one store. */
export async function startService(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningService> {
  const registry = await loadHandlers(config.handlersPath);
  const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolMax: config.dbPoolMax });
  logger.info({ store: db.kind, data_dir: db.kind === 'pglite' ? config.dataDir : undefined, types: registry.types() }, 'store ready');

  const worker = new Worker({ db, registry, logger, concurrency: config.concurrency, leaseMs: config.leaseMs });
  const dispatcher = createInProcessDispatcher(worker);
  const app = buildApp({ db, registry, dispatcher, logger, bodyLimit: config.bodyLimit });
  const rescuer = createLeaseRescuer({ db, logger, onRescued: () => worker.notify() });
  const stopRescuer = runPeriodically(rescuer, Math.max(250, Math.min(5000, Math.floor(config.leaseMs / 2))), logger);

  worker.start();
  let url: string;
  try {
    url = await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await worker.stop(0);
    await stopRescuer();
    await db.close();
    throw error;
  }
  logger.info({ url, concurrency: config.concurrency }, 'opsd listening');

  let stopping: Promise<void> | null = null;
  const stop = (graceMs = config.graceMs) =>
    (stopping ??= (async () => {
      logger.info({ grace_ms: graceMs }, 'shutting down: no new requests, draining running attempts');
      await app.close();
      await worker.stop(graceMs);
      await stopRescuer();
      await dispatcher.close();
      await db.close();
      logger.info(worker.stats, 'stopped');
    })());

  return { url, app, db, worker, logger, stop };
}
