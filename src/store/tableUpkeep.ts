import type { Db } from './db.js';

/** A table of the store and what its upkeep should do now. */
export interface TableUpkeep {
  table: string;
  vacuum: boolean;
  analyze: boolean;
}

/**
 * The tables of the store that PostgreSQL's autovacuum would vacuum or analyze now, by its default
 * thresholds: dead rows past 50 + 20% of the live ones; rows changed since the last analyze past
 * 50 + 10%. For the embedded store, which has no autovacuum: without it every transition leaves a
 * dead row version that claims and finishes walk past for as long as the store lives, and the
 * planner never learns the tables' sizes.
 */
export async function tablesDueForUpkeep(db: Db): Promise<TableUpkeep[]> {
  const { rows } = await db.query<{ relname: string; vacuum: boolean; analyze: boolean }>(
    `SELECT relname, due_vacuum AS vacuum, due_analyze AS analyze FROM (
       SELECT relname, n_dead_tup > 50 + 0.2 * n_live_tup AS due_vacuum, n_mod_since_analyze > 50 + 0.1 * n_live_tup AS due_analyze,
              n_dead_tup + n_mod_since_analyze AS changed
       FROM pg_stat_user_tables WHERE schemaname = current_schema()) t
     WHERE due_vacuum OR due_analyze
     ORDER BY changed DESC`,
  );
  return rows.map((row) => ({ table: row.relname, vacuum: row.vacuum, analyze: row.analyze }));
}

/**
 * Vacuums or analyzes one table, or both, as `upkeep` says; outside any transaction, as VACUUM must
 * be. The analyze samples 3,000 rows rather than 30,000: the embedded store is one session, and
 * every statement waits for it (an analyze of 60,000 events took 240-290 ms, one of operations 280).
 */
export async function keepUpTable(db: Db, upkeep: TableUpkeep): Promise<void> {
  const table = `"${upkeep.table.replaceAll('"', '""')}"`;
  const work = upkeep.vacuum ? `VACUUM ${upkeep.analyze ? '(ANALYZE) ' : ''}${table}` : upkeep.analyze ? `ANALYZE ${table}` : null;
  if (!work) return;
  // Three statements: several in one call would run as one transaction, where VACUUM cannot.
  await db.exec('SET default_statistics_target = 10');
  try {
    await db.exec(work);
  } finally {
    await db.exec('RESET default_statistics_target');
  }
}
