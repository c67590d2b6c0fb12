import { createHash } from 'node:crypto';

/** The result of one statement, the same shape on both drivers. */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/**
 * A statement each server connection parses and plans once and keeps under its name: for the
 * statements every operation goes through (accept, claim, finish, renew). Measured in the server's
 * statement log on a drain of 2,000 operations on 10 keys: a claim's candidate query took 1.6 ms
 * (parse, bind and execute) unnamed and 0.9 ms prepared; a finish or start write 1.6 ms and
 * 0.9-1.5 ms. The drain rate itself moved less than this machine's noise (945-1,032 ops/s
 * unnamed, 982-1,109 prepared, in runs back to back).
 */
export interface PreparedStatement {
  readonly name: string;
  readonly text: string;
  /**
   * Whether the server driver may hand its timestamptz columns back as ISO-8601 text (the form an
   * operation keeps its times in) instead of Dates; PGlite gives Dates either way.
   */
  readonly isoTimes?: boolean;
}

/** Names a statement after its text, so that two texts never share a name. */
export function prepared(text: string, options: { isoTimes?: boolean } = {}): PreparedStatement {
  return { name: `opsd_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text, ...(options.isoTimes ? { isoTimes: true } : {}) };
}

/** The SQL text of a statement, prepared or not. */
export function sqlText(sql: string | PreparedStatement): string {
  return typeof sql === 'string' ? sql : sql.text;
}

/** Anything that runs SQL: a pool, a transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string | PreparedStatement, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/**
 * The small interface every store module talks to: PGlite (embedded) or a PostgreSQL server.
 * Both speak the same SQL; modules never know which one they have.
 */
/** What a pool counted since it opened. */
export interface PoolCounters {
  /** Connections handed out, and the seconds callers waited for them in all. */
  acquired: number;
  acquireSeconds: number;
  /** Hand-outs that had to wait (over a millisecond). */
  waitedAcquires: number;
  /** Statements and connection attempts that failed. */
  errors: number;
}

/** A connection pool's state, for saturation checks and metrics. */
export interface PoolStats extends PoolCounters {
  max: number;
  total: number;
  idle: number;
  /** Callers waiting for a connection. */
  waiting: number;
}

export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** The pool's state now; null for the embedded store, which has one session and no pool. */
  poolStats(): PoolStats | null;
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs `fn` on one dedicated session (for session-level advisory locks). */
  withSession<T>(fn: (session: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
