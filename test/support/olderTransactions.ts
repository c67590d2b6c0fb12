import type { Queryable } from '../../src/store/db.js';

const POLL_MS = 50;

/**
 * Waits until every transaction that had written (held an id) anywhere on the server when this is
 * called has ended, and, in this database, every snapshot taken before it.
 *
 * A scan marks an index entry dead, so that later scans skip it, only if its row version is dead to
 * every transaction that could still see it: any in this database, and any that has written in
 * another database of the server (PostgreSQL rules the version out at once while one older than
 * its end runs; a read-only one elsewhere does not count). A test in another file that holds such a
 * transaction open keeps every entry alive, and a measurement of pages read counts each of them.
 * Tests that measure what a statement reads after others marked the entries call this first, then
 * run the statement that marks them once, then measure.
 */
export async function untilOlderTransactionsEnd(db: Queryable, timeoutMs = 120_000): Promise<void> {
  // An id of its own, committed at once: a transaction still running with an older one began before this call.
  const { rows } = await db.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
  const xid = rows[0]!.xid;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows: waiting } = await db.query<{ older: boolean }>(
      `SELECT pg_snapshot_xmin(pg_current_snapshot()) < $1::xid8
          OR EXISTS (SELECT 1 FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND age(backend_xmin) > age((($1::xid8)::text::bigint % 4294967296)::text::xid)) AS older`,
      [xid],
    );
    if (!waiting[0]!.older) return;
    if (Date.now() > deadline) {
      throw new Error(`a transaction older than ${xid} still runs on the server after ${timeoutMs} ms: pages read cannot be measured`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
