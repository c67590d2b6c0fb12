import type { Logger } from 'pino';
import type { Duty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { findClaimableHeads, type HeadCursor } from '../store/findClaimableHeads.js';
import type { Dispatcher } from './dispatcher.js';

/** A pass returns how many operations it woke again. */
export interface Reconciler extends Duty {
  runOnce(): Promise<number>;
}

/** The cause of every reconciler wake-up: one per operation version, however many passes see it. */
export const RECONCILE_CAUSE = 'reconcile';

/**
 * Dispatches again every due operation that could run but that nobody touched for `staleMs`: a
 * crash between commit and enqueue, a flushed or restarted Redis, a wake-up that lost a race, a
 * job that failed and pinned its id. It pages through every such head, however many operations
 * scheduled for later come before them. Its wake-ups carry a cause of their own (`reconcile`), so
 * a job kept under the plain id by an older deployment cannot swallow them, while passes over an
 * operation that still waits in the queue add nothing (failed and finished jobs are removed, so
 * their ids are free again).
 */
export function createReconciler(options: {
  db: Db;
  dispatcher: Dispatcher;
  logger: Logger;
  staleMs?: number;
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
      let after: HeadCursor | undefined;
      for (;;) {
        const forgotten = await findClaimableHeads(options.db, {
          unchangedSince: new Date(at.getTime() - staleMs),
          dueBy: at,
          limit: batchSize,
          ...(after ? { after } : {}),
        });
        if (forgotten.length === 0) break;
        await options.dispatcher.dispatch(forgotten, RECONCILE_CAUSE);
        total += forgotten.length;
        after = forgotten[forgotten.length - 1];
        if (forgotten.length < batchSize) break;
      }
      if (total > 0) options.logger.info({ count: total }, 'reconciler re-dispatched operations nobody picked up');
      return total;
    },
  };
}
