import type { OperationStatus } from '../domain/operation.js';
import type { Queryable } from './db.js';

/** Operations by type and state: a scan of the whole table, so callers cache it. */
export async function countByTypeAndState(db: Queryable): Promise<Map<string, Partial<Record<OperationStatus, number>>>> {
  const { rows } = await db.query<{ type: string; state: OperationStatus; n: number }>(
    'SELECT type, state, count(*)::int AS n FROM operations GROUP BY type, state',
  );
  const byType = new Map<string, Partial<Record<OperationStatus, number>>>();
  for (const row of rows) byType.set(row.type, { ...(byType.get(row.type) ?? {}), [row.state]: row.n });
  return byType;
}

/** When the oldest PENDING operation of each type was accepted. */
export async function oldestPendingByType(db: Queryable): Promise<Map<string, Date>> {
  const { rows } = await db.query<{ type: string; oldest: Date }>(
    `SELECT type, min(created_at) AS oldest FROM operations WHERE state = 'PENDING' GROUP BY type`,
  );
  return new Map(rows.map((row) => [row.type, row.oldest]));
}
