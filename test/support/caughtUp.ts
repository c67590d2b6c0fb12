import type { Db } from '../../src/store/db.js';
import { acceptMany } from './acceptMany.js';
import { uniqueId } from './helpers.js';

/**
 * The statistics of a queue that has caught up: what `seedDone` accepts, every active operation then
 * completed, and the table vacuumed and analyzed with nothing PENDING. Autovacuum is turned off for
 * the table, so that no analyze refreshes them under the test (or the benchmark).
 */
export async function catchUpAfter(db: Db, seedDone: () => Promise<unknown>): Promise<void> {
  await db.query('ALTER TABLE operations SET (autovacuum_enabled = off)');
  await seedDone();
  await db.query(`UPDATE operations SET state = 'COMPLETED', head = NULL WHERE state IN ('PENDING', 'PROCESSING')`);
  await db.query('VACUUM ANALYZE operations');
}

/** {@link catchUpAfter} `done` operations accepted on keys of their own. */
export function catchUp(db: Db, done = 0): Promise<void> {
  return catchUpAfter(db, async () => {
    if (done > 0) await acceptMany(db, done, () => ({ type: uniqueId('done'), orderingKey: uniqueId('key') }));
  });
}
