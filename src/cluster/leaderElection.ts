import pg from 'pg';
import type { Logger } from 'pino';
import { LEADER_LOCK_KEY } from './lockKeys.js';
import { endClient, sessionSafetyOptions } from './sessionSafety.js';

export { LEADER_LOCK_KEY };

export interface Leadership {
  isLeader(): boolean;
  stop(): Promise<void>;
}

/**
 * Campaigns for leadership on a dedicated PostgreSQL session: `pg_try_advisory_lock` every
 * `intervalMs`. PostgreSQL releases the lock the moment the holder's session ends (process
 * killed, network gone), so another process takes over within one interval. A leader checks its
 * session on the same interval, each check bounded by `checkTimeoutMs`, and steps down when one
 * fails or hangs. The session runs with TCP keepalives on both ends and an idle-session timeout,
 * so a partitioned leader's lock is released by the server within seconds, not hours.
 */
export function campaignForLeadership(options: {
  databaseUrl: string;
  logger: Logger;
  intervalMs?: number;
  /** Longest wait for a check of the session, in ms. Default 3000. */
  checkTimeoutMs?: number;
  /** The server ends the session after this long without a statement, in s. Default 10. */
  idleSessionTimeoutS?: number;
  /** A channel the leader LISTENs to on its session, and what it does with each notification. */
  listen?: { channel: string; onNotice(payload: string): void };
  onElected(): void;
  onDeposed(): Promise<void> | void;
}): Leadership {
  const intervalMs = options.intervalMs ?? 1000;
  const checkTimeoutMs = options.checkTimeoutMs ?? 3000;
  const idleSessionTimeoutS = options.idleSessionTimeoutS ?? 10;
  let client: pg.Client | null = null;
  let leader = false;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let tick: Promise<void> = Promise.resolve();

  const dropSession = async () => {
    const old = client;
    client = null;
    if (old) await endClient(old);
  };

  const stepDown = async (reason: string) => {
    if (!leader) return;
    leader = false;
    options.logger.warn({ reason }, 'leadership lost');
    await options.onDeposed();
  };

  const campaign = async () => {
    try {
      if (!client) {
        const fresh = new pg.Client({
          connectionString: options.databaseUrl,
          application_name: 'opsd-leader',
          ...sessionSafetyOptions({ checkTimeoutMs, idleSessionTimeoutS }),
        });
        fresh.on('error', () => {});
        const { listen } = options;
        if (listen) {
          fresh.on('notification', (message) => {
            if (leader && message.channel === listen.channel && message.payload !== undefined) listen.onNotice(message.payload);
          });
        }
        await fresh.connect();
        client = fresh;
      }
      if (leader) {
        await client.query('SELECT 1');
        return;
      }
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [LEADER_LOCK_KEY]);
      if (rows[0]?.locked && !stopped) {
        if (options.listen) await client.query(`LISTEN ${quoteIdentifier(options.listen.channel)}`);
        leader = true;
        options.logger.info('elected leader: running the reconciler and lease rescuer');
        options.onElected();
      }
    } catch (error) {
      await stepDown(`leader session failed: ${(error as Error).message}`);
      await dropSession();
    }
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      tick = campaign().finally(schedule);
    }, intervalMs);
    timer.unref();
  };
  tick = campaign().finally(schedule);

  return {
    isLeader: () => leader,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await tick;
      await stepDown('stopping');
      await dropSession();
    },
  };
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
