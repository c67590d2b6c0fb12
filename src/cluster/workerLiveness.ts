import pg from 'pg';
import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { LIVENESS_LOCK_NAMESPACE } from './lockKeys.js';
import { endClient, sessionSafetyOptions } from './sessionSafety.js';

export { LIVENESS_LOCK_NAMESPACE };

/** Holds a worker's liveness lock, reconnecting with backoff whenever its session is lost. */
export function holdWorkerLiveness(options: { databaseUrl: string; workerId: string; logger: Logger; intervalMs?: number }) {
  const intervalMs = options.intervalMs ?? 2000;
  let client: pg.Client | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let tick: Promise<void> = Promise.resolve();
  let failures = 0;

  const check = async () => {
    try {
      if (!client) {
        const fresh = new pg.Client({
          connectionString: options.databaseUrl,
          application_name: 'opsd-worker-liveness',
          ...sessionSafetyOptions({ checkTimeoutMs: 3000, idleSessionTimeoutS: 10 }),
        });
        // A terminated session is noticed at once, not at the next check: every moment without the
        // lock counts towards the leader's rescue of this worker's attempts.
        fresh.on('error', () => reconnectNow(fresh));
        fresh.on('end', () => reconnectNow(fresh));
        await fresh.connect();
        client = fresh;
        const { rows } = await fresh.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [
          LIVENESS_LOCK_NAMESPACE,
          options.workerId,
        ]);
        // Another live worker whose id hashes alike holds it: this one's leases are rescued at expiry only.
        if (!rows[0]?.locked) options.logger.warn('liveness lock shared with another worker; its leases are rescued when they expire');
        if (failures > 0) options.logger.info('liveness session restored');
      } else {
        await client.query('SELECT 1');
      }
      failures = 0;
    } catch (error) {
      failures += 1;
      if (failures === 1) options.logger.error({ err: error }, 'liveness session lost: the leader may rescue this worker\'s attempts; reconnecting');
      const old = client;
      client = null;
      if (old) await endClient(old);
    }
  };

  const reconnectNow = (lost: pg.Client) => {
    if (stopped || client !== lost) return;
    client = null;
    failures += 1;
    options.logger.error('liveness session lost: the leader may rescue this worker\'s attempts; reconnecting');
    void endClient(lost);
    if (timer) clearTimeout(timer);
    void tick.then(() => {
      if (stopped) return;
      if (timer) clearTimeout(timer);
      tick = check().finally(schedule);
    });
  };

  const schedule = () => {
    if (stopped) return;
    // Reconnect quickly: while the session is gone the leader counts down to a rescue.
    timer = setTimeout(() => {
      tick = check().finally(schedule);
    }, failures > 0 ? Math.min(intervalMs, 250) : intervalMs);
    timer.unref();
  };
  tick = check().finally(schedule);

  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await tick;
      if (client) await endClient(client);
      client = null;
    },
  };
}

/** After the server (re)starts, every worker needs a moment to reconnect and take its lock again. */
export const RECONNECT_WINDOW_MS = 10_000;

/**
 * Lease holders of PROCESSING operations that hold no liveness lock (their process is gone),
 * as seen by the server right now. Within {@link RECONNECT_WINDOW_MS} of the server starting,
 * none: a restart drops every session, and live workers have not all reconnected yet.
 */
export async function findOwnersWithoutLiveness(db: Db): Promise<string[]> {
  const { rows: uptime } = await db.query<{ ms: number }>(`SELECT (extract(epoch FROM now() - pg_postmaster_start_time()) * 1000)::float8 AS ms`);
  if ((uptime[0]?.ms ?? 0) < RECONNECT_WINDOW_MS) return [];
  const { rows } = await db.query<{ lease_owner: string }>(
    `SELECT DISTINCT o.lease_owner FROM operations o
     WHERE o.state = 'PROCESSING' AND o.lease_owner IS NOT NULL
       AND NOT EXISTS (
         SELECT 1 FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = $1::int::oid
           AND l.objid = (hashtext(o.lease_owner)::bigint & 4294967295)::oid
           AND l.objsubid = 2)`,
    [LIVENESS_LOCK_NAMESPACE],
  );
  return rows.map((row) => row.lease_owner);
}
