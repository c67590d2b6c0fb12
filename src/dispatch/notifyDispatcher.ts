import type { Db } from '../store/db.js';
import type { DispatchTarget } from '../store/findClaimableHeads.js';
import { alwaysHealthy, createInProcessDispatcher, type Dispatcher } from './dispatcher.js';

/** The PostgreSQL channel on which processes without a queue connection announce accepted operations. */
export const DISPATCH_CHANNEL = 'opsd_dispatch';

/** PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more. */
const MAX_NOTICE_BYTES = 7900;

type Notice = [id: string, type: string, version: number, runAt: string];

/**
 * Dispatch by NOTIFY, for the intake: it hands accepted operations to the leader, which queues them
 * in BullMQ, so the intake loads neither BullMQ nor a Redis client. A notice nobody hears (no
 * leader at that moment) only delays the operation: the leader's reconciler dispatches it later.
 */
export function createNotifyDispatcher(db: Db): Dispatcher {
  return {
    kind: 'notify',
    notices: { channel: DISPATCH_CHANNEL, rest: createInProcessDispatcher(null) },
    async dispatch(operations) {
      if (operations.length === 0) return;
      await db.query('SELECT pg_notify($1, notice) FROM unnest($2::text[]) AS notice', [DISPATCH_CHANNEL, encodeDispatchNotices(operations)]);
    },
    health: alwaysHealthy,
    async close() {},
  };
}

/** The targets as JSON notices, each under PostgreSQL's payload limit. */
export function encodeDispatchNotices(targets: readonly DispatchTarget[]): string[] {
  const notices: string[] = [];
  let current: string[] = [];
  let size = 2;
  for (const target of targets) {
    const entry = JSON.stringify([target.id, target.type, target.version, target.runAt] satisfies Notice);
    const bytes = Buffer.byteLength(entry);
    if (current.length > 0 && size + bytes + 1 > MAX_NOTICE_BYTES) {
      notices.push(`[${current.join(',')}]`);
      current = [];
      size = 2;
    }
    current.push(entry);
    size += bytes + 1;
  }
  if (current.length > 0) notices.push(`[${current.join(',')}]`);
  return notices;
}

/** The targets of one notice; entries that are not well formed are skipped (anyone may NOTIFY). */
export function decodeDispatchNotice(payload: string): DispatchTarget[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.flatMap((entry: unknown) => {
    if (!Array.isArray(entry)) return [];
    const [id, type, version, runAt] = entry as unknown[];
    if (typeof id !== 'string' || typeof type !== 'string' || typeof version !== 'number' || typeof runAt !== 'string') return [];
    return [{ id, type, version, runAt }];
  });
}
