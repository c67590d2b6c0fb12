import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Admission } from '../protect/admission.js';
import type { Db } from '../store/db.js';
import type { Worker } from '../worker/worker.js';
import { createHealthMonitor, type HealthMonitor } from './healthMonitor.js';
import type { OpsdMetrics } from './metrics.js';
import { addRoleGauges } from './roleMetrics.js';
import { createStoreSnapshot } from './storeSnapshot.js';

/** What a process serves on `/metrics` and `/health`. */
export interface Observability {
  metrics: OpsdMetrics;
  health: HealthMonitor;
  stop(): void;
}

/**
 * A process's metrics and health, from its parts. Processes that view the whole store (api, start,
 * worker) read it every 5 s for the gauges of active operations, resources and the cluster; the
 * intake, kept lean, does not.
 */
export async function startObservability(
  metrics: OpsdMetrics,
  config: Config,
  parts: { role: string; db: Db; logger: Logger; types: readonly string[]; worker?: Worker | null; isLeader?: () => boolean; dispatcher?: Dispatcher; admission?: Admission },
): Promise<Observability> {
  const { role } = parts;
  const snapshot = role === 'intake' ? undefined : createStoreSnapshot({ db: parts.db, logger: parts.logger });
  await snapshot?.start();
  addRoleGauges(metrics, {
    db: parts.db,
    types: parts.types,
    clusterRestarts: Number(process.env.OPSD_CLUSTER_RESTARTS ?? 0) || 0,
    ...(parts.worker !== undefined ? { worker: parts.worker } : {}),
    ...(parts.isLeader ? { isLeader: parts.isLeader } : {}),
    ...(parts.dispatcher ? { dispatcher: parts.dispatcher } : {}),
    ...(parts.admission ? { admission: parts.admission } : {}),
    ...(snapshot ? { snapshot } : {}),
  });
  const health = createHealthMonitor({
    db: parts.db,
    thresholds: config.health,
    dispatches: role !== 'intake',
    alwaysLeads: !config.databaseUrl,
    ...(parts.dispatcher ? { dispatcher: parts.dispatcher } : {}),
    ...(snapshot ? { snapshot } : {}),
  });
  return {
    metrics,
    health,
    stop() {
      snapshot?.stop();
      health.stop();
    },
  };
}
