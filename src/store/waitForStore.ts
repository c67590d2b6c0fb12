import type { Logger } from 'pino';
import type { Db } from './db.js';
import { migrate } from './migrate.js';
import { isStoreUnavailable } from './storeErrors.js';

/**
 * Migrates the store, waiting for it with backoff (250 ms doubling to 5 s) for as long as it is
 * unreachable: a process started during a store outage waits, not ready, instead of exiting and
 * turning a short outage into a restart loop. Anything else the store refuses is thrown.
 */
export async function waitForStore(db: Db, logger: Logger): Promise<void> {
  for (let attempt = 1, delay = 250; ; attempt += 1, delay = Math.min(delay * 2, 5000)) {
    try {
      await migrate(db);
      if (attempt > 1) logger.info({ attempts: attempt }, 'store reachable again');
      return;
    } catch (error) {
      if (!isStoreUnavailable(error)) throw error;
      if (attempt === 1) logger.warn({ err: error }, 'store unreachable: waiting for it, not ready meanwhile');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
