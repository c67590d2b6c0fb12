import type { Logger } from 'pino';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import { afterOutcomes, type AttemptReport, type ResourceState } from '../protect/resourceRules.js';
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
 * into the shared state: the reports of one tick for one resource in one locked update. The worker
 * waits for that write before it records the attempt's outcome, so an operation a failure sends
 * back to PENDING is never claimed again before the failure counts for the breaker. Successes
 * are only reported for a probe: in every other phase they change nothing, and writing each would
 * put a row lock on every attempt's end.
 */
export function createResourceReports(options: { db: Db; log: Logger }) {
  const stats: ResourceReportStats = { throttled: 0, breakerOpened: 0, lost: 0 };
  interface Pending {
    resource: ResourceDefinition;
    reports: AttemptReport[];
    pauseUntil: number | null;
    throttled: number;
    waiters: ((state: ResourceState | null) => void)[];
  }
  const pending = new Map<string, Pending>();
  let scheduled = false;

  const flush = async () => {
    scheduled = false;
    const batch = [...pending.values()];
    pending.clear();
    await Promise.all(
      batch.map(async ({ resource, reports, pauseUntil, throttled, waiters }) => {
        let written: ResourceState | null = null;
        try {
          const after = await updateResourceState(options.db, resource.name, (state, now) => {
            const next = afterOutcomes(resource, state, { now, reports, pauseUntil, throttled });
            if (state.breaker.phase !== 'open' && next.breaker.phase === 'open') stats.breakerOpened += 1;
            return next;
          });
          if (after.breaker.phase === 'open' && reports.some((r) => r.verdict === 'failure')) {
            options.log.warn({ resource: resource.name, since: after.breaker.since }, 'circuit breaker open: no attempts on this resource until its cool-down ends');
          }
          written = after;
        } catch (error) {
          stats.lost += reports.length + (pauseUntil !== null ? 1 : 0);
          options.log.warn({ err: error, resource: resource.name }, 'a resource report could not be written');
        }
        for (const resolve of waiters) resolve(written);
      }),
    );
  };

  return {
    stats,
    /**
     * Queues the report for this tick's write; resolves with the state written (null if the store
     * refused it), so that a caller can hold the outcome until its failure is counted.
     */
    report(resource: ResourceDefinition, report: ResourceReport): Promise<ResourceState | null> {
      const entry = pending.get(resource.name) ?? { resource, reports: [], pauseUntil: null, throttled: 0, waiters: [] };
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
      return new Promise((resolve) => entry.waiters.push(resolve));
    },
  };
}
