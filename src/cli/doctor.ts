import pg from 'pg';
import { POOL_DEFAULTS, type Role } from '../service.js';
import { findCleanupHolders, type CleanupHolder } from '../store/cleanupHolders.js';

export interface Deployment {
  api: number;
  worker: number;
  intake: number;
  /** Processes each of those runs with `--cluster`. Default 1. */
  cluster: number;
  /** `DB_POOL_MAX`, when it overrides the role defaults. */
  poolMax: number | undefined;
  /** Whether the deployment dispatches through Redis (`REDIS_URL`); without it workers hold a listening session. */
  queue: boolean;
  /** Transactions older than this, in seconds, that hold back the cleanup of opsd's tables are listed. Default 60. */
  maxTransactionAge?: number;
}

/**
 * Connections one process of a role opens at most: its pool, plus the leader-election session
 * (api and worker), plus the liveness session (worker), plus, without Redis, the session on which
 * a worker listens for accepted operations.
 */
export function connectionsPerProcess(role: Exclude<Role, 'start'>, poolMax: number | undefined, queue: boolean): number {
  const sessions = role === 'intake' ? 0 : role === 'worker' ? (queue ? 2 : 3) : 1;
  return (poolMax ?? POOL_DEFAULTS[role]) + sessions;
}

/**
 * Prints the connections a deployment would open against the server's max_connections, and the
 * transactions that make its scans walk old row versions; returns the exit code: 1 when the
 * deployment would run out of connections, 0 otherwise.
 */
export async function runDoctor(databaseUrl: string, deployment: Deployment, print: (line: string) => void): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'opsd-doctor' });
  await client.connect();
  let max: number;
  let reserved: number;
  let inUse: number;
  let idleTimeoutMs: number;
  let cleanup: { holders: CleanupHolder[]; complete: boolean };
  const maxAge = deployment.maxTransactionAge ?? 60;
  try {
    const setting = async (name: string) => Number((await client.query<{ setting: string }>('SELECT setting FROM pg_settings WHERE name = $1', [name])).rows[0]?.setting ?? 0);
    max = await setting('max_connections');
    reserved = (await setting('superuser_reserved_connections')) + (await setting('reserved_connections'));
    inUse = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = $1', ['client backend'])).rows[0]?.n ?? 0);
    idleTimeoutMs = await setting('idle_in_transaction_session_timeout');
    cleanup = await findCleanupHolders({ query: async (sql, params) => ({ rows: (await client.query(sql, params as unknown[])).rows }) }, maxAge);
  } finally {
    await client.end();
  }

  const rows = (['api', 'worker', 'intake'] as const).map((role) => {
    const processes = deployment[role] * deployment.cluster;
    const each = connectionsPerProcess(role, deployment.poolMax, deployment.queue);
    return { role, processes, each, total: processes * each };
  });
  const total = rows.reduce((sum, row) => sum + row.total, 0);
  const available = max - reserved;

  print('| role | processes | connections each | total |');
  print('| --- | --- | --- | --- |');
  for (const row of rows) print(`| ${row.role} | ${row.processes} | ${row.each} | ${row.total} |`);
  print(`| all | ${rows.reduce((s, r) => s + r.processes, 0)} | | ${total} |`);
  print('');
  print(`server: max_connections ${max}, reserved ${reserved}, available to opsd ${available}, in use now ${inUse}`);
  const code = printConnectionVerdict(total, available, inUse, print);
  printCleanupHolders(cleanup, maxAge, idleTimeoutMs, print);
  return code;
}

/** 1 when the deployment would run out of connections, 0 otherwise. */
function printConnectionVerdict(total: number, available: number, inUse: number, print: (line: string) => void): number {
  if (total > available) {
    print(`WARNING: this deployment would open ${total} connections, ${total - available} more than the server allows. Lower DB_POOL_MAX, run fewer processes, or put a pooler (PgBouncer) in front.`);
    return 1;
  }
  if (total + inUse > available) {
    print(`WARNING: ${total} connections fit the server, but not beside the ${inUse} already in use.`);
    return 1;
  }
  const share = Math.round((total / available) * 100);
  print(share > 80 ? `WARNING: this deployment would use ${share}% of the available connections; little room is left for migrations, operators and restarts.` : `OK: this deployment would use ${share}% of the available connections.`);
  return 0;
}

/**
 * Long transactions do not stop a deployment, but they slow every claim until they end: listed,
 * with what to do, not counted in the exit code.
 */
function printCleanupHolders(cleanup: { holders: CleanupHolder[]; complete: boolean }, maxAge: number, idleTimeoutMs: number, print: (line: string) => void): void {
  print('');
  const { holders, complete } = cleanup;
  if (holders.length === 0) {
    print(`OK: no transaction older than ${maxAge} s holds back the cleanup of opsd's tables.`);
  } else {
    print(`WARNING: ${holders.length} transaction${holders.length === 1 ? '' : 's'} older than ${maxAge} s hold${holders.length === 1 ? 's' : ''} back the cleanup of opsd's tables: until ${holders.length === 1 ? 'it ends' : 'they end'}, claims and head checks walk every old row version again (docs/production.md, "Long transactions on the same server").`);
    for (const h of holders) {
      const where = h.wrote ? `database ${h.database ?? '-'}, has written` : `database ${h.database ?? '-'}`;
      print(`  pid ${h.pid}, ${where}, application ${JSON.stringify(h.application)}, ${h.state ?? 'state unknown'}, ${Math.round(h.seconds)} s`);
    }
  }
  if (!complete) print("NOTE: this role sees only its own sessions' transactions; a superuser or a member of pg_read_all_stats sees every role's.");
  if (idleTimeoutMs === 0) print('NOTE: idle_in_transaction_session_timeout is off: a session left idle in a transaction holds back the cleanup until it is closed.');
}
