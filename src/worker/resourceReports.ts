import type { Logger } from 'pino';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import { afterOutcomes, type AttemptReport } from '../protect/resourceRules.js';
import type { Db } from '../store/db.js';
import { updateResourceState } from '../store/resourceState.js';

/** What one attempt's end tells its resource. */
export interface ResourceReport {
  /** For the breaker: failures always, and the answer of a half-open probe. */
  attempt?: AttemptReport;
  /** The upstream asked to wait until then (ms since the epoch). */
  pauseUntil?: number;
}

/** Counters of what the reports did, since the worker started. */
export interface ResourceReportStats {
  /** Upstream answers that asked to wait. */
  throttled: number;
  /** Times the breaker of a resource was seen to open after a report. */
  breakerOpened: number;
  /** Reports the store could not take (lost: a breaker or a pause then learns of them later, or never). */
  lost: number;
}

/**
 * Carries what attempts tell their resources (failures, a probe's answer, an upstream's "wait")
 * into the shared state: the reports of one tick for one resource in one locked update. Successes
 * are only reported for a probe: in every other phase they change nothing, and writing each would
 * put a row lock on every attempt's end.
 */
export function createResourceReports(options: { db: Db; log: Logger; now: () => Date }) {
  const stats: ResourceReportStats = { throttled: 0, breakerOpened: 0, lost: 0 };
  const pending = new Map<string, { resource: ResourceDefinition; reports: AttemptReport[]; pauseUntil: number | null; throttled: number }>();
  let scheduled = false;

  const flush = async () => {
    scheduled = false;
    const batch = [...pending.values()];
    pending.clear();
    await Promise.all(
      batch.map(async ({ resource, reports, pauseUntil, throttled }) => {
        try {
          const after = await updateResourceState(options.db, resource.name, (state) => {
            const next = afterOutcomes(resource, state, { now: options.now().getTime(), reports, pauseUntil, throttled });
            if (state.breaker.phase !== 'open' && next.breaker.phase === 'open') stats.breakerOpened += 1;
            return next;
          });
          if (after.breaker.phase === 'open' && reports.some((r) => r.verdict === 'failure')) {
            options.log.warn({ resource: resource.name, since: after.breaker.since }, 'circuit breaker open: no attempts on this resource until its cool-down ends');
          }
        } catch (error) {
          stats.lost += reports.length + (pauseUntil !== null ? 1 : 0);
          options.log.warn({ err: error, resource: resource.name }, 'a resource report could not be written');
        }
      }),
    );
  };

  return {
    stats,
    report(resource: ResourceDefinition, report: ResourceReport): void {
      const entry = pending.get(resource.name) ?? { resource, reports: [], pauseUntil: null, throttled: 0 };
      if (report.attempt) entry.reports.push(report.attempt);
      if (report.pauseUntil !== undefined) {
        entry.pauseUntil = Math.max(entry.pauseUntil ?? 0, report.pauseUntil);
        entry.throttled += 1;
        stats.throttled += 1;
      }
      pending.set(resource.name, entry);
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => void flush());
      }
    },
  };
}
