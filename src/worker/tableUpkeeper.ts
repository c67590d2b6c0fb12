import type { Logger } from 'pino';
import type { CountingDuty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { keepUpTable, tablesDueForUpkeep } from '../store/tableUpkeep.js';

/**
 * The duty that does for the embedded store what autovacuum does for a PostgreSQL server: each
 * pass vacuums and analyzes the tables past autovacuum's default thresholds (see tablesDueForUpkeep).
 * A pass resolves to the number of tables it kept up.
 */
export function createTableUpkeeper(options: { db: Db; logger: Logger }): CountingDuty {
  return {
    name: 'table-upkeeper',
    async runOnce() {
      const due = await tablesDueForUpkeep(options.db);
      for (const upkeep of due) {
        const started = performance.now();
        await keepUpTable(options.db, upkeep);
        options.logger.debug({ ...upkeep, ms: Math.round(performance.now() - started) }, 'embedded store table kept up');
      }
      return due.length;
    },
  };
}
