import type { Logger } from 'pino';
import type { CountingDuty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { findForgottenHeads } from '../store/findForgottenHeads.js';
import type { Dispatcher } from './dispatcher.js';

/** A pass returns how many operations it woke again. */
export type Reconciler = CountingDuty;

/** The cause of every reconciler wake-up: one per operation version, however many passes see it. */
export const RECONCILE_CAUSE = 'reconcile';

/**
 * Dispatches again every due operation that could run but that nobody touched for `staleMs`: a
 * crash between commit and enqueue, a flushed or restarted Redis, a wake-up that lost a race, a
 * job that failed and pinned its id. It pages through the active keys, each at its first active
 * operation: never through the operations queued behind a head, scheduled for later or held back by
 * a head that waits (100,000 behind 10 heads in backoff cost each pass 0.45 s when it paged through
 * the heads in claim order, every 2 s). Its wake-ups carry a cause of their own (`reconcile`), so
 * a job kept under the plain id by an older deployment cannot swallow them, while passes over an
 * operation that still waits in the queue add nothing (failed and finished jobs are removed, so
 * their ids are free again).
 */
export function createReconciler(options: {
  db: Db;
  dispatcher: Dispatcher;
  logger: Logger;
  staleMs?: number;
  /** Keys visited per page. */
  batchSize?: number;
  now?: () => Date;
}): Reconciler {
  const staleMs = options.staleMs ?? 5000;
  const batchSize = options.batchSize ?? 1000;
  const now = options.now ?? (() => new Date());
  return {
    name: 'reconciler',
    async runOnce() {
      const at = now();
      let total = 0;
      let afterKey: string | undefined;
      for (;;) {
        const page = await findForgottenHeads(options.db, { unchangedSince: new Date(at.getTime() - staleMs), dueBy: at, afterKey, keys: batchSize });
        if (page.heads.length > 0) await options.dispatcher.dispatch(page.heads, RECONCILE_CAUSE);
        total += page.heads.length;
        if (!page.more || page.lastKey === null) break;
        afterKey = page.lastKey;
      }
      if (total > 0) options.logger.info({ count: total }, 'reconciler re-dispatched operations nobody picked up');
      return total;
    },
  };
}
