import type { Logger } from 'pino';
import type { CountingDuty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { analyzeOperations, readStateEstimates, type StateEstimate } from '../store/stateEstimates.js';

/** Operations counted at most, per state, in a pass. */
export const COUNT_CAP = 10_000;
/** Fewer than this many in a state never make its estimate lag: plans of a few rows are cheap either way. */
export const LAG_FLOOR = 1_000;
/** The count past this many times the estimate makes it lag. */
export const LAG_RATIO = 4;
/** Analyzes this far apart at least, in ms: on a large table an analyze reads 30,000 pages. */
export const MIN_ANALYZE_INTERVAL_MS = 60_000;

/**
 * Whether the planner's estimate of a state is so far below what is there that its plans go wrong.
 * An estimate of none after the queue caught up (see src/store/pendingByKey.ts), or of a few running
 * while thousands run, makes it prefer plans that read every such row for each row they look up.
 */
export function estimateLags(estimate: StateEstimate): boolean {
  if (estimate.estimated === null) return false;
  return estimate.counted >= LAG_FLOOR && estimate.counted > LAG_RATIO * estimate.estimated;
}

/**
 * The duty that keeps the planner's statistics of `operations` abreast of bursts. Autovacuum
 * analyzes a table once a tenth of it has changed: on a large table a burst of PENDING operations,
 * or thousands of long attempts running, stay unknown to the planner meanwhile. Each pass compares
 * its estimates of the PENDING and of the PROCESSING operations with a count of them, and analyzes
 * `operations` when one lags (at most once a minute). A pass resolves to the number of analyzes it ran.
 */
export function createEstimateKeeper(options: { db: Db; logger: Logger; now?: () => number }): CountingDuty {
  const now = options.now ?? Date.now;
  let lastAnalyzeAt = Number.NEGATIVE_INFINITY;
  return {
    name: 'estimate-keeper',
    async runOnce() {
      if (now() - lastAnalyzeAt < MIN_ANALYZE_INTERVAL_MS) return 0;
      const lagging = (await readStateEstimates(options.db, COUNT_CAP)).filter(estimateLags);
      if (lagging.length === 0) return 0;
      lastAnalyzeAt = now();
      const started = performance.now();
      await analyzeOperations(options.db);
      const estimates = lagging.map((e) => ({ state: e.state, estimated: Math.round(e.estimated ?? 0), counted: e.counted }));
      const ms = Math.round(performance.now() - started);
      if ((await readStateEstimates(options.db, COUNT_CAP)).some(estimateLags)) {
        options.logger.warn({ estimates, ms }, 'planner statistics of operations lag, and the analyze left them so: the table was locked by a vacuum, or this role does not own it');
        return 0;
      }
      options.logger.info({ estimates, ms }, 'planner statistics of operations lagged; analyzed');
      return 1;
    },
  };
}
