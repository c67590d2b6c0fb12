import type { EventEmitter } from 'node:events';

/**
 * Closes a BullMQ queue or worker without crashing the process. Closed while its connection is
 * still being set up (a process stopped right after it started), BullMQ (5.81) disconnects, removes
 * every listener of its connection, and only then sees its set-up fail, which it reports as an
 * 'error' event nobody listens to any more: an uncaught exception. A listener put back once the
 * close is done takes that late report.
 */
export async function closeQuietly(target: { close(): Promise<void> }): Promise<void> {
  const internal = target as unknown as { connection?: EventEmitter; blockingConnection?: EventEmitter };
  try {
    await target.close();
  } finally {
    for (const connection of [internal.connection, internal.blockingConnection]) connection?.on('error', () => {});
  }
}
