import type { Logger } from 'pino';
import type { CountingDuty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { analyzeOperations, readStateEstimates, readTableEstimate, type StateEstimate, type TableEstimate } from '../store/stateEstimates.js';

/** Operations counted at most, per state, in a pass. */
export const COUNT_CAP = 10_000;
/** Fewer than this many in a state never make its estimate lag: plans of a few rows are cheap either way. */
export const LAG_FLOOR = 1_000;
/** The count past this many times the estimate makes it lag. */
export const LAG_RATIO = 4;
/**
 * Pages past which a table never analyzed outgrows what the planner assumes of it: ten pages, the
 * size it takes a table never vacuumed to have, and keeps in the plans a session made then.
 */
export const UNKNOWN_TABLE_PAGES = 50;
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
 * Whether `operations` was never analyzed and has outgrown the ten pages the planner assumes of such
 * a table. A new store's sessions plan their statements on the empty table and keep those plans
 * until it is first analyzed, which autovacuum does within a minute or so: meanwhile each finish
 * read the whole table to find its rows (322 of the 461 finishes of the benchmark's end-to-end runs,
 * api + worker, in one start).
 */
export function tableUnknown(table: TableEstimate): boolean {
  return !table.known && table.pages >= UNKNOWN_TABLE_PAGES;
}

/**
 * The duty that keeps the planner's statistics of `operations` abreast of bursts. Autovacuum
 * analyzes a table once a tenth of it has changed: on a large table a burst of PENDING operations,
 * or thousands of long attempts running, stay unknown to the planner meanwhile. Each pass compares
 * its estimates of the PENDING and of the PROCESSING operations with a count of them, and analyzes
 * `operations` when one lags (at most once a minute), or when the table was never analyzed and has
 * outgrown the planner's assumption. A pass resolves to the number of analyzes it ran.
 */
export function createEstimateKeeper(options: { db: Db; logger: Logger; now?: () => number }): CountingDuty {
  const now = options.now ?? Date.now;
  let lastAnalyzeAt = Number.NEGATIVE_INFINITY;
  /** What makes the planner's picture of `operations` wrong now: states whose estimate lags, and a table it never learned. */
  const staleness = async () => {
    const lagging = (await readStateEstimates(options.db, COUNT_CAP)).filter(estimateLags);
    const table = await readTableEstimate(options.db);
    const unknown = tableUnknown(table);
    return { lagging, table, unknown, stale: lagging.length > 0 || unknown };
  };
  return {
    name: 'estimate-keeper',
    async runOnce() {
      if (now() - lastAnalyzeAt < MIN_ANALYZE_INTERVAL_MS) return 0;
      const { lagging, table, unknown, stale } = await staleness();
      if (!stale) return 0;
      lastAnalyzeAt = now();
      const started = performance.now();
      await analyzeOperations(options.db);
      const estimates = lagging.map((e) => ({ state: e.state, estimated: Math.round(e.estimated ?? 0), counted: e.counted }));
      const found = { estimates, ...(unknown ? { never_analyzed_pages: table.pages } : {}), ms: Math.round(performance.now() - started) };
      if ((await staleness()).stale) {
        options.logger.warn(found, 'planner statistics of operations lag, and the analyze left them so: the table was locked by a vacuum, or this role does not own it');
        return 0;
      }
      options.logger.info(found, 'planner statistics of operations lagged; analyzed');
      return 1;
    },
  };
}
