/** What the look needs of a connection: a pool, a transaction or a plain client. */
export interface Querying {
  query<R>(sql: string, params?: readonly unknown[]): Promise<{ rows: R[] }>;
}

/** A transaction that keeps old row versions of this database's tables visible to every scan. */
export interface CleanupHolder {
  pid: number;
  database: string | null;
  application: string;
  state: string | null;
  /** Whether it has written (holds a transaction id): only then does it count from another database. */
  wrote: boolean;
  seconds: number;
}

/**
 * Whether the session `a` of `pg_stat_activity` holds back the cleanup of this database's tables:
 * a transaction in this database (reads too), or one that has written in any database.
 */
export const HOLDS_BACK_CLEANUP = `a.pid <> pg_backend_pid()
       AND (a.backend_xid IS NOT NULL OR (a.datname = current_database() AND a.backend_xmin IS NOT NULL))`;

/**
 * Transactions older than `olderThanSeconds`, oldest first, that stop scans of this database from
 * marking the index entries of old row versions dead: any in this database (reads too), and any
 * that has written in another database of the server. While one runs, every claim and head check
 * walks those versions again, until a vacuum removes them (docs/production.md).
 *
 * PostgreSQL shows the transactions of other roles only to superusers and members of
 * `pg_read_all_stats`; `complete` says whether this session sees them all.
 */
export async function findCleanupHolders(db: Querying, olderThanSeconds: number): Promise<{ holders: CleanupHolder[]; complete: boolean }> {
  const { rows } = await db.query<{ pid: number; datname: string | null; application_name: string; state: string | null; wrote: boolean; seconds: number }>(
    `SELECT a.pid, a.datname, a.application_name, a.state, a.backend_xid IS NOT NULL AS wrote,
            extract(epoch FROM now() - a.xact_start)::float8 AS seconds
     FROM pg_stat_activity a
     WHERE ${HOLDS_BACK_CLEANUP} AND a.xact_start < now() - make_interval(secs => $1)
     ORDER BY a.xact_start`,
    [olderThanSeconds],
  );
  const { rows: seen } = await db.query<{ complete: boolean }>(
    `SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS complete FROM pg_roles WHERE rolname = current_user`,
  );
  return {
    holders: rows.map((row) => ({
      pid: row.pid,
      database: row.datname,
      application: row.application_name,
      state: row.state,
      wrote: row.wrote,
      seconds: row.seconds,
    })),
    complete: seen[0]?.complete ?? false,
  };
}
