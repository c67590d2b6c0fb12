import type { Duty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { pruneProtectionState } from '../store/typeCounts.js';

/** How long outcome counts and per-key starts are kept. */
const KEEP_MS = 60 * 60_000;

/** The leader's duty of forgetting protection state nothing reads any more: counts older than an hour, per-key starts of idle keys, states of idle destinations. */
export function createProtectionCleaner(options: { db: Db; now?: () => Date }): Duty {
  const now = options.now ?? (() => new Date());
  return {
    name: 'protection cleaner',
    runOnce: () => pruneProtectionState(options.db, new Date(now().getTime() - KEEP_MS)),
  };
}
