import { withTimeout } from '../lib/withTimeout.js';
import type { Db } from './db.js';

const READY_TIMEOUT_MS = 2000;

/** Whether the store answers a trivial query in time; the reason when it does not. */
export async function storeReadiness(db: Db): Promise<{ ready: true } | { ready: false; reason: string }> {
  try {
    await withTimeout(db.query('SELECT 1'), READY_TIMEOUT_MS, () => new Error(`no answer within ${READY_TIMEOUT_MS} ms`));
    return { ready: true };
  } catch (error) {
    return { ready: false, reason: `store not ready: ${(error as Error).message}` };
  }
}
