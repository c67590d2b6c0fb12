import type { OperationStatus } from '../domain/operation.js';
import type { OperationProgress } from '../domain/progress.js';
import type { Queryable } from './db.js';
import { rowToEvent, rowToOperation, type EventRow, type OperationRow, type StoredEvent, type StoredOperation } from './operationRow.js';

/** An operation as a read shows it: its state, and the latest progress its handler reported (not part of the fold). */
export type OperationView = StoredOperation & { progress: OperationProgress | null };

type ViewRow = OperationRow & { progress: OperationProgress | null };

function rowToView(row: ViewRow): OperationView {
  return Object.assign(rowToOperation(row), { progress: row.progress ?? null });
}

export async function getOperation(db: Queryable, id: string): Promise<OperationView | null> {
  const { rows } = await db.query<ViewRow>('SELECT * FROM operations WHERE id = $1', [id]);
  return rows[0] ? rowToView(rows[0]) : null;
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
): Promise<{ operations: OperationView[]; hasMore: boolean }> {
  const { rows } = await db.query<ViewRow>(
    `SELECT * FROM operations
     WHERE ($1::text IS NULL OR external_id = $1)
       AND ($2::text IS NULL OR state = $2)
       AND ($3::text IS NULL OR type = $3)
       AND ($4::bigint IS NULL OR seq < $4)
     ORDER BY seq DESC
     LIMIT $5`,
    [filter.externalId ?? null, filter.state ?? null, filter.type ?? null, filter.beforeSeq ?? null, filter.limit + 1],
  );
  const operations = rows.slice(0, filter.limit).map(rowToView);
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
