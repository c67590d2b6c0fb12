import type { Logger } from 'pino';
import type { Duty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { findClaimableHeads } from '../store/findClaimableHeads.js';
import type { Dispatcher } from './dispatcher.js';

/**
 * Dispatches again every operation that could run but that nobody touched for `staleMs`: a crash
 * between commit and enqueue, a flushed or restarted Redis, a wake-up that lost a race. Job ids
 * are deterministic, so an operation whose job is still queued is not queued twice.
 */
export function createReconciler(options: {
  db: Db;
  dispatcher: Dispatcher;
  logger: Logger;
  staleMs?: number;
  batchSize?: number;
  now?: () => Date;
}): Duty {
  const staleMs = options.staleMs ?? 5000;
  const now = options.now ?? (() => new Date());
  return {
    name: 'reconciler',
    async runOnce() {
      const forgotten = await findClaimableHeads(options.db, {
        unchangedSince: new Date(now().getTime() - staleMs),
        limit: options.batchSize ?? 1000,
      });
      if (forgotten.length === 0) return 0;
      await options.dispatcher.dispatch(forgotten);
      options.logger.info({ count: forgotten.length }, 'reconciler re-dispatched operations nobody picked up');
      return forgotten.length;
    },
  };
}
