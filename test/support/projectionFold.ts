import assert from 'node:assert/strict';
import type { OperationEvent } from '../../src/domain/events.js';
import { foldEvents } from '../../src/domain/evolve.js';
import type { Queryable } from '../../src/store/db.js';
import { rowToEvent, rowToOperation, type EventRow, type OperationRow } from '../../src/store/operationRow.js';

/**
 * Asserts that every row of `operations` equals the fold of its events, and returns the rows'
 * states, for the caller to check that its history covered what it meant to.
 */
export async function assertProjectionIsFold(db: Queryable): Promise<string[]> {
  const { rows: eventRows } = await db.query<EventRow>('SELECT * FROM operation_events ORDER BY operation_id, seq');
  const byOperation = new Map<string, OperationEvent[]>();
  for (const row of eventRows) {
    const stored = rowToEvent(row);
    byOperation.set(stored.operationId, [...(byOperation.get(stored.operationId) ?? []), stored.event]);
  }
  const { rows } = await db.query<OperationRow>('SELECT * FROM operations');
  for (const row of rows) {
    const { seq: _seq, ...projected } = rowToOperation(row);
    const folded = foldEvents(byOperation.get(row.id) ?? []);
    // Lease renewals are not events; compare the lease expiry only where no attempt is running.
    if (projected.status === 'PROCESSING' && folded) folded.leaseExpiresAt = projected.leaseExpiresAt;
    assert.deepEqual(projected, folded, `operation ${row.id}`);
  }
  return rows.map((row) => row.state);
}
