import type { Db } from './db.js';

const READY_TIMEOUT_MS = 2000;

/** Whether the store answers a trivial query in time; the reason when it does not. */
export async function storeReadiness(db: Db): Promise<{ ready: true } | { ready: false; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
  });
  try {
    await Promise.race([db.query('SELECT 1'), timeout]);
    return { ready: true };
  } catch (error) {
    return { ready: false, reason: `store not ready: ${(error as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}
