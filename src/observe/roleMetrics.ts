import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Admission } from '../protect/admission.js';
import type { BreakerPhase } from '../protect/resourceRules.js';
import type { Db } from '../store/db.js';
import type { Worker } from '../worker/worker.js';
import type { OpsdMetrics } from './metrics.js';
import type { StoreSnapshotReader } from './storeSnapshot.js';

const BREAKER_VALUE: Record<BreakerPhase, number> = { closed: 0, half_open: 1, open: 2 };

/** What a process has that its metrics read when scraped; every part is optional. */
export interface MetricSources {
  db: Db;
  worker?: Worker | null;
  isLeader?: () => boolean;
  dispatcher?: Dispatcher;
  admission?: Admission;
  snapshot?: StoreSnapshotReader;
  /** Children the cluster supervisor respawned before this one started (`OPSD_CLUSTER_RESTARTS`). */
  clusterRestarts?: number;
  /** The operation types this process knows (for the queue gauges). */
  types?: readonly string[];
}

/**
 * The gauges of one process read from its parts at scrape time (its pool, its worker, its
 * admission, its queue, the store's snapshot), added to the metrics it counts into.
 */
export function addRoleGauges(metrics: OpsdMetrics, sources: MetricSources): void {
  const { db, worker, admission, snapshot, dispatcher } = sources;

  metrics.gauge('opsd_store_pool_connections', 'Store connections of this process, by state (total, idle, waiting callers, max)', ['state'], (g) => {
    const pool = db.poolStats();
    if (!pool) return;
    g.set({ state: 'total' }, pool.total);
    g.set({ state: 'idle' }, pool.idle);
    g.set({ state: 'waiting' }, pool.waiting);
    g.set({ state: 'max' }, pool.max);
  });
  metrics.total('opsd_store_acquires_total', 'Store connections handed out', [], () => [[{}, db.poolStats()?.acquired ?? 0]]);
  metrics.total('opsd_store_acquire_seconds_total', 'Seconds callers waited for a store connection, in all (divide by opsd_store_acquires_total)', [], () => [[{}, db.poolStats()?.acquireSeconds ?? 0]]);
  metrics.total('opsd_store_errors_total', 'Statements and connection attempts that failed', [], () => [[{}, db.poolStats()?.errors ?? 0]]);

  if (worker) {
    metrics.gauge('opsd_worker_running_attempts', 'Attempts this worker holds (handlers running or outcomes being written)', [], (g) => g.set(worker.stats.running));
    metrics.gauge('opsd_worker_free_slots', 'Attempts this worker would start now', [], (g) => g.set(worker.freeSlots()));
    metrics.total('opsd_protection_claim_waits_total', 'Claims a shared limit held back, by reason', ['reason'], () =>
      Object.entries(worker.protection.waits).map(([reason, n]) => [{ reason }, n]),
    );
    metrics.total('opsd_protection_throttled_total', 'Upstream answers that asked to wait (429, 503 with Retry-After)', [], () => [[{}, worker.protection.throttled]]);
    metrics.total('opsd_protection_breaker_opened_total', 'Breakers this worker saw open after its report', [], () => [[{}, worker.protection.breakerOpened]]);
  }
  if (sources.isLeader) {
    const isLeader = sources.isLeader;
    metrics.gauge('opsd_leader', 'Whether this process runs the cluster-wide duties (1) or not (0)', [], (g) => g.set(isLeader() ? 1 : 0));
  }
  if (admission) {
    metrics.gauge('opsd_admission_in_flight', 'Requests being handled under admission control, and waiting for a turn', ['state'], (g) => {
      g.set({ state: 'handled' }, admission.inFlight);
      g.set({ state: 'waiting' }, admission.waiting);
    });
    metrics.total('opsd_admission_rejections_total', 'Requests refused by admission control, by reason', ['reason'], () => [
      [{ reason: 'in_flight' }, admission.stats.refusedInFlight],
      [{ reason: 'saturated' }, admission.stats.refusedSaturated],
      [{ reason: 'backlog' }, admission.stats.shedBacklog],
    ]);
  }
  if (dispatcher?.queueCounts) {
    const counts = dispatcher.queueCounts.bind(dispatcher);
    const types = sources.types ?? [];
    metrics.gauge('opsd_queue_jobs', 'BullMQ jobs by queue and state (wake-ups, not operations)', ['queue', 'state'], async (g) => {
      // A scrape never waits long on Redis: its answer is bounded, and a failure leaves the gauge empty.
      for (const [queue, byState] of Object.entries(await counts(types).catch(() => ({})))) {
        for (const [state, n] of Object.entries(byState)) g.set({ queue, state }, n);
      }
    });
  }
  if (snapshot) {
    metrics.gauge('opsd_operations', 'Active operations in the store, by type and state (counted every 5 s, less often in a large backlog)', ['type', 'state'], (g) => {
      for (const { type, state, count } of snapshot.current.active) g.set({ type, state }, count);
    });
    metrics.gauge('opsd_operations_due', 'Due PENDING operations in the store, all types (counted every 5 s, less often in a large backlog)', [], (g) => g.set(snapshot.current.due));
    metrics.gauge('opsd_oldest_pending_age_seconds', 'Age of the oldest PENDING operation, by type (counted every 5 s, less often in a large backlog)', ['type'], (g) => {
      for (const [type, age] of snapshot.current.oldestPendingSeconds) g.set({ type }, age);
    });
    metrics.gauge('opsd_resource_breaker_state', 'Breaker of each resource: 0 closed, 1 half-open, 2 open (read every 5 s)', ['resource'], (g) => {
      for (const [resource, state] of snapshot.current.resources) g.set({ resource }, BREAKER_VALUE[state.breaker.phase]);
    });
    metrics.gauge('opsd_resource_paused', 'Resources paused by an operator (1) or by an upstream until a time still ahead (1), else 0', ['resource'], (g) => {
      const now = Date.now();
      for (const [resource, state] of snapshot.current.resources) g.set({ resource }, state.paused || (state.pausedUntil ?? 0) > now ? 1 : 0);
    });
    metrics.gauge('opsd_cluster_workers_alive', 'Worker processes holding their liveness lock in the store (read every 5 s)', [], (g) => {
      if (snapshot.current.workersAlive !== null) g.set(snapshot.current.workersAlive);
    });
    metrics.gauge('opsd_cluster_leader_present', 'Whether some process holds the leader lock (read every 5 s)', [], (g) => {
      if (snapshot.current.leaderPresent !== null) g.set(snapshot.current.leaderPresent ? 1 : 0);
    });
    metrics.gauge(
      'opsd_store_cleanup_held_seconds',
      "Age of the oldest transaction that keeps old row versions of opsd's tables in every scan's way (any in its database, any that wrote elsewhere on the server), 0 if none (read every 5 s)",
      [],
      (g) => {
        if (snapshot.current.cleanupHeldSeconds !== null) g.set(snapshot.current.cleanupHeldSeconds);
      },
    );
  }
  metrics.gauge('opsd_cluster_restarts', 'Children the cluster supervisor had respawned when this process started', [], (g) => g.set(sources.clusterRestarts ?? 0));
}
