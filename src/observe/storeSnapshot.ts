import type { Logger } from 'pino';
import { LEADER_LOCK_KEY, LIVENESS_LOCK_NAMESPACE } from '../cluster/lockKeys.js';
import type { ResourceState } from '../protect/resourceRules.js';
import type { Db } from '../store/db.js';
import { HOLDS_BACK_CLEANUP } from '../store/cleanupHolders.js';
import { readResourceStates } from '../store/resourceState.js';

/** What a process reads of the whole store for its metrics and health, refreshed in the background. */
export interface StoreSnapshot {
  /** PENDING and PROCESSING operations, by type and state. */
  active: { type: string; state: 'PENDING' | 'PROCESSING'; count: number }[];
  /** Due PENDING operations, all types together: the dispatch backlog. */
  due: number;
  /** How long the oldest PENDING operation of each type has waited, in seconds. */
  oldestPendingSeconds: Map<string, number>;
  resources: Map<string, ResourceState>;
  /** Worker processes holding their liveness lock (servers only). */
  workersAlive: number | null;
  /** Whether some process holds the leader lock (servers only). */
  leaderPresent: boolean | null;
  /**
   * Age in seconds of the oldest transaction that holds back the cleanup of the store's tables, 0
   * when none does (servers only; as far as this role may see other sessions).
   */
  cleanupHeldSeconds: number | null;
  /** When it was read (ms since the epoch), or 0 before the first read. */
  readAt: number;
}

const EMPTY: StoreSnapshot = { active: [], due: 0, oldestPendingSeconds: new Map(), resources: new Map(), workersAlive: null, leaderPresent: null, cleanupHeldSeconds: null, readAt: 0 };

/**
 * Share of the time a process may spend counting the active operations. A count reads every one of
 * them, in two queries of 40-55 ms each with 200,000 scheduled for later (PostgreSQL 15, 2 cores),
 * in every process, growing with the backlog. Past this share the counts are read less often.
 */
const COUNT_TIME_SHARE = 0.02;

/**
 * Reads the store's view every `intervalMs` (default 5 s) so that a scrape or a health check never
 * costs a scan: they read the last snapshot. Only active operations are counted (through the
 * indexes that hold them); terminal totals are the `*_total` counters of the workers. A count that
 * took `t` is read again no sooner than `t / countTimeShare` later (default share 2%: every 5 s
 * until a count takes 100 ms); resources and cluster locks are read at every interval.
 */
export function createStoreSnapshot(options: { db: Db; logger: Logger; intervalMs?: number; countTimeShare?: number }) {
  const countTimeShare = options.countTimeShare ?? COUNT_TIME_SHARE;
  let current = EMPTY;
  let timer: NodeJS.Timeout | null = null;
  let warned = false;
  let countsDueAt = 0;

  const readCounts = async () => {
    const started = performance.now();
    const [active, oldest] = await Promise.all([
      options.db.query<{ type: string; state: 'PENDING' | 'PROCESSING'; n: number; due: number }>(
        `SELECT type, state, count(*)::int AS n, count(*) FILTER (WHERE run_at <= now())::int AS due
         FROM operations WHERE state IN ('PENDING', 'PROCESSING') GROUP BY type, state`,
      ),
      options.db.query<{ type: string; age: number }>(
        `SELECT type, extract(epoch FROM now() - min(created_at))::float8 AS age FROM operations WHERE state = 'PENDING' GROUP BY type`,
      ),
    ]);
    countsDueAt = Date.now() + (performance.now() - started) / countTimeShare;
    return {
      active: active.rows.map((r) => ({ type: r.type, state: r.state, count: r.n })),
      due: active.rows.filter((r) => r.state === 'PENDING').reduce((sum, r) => sum + r.due, 0),
      oldestPendingSeconds: new Map(oldest.rows.map((r) => [r.type, Math.max(0, r.age)])),
    };
  };

  const read = async () => {
    try {
      const [counts, resources, locks] = await Promise.all([
        Date.now() >= countsDueAt ? readCounts() : null,
        readResourceStates(options.db),
        options.db.kind === 'postgres'
          ? options.db.query<{ workers: number; leaders: number; cleanup_held: number | null }>(
              `SELECT count(*) FILTER (WHERE classid = $1::int::oid AND objsubid = 2)::int AS workers,
                      count(*) FILTER (WHERE classid = 0 AND objid = $2::int::oid AND objsubid = 1)::int AS leaders,
                      (SELECT coalesce(extract(epoch FROM now() - min(a.xact_start)), 0)::float8
                       FROM pg_stat_activity a WHERE ${HOLDS_BACK_CLEANUP}) AS cleanup_held
               FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
              [LIVENESS_LOCK_NAMESPACE, LEADER_LOCK_KEY],
            )
          : Promise.resolve(null),
      ]);
      current = {
        active: counts ? counts.active : current.active,
        due: counts ? counts.due : current.due,
        oldestPendingSeconds: counts ? counts.oldestPendingSeconds : current.oldestPendingSeconds,
        resources,
        workersAlive: locks ? (locks.rows[0]?.workers ?? 0) : null,
        leaderPresent: locks ? (locks.rows[0]?.leaders ?? 0) > 0 : null,
        cleanupHeldSeconds: locks ? Math.max(0, locks.rows[0]?.cleanup_held ?? 0) : null,
        readAt: Date.now(),
      };
      warned = false;
    } catch (error) {
      // Counts read in a reading that failed were not kept: the next reading counts again.
      countsDueAt = 0;
      if (!warned) options.logger.warn({ err: error }, 'reading the store for metrics failed; serving the last reading');
      warned = true;
    }
  };

  return {
    get current(): StoreSnapshot {
      return current;
    },
    /** Reads once now, then every interval. */
    async start(): Promise<void> {
      await read();
      const tick = () => {
        timer = setTimeout(() => void read().finally(tick), options.intervalMs ?? 5000);
        timer.unref();
      };
      tick();
    },
    stop(): void {
      if (timer) clearTimeout(timer);
    },
  };
}

export type StoreSnapshotReader = ReturnType<typeof createStoreSnapshot>;
