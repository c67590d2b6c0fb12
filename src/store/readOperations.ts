import type { OperationStatus } from '../domain/operation.js';
import type { Queryable } from './db.js';
import { rowToEvent, rowToOperation, type EventRow, type OperationRow, type StoredEvent, type StoredOperation } from './operationRow.js';

export async function getOperation(db: Queryable, id: string): Promise<StoredOperation | null> {
  const { rows } = await db.query<OperationRow>('SELECT * FROM operations WHERE id = $1', [id]);
  return rows[0] ? rowToOperation(rows[0]) : null;
}

/** Filters for listing; every one is optional. */
export interface OperationFilter {
  externalId?: string | undefined;
  state?: OperationStatus | undefined;
  type?: string | undefined;
  /** Only operations accepted before this position (keyset pagination, newest first). */
  beforeSeq?: number | undefined;
  limit: number;
}

/** Newest first, by acceptance order. Returns one page and whether more follow. */
export async function listOperations(
  db: Queryable,
  filter: OperationFilter,
): Promise<{ operations: StoredOperation[]; hasMore: boolean }> {
  const { rows } = await db.query<OperationRow>(
    `SELECT * FROM operations
     WHERE ($1::text IS NULL OR external_id = $1)
       AND ($2::text IS NULL OR state = $2)
       AND ($3::text IS NULL OR type = $3)
       AND ($4::bigint IS NULL OR seq < $4)
     ORDER BY seq DESC
     LIMIT $5`,
    [filter.externalId ?? null, filter.state ?? null, filter.type ?? null, filter.beforeSeq ?? null, filter.limit + 1],
  );
  const operations = rows.slice(0, filter.limit).map(rowToOperation);
  return { operations, hasMore: rows.length > filter.limit };
}

/** The whole history of one operation, in sequence order. */
export async function listEvents(db: Queryable, operationId: string): Promise<StoredEvent[]> {
  const { rows } = await db.query<EventRow>(
    'SELECT * FROM operation_events WHERE operation_id = $1 ORDER BY seq',
    [operationId],
  );
  return rows.map(rowToEvent);
}
