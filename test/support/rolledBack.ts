import type { Queryable } from '../../src/store/db.js';

/** Runs `fn` inside a transaction on `session` (one connection) and rolls it back after, whatever `fn` wrote or threw. */
export async function rolledBack<T>(session: Queryable, fn: () => Promise<T>): Promise<T> {
  await session.query('BEGIN');
  try {
    return await fn();
  } finally {
    await session.query('ROLLBACK');
  }
}
