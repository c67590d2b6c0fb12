import type pg from 'pg';
import { raceTimeout } from '../lib/withTimeout.js';

/**
 * Settings for a long-lived session whose locks stand for "this process is alive" (the leader,
 * a worker's liveness): bounded statements and connects on the client, TCP keepalives on both
 * ends, and an idle-session timeout on the server. Together they make the server drop the session,
 * and with it the locks, within seconds of the process going quiet or the network going away
 * (Linux's default keepalive would take 2 h 11 min). `idle_session_timeout` needs PostgreSQL 14.
 */
export function sessionSafetyOptions(options: { checkTimeoutMs: number; idleSessionTimeoutS: number }): Partial<pg.ClientConfig> {
  return {
    keepAlive: true,
    keepAliveInitialDelayMillis: 5000,
    query_timeout: options.checkTimeoutMs,
    connectionTimeoutMillis: options.checkTimeoutMs,
    options: [
      `-c idle_session_timeout=${options.idleSessionTimeoutS}s`,
      '-c tcp_keepalives_idle=5',
      '-c tcp_keepalives_interval=2',
      '-c tcp_keepalives_count=3',
    ].join(' '),
  };
}

/** Ends a client, and destroys its socket if the server does not answer (a partition would hang `end()`). */
export async function endClient(client: pg.Client): Promise<void> {
  const ended = await raceTimeout(client.end().catch(() => {}), 1000);
  if (ended === 'timeout') (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
