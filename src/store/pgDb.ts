import pg from 'pg';
import { withArrayLiterals } from './arrayLiteral.js';
import { OPSD_PG_TYPES, OPSD_PG_TYPES_ISO_TIMES } from './timestamptzParser.js';
import type { Db, PoolCounters, PreparedStatement, Queryable, QueryResult } from './db.js';
import { isStoreUnavailable } from './storeErrors.js';

/** Options for a PostgreSQL server connection. */
export interface PgDbOptions {
  connectionString: string;
  /** Pool size. Default 10. */
  max?: number;
  /** search_path for every connection (tests isolate themselves in a schema). */
  schema?: string;
  applicationName?: string;
  /** Longest wait for a connection (pool exhausted, server unreachable), in ms; then the query fails as unavailable. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * Server-side `statement_timeout` of every connection, in ms. Default 30000. A reply that has
   * not come a second after it would have fired never will (the network dropped it, the server is
   * frozen): the query then fails as unavailable and its session is closed, instead of holding a
   * pooled connection until TCP gives up, which takes hours.
   */
  statementTimeoutMs?: number;
}

/** How much later than the server's statement timeout the client stops waiting for a reply. */
const REPLY_GRACE_MS = 1000;

function wrap(client: pg.PoolClient): Queryable {
  return {
    async query<R>(sql: string | PreparedStatement, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const values = withArrayLiterals(params);
      const result =
        typeof sql === 'string'
          ? await client.query(sql, values)
          : await client.query({ name: sql.name, text: sql.text, values, ...(sql.isoTimes ? { types: OPSD_PG_TYPES_ISO_TIMES } : {}) });
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    },
    async exec(sql: string): Promise<void> {
      await client.query(sql);
    },
  };
}

export function createPgDb(options: PgDbOptions): Db {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'opsd',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    query_timeout: (options.statementTimeoutMs ?? 30_000) + REPLY_GRACE_MS,
    keepAlive: true,
    types: OPSD_PG_TYPES,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => {});
  // A session can end in the same read that completes its connect (a FATAL right behind
  // ReadyForQuery): the pool has then handed the client out, and the caller has not yet been
  // resumed to listen. Every client listens from its first moment; the work that holds it still
  // fails (the client is no longer queryable), and the pool drops it when it comes back.
  pool.on('connect', (client) => client.on('error', () => {}));
  const counters: PoolCounters = { acquired: 0, acquireSeconds: 0, waitedAcquires: 0, errors: 0 };

  async function withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const waitStart = performance.now();
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      counters.errors += 1;
      throw error;
    }
    const waited = (performance.now() - waitStart) / 1000;
    counters.acquired += 1;
    counters.acquireSeconds += waited;
    if (waited > 0.001) counters.waitedAcquires += 1;
    // The pool listens for errors only on idle clients; a checked-out client whose server goes away
    // would otherwise raise an unhandled 'error' and end the process. The query in flight fails too.
    let broken = false;
    const onError = () => {
      broken = true;
    };
    client.on('error', onError);
    try {
      return await fn(client);
    } catch (error) {
      counters.errors += 1;
      broken ||= isStoreUnavailable(error);
      throw error;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  const max = options.max ?? 10;
  return {
    kind: 'postgres',
    poolStats: () => ({ max, total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, ...counters }),
    // Through withClient like every other use, so that each statement's wait for a connection is
    // counted and a client is dropped only when its session is broken, not for any refused statement.
    query: (sql, params) => withClient((client) => wrap(client).query(sql, params)),
    exec: (sql) => withClient((client) => wrap(client).exec(sql)),
    transaction: (fn) =>
      withClient(async (client) => {
        await client.query('BEGIN');
        try {
          const value = await fn(wrap(client));
          await client.query('COMMIT');
          return value;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        }
      }),
    withSession: (fn) => withClient((client) => fn(wrap(client))),
    close: () => pool.end(),
  };
}

