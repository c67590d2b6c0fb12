import pg from 'pg';
import type { Logger } from 'pino';
import { endClient } from '../cluster/sessionSafety.js';
import type { Wakeable } from './dispatcher.js';
import { decodeDispatchNotice, DISPATCH_CHANNEL } from './notifyDispatcher.js';

/** How often the listening session is checked, in ms: a session that died silently hears nothing. */
const CHECK_INTERVAL_MS = 5000;
const CHECK_TIMEOUT_MS = 3000;
const RECONNECT_DELAY_MS = 1000;

/**
 * Wakes a worker when another process (api, intake, another worker's rescue) announces operations
 * on {@link DISPATCH_CHANNEL}, so that workers on PostgreSQL alone start work within milliseconds
 * instead of at their next poll. Notices are only wake-ups: one lost while the session was down is
 * covered by the wake-up every (re)connect gives, and by the worker's poll.
 */
export function listenForDispatch(options: { databaseUrl: string; worker: Wakeable; logger: Logger }): { close(): Promise<void> } {
  const { worker, logger } = options;
  let client: pg.Client | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let tick: Promise<void> = Promise.resolve();
  let warned = false;

  const connect = async () => {
    const fresh = new pg.Client({
      connectionString: options.databaseUrl,
      application_name: 'opsd-listener',
      keepAlive: true,
      keepAliveInitialDelayMillis: 5000,
      query_timeout: CHECK_TIMEOUT_MS,
      connectionTimeoutMillis: CHECK_TIMEOUT_MS,
    });
    fresh.on('error', () => {});
    fresh.on('notification', (message) => {
      if (message.channel !== DISPATCH_CHANNEL || message.payload === undefined) return;
      for (const target of decodeDispatchNotice(message.payload)) worker.notifyAt(new Date(target.runAt));
    });
    await fresh.connect();
    await fresh.query(`LISTEN ${DISPATCH_CHANNEL}`);
    client = fresh;
    if (warned) logger.info('listening for accepted operations again');
    warned = false;
    // Whatever was announced while nobody listened is claimable now.
    worker.notify();
  };

  const check = async () => {
    try {
      if (client) await client.query('SELECT 1');
      else await connect();
    } catch (error) {
      if (!warned) logger.warn({ err: error }, 'listening for accepted operations failed; polling until the session is back');
      warned = true;
      const old = client;
      client = null;
      if (old) await endClient(old);
    }
  };

  const schedule = (delay: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      tick = check().finally(() => schedule(client ? CHECK_INTERVAL_MS : RECONNECT_DELAY_MS));
    }, delay);
    timer.unref();
  };
  tick = check().finally(() => schedule(client ? CHECK_INTERVAL_MS : RECONNECT_DELAY_MS));

  return {
    async close() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await tick;
      const old = client;
      client = null;
      if (old) await endClient(old);
    },
  };
}
