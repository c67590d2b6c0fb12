import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Db } from '../store/db.js';
import { storeReadiness } from '../store/storeReadiness.js';
import { trackEventLoopDelay } from './eventLoopDelay.js';
import { evaluateHealth, type HealthThresholds } from './healthModel.js';
import type { StoreSnapshotReader } from './storeSnapshot.js';

/** Seconds of event loop history the health check looks back over. */
const LOOKBACK_S = 10;

/**
 * Gathers what `GET /health` reports for one process: the event loop's longest delay in the last
 * 10 s, resident memory, a ping of the store, the pool, wake-ups and the due backlog, whether a
 * leader exists; and asks healthModel for the verdict.
 */
export function createHealthMonitor(options: {
  db: Db;
  thresholds: HealthThresholds;
  dispatcher?: Dispatcher;
  snapshot?: StoreSnapshotReader;
  /** Whether this process dispatches or claims work (api, worker, start): then it reports on wake-ups. */
  dispatches: boolean;
  /** Whether a leader is known to exist without the store's lock table (embedded: always). */
  alwaysLeads?: boolean;
}) {
  const eventLoop = trackEventLoopDelay(LOOKBACK_S);

  return {
    async check() {
      const pinged = performance.now();
      const readiness = await storeReadiness(options.db);
      const storeMs = performance.now() - pinged;
      const pool = options.db.poolStats();
      const snapshot = options.snapshot?.current;
      const dispatch = options.dispatcher?.health();
      return evaluateHealth(
        {
          eventLoopMaxMs: eventLoop.maxMs(),
          rssMb: process.memoryUsage.rss() / 2 ** 20,
          store: readiness.ready ? { ok: true, ms: storeMs } : { ok: false, reason: readiness.reason },
          ...(pool ? { pool: { waiting: pool.waiting, total: pool.total, max: pool.max } } : {}),
          ...(options.dispatches
            ? { dispatch: { ok: !dispatch || dispatch.status === 'ok', ...(dispatch?.reason ? { reason: dispatch.reason } : {}), due: snapshot && snapshot.readAt > 0 ? snapshot.due : null } }
            : {}),
          ...(options.dispatches ? { leaderPresent: options.alwaysLeads ? true : (snapshot?.leaderPresent ?? null) } : {}),
        },
        options.thresholds,
      );
    },
    stop(): void {
      eventLoop.stop();
    },
  };
}

export type HealthMonitor = ReturnType<typeof createHealthMonitor>;
