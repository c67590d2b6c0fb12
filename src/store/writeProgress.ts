import type { Json } from '../domain/operation.js';
import { prepared, type Db } from './db.js';

/** One attempt's latest report, addressed by the lease it was given. */
export interface ProgressReport {
  operationId: string;
  fencingToken: number;
  value: Json;
  /** When the handler reported it (ISO-8601). */
  at: string;
}

/**
 * Writes the latest report of each attempt, in one statement, to the operations that attempt still
 * holds: a report from an attempt whose lease was rescued, or that has ended, changes nothing.
 * Returns the ids written. Like a lease renewal, it writes no event.
 */
export async function writeProgress(db: Db, reports: readonly ProgressReport[]): Promise<Set<string>> {
  if (reports.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>(WRITE_PROGRESS, [
    reports.map((r) => r.operationId),
    reports.map((r) => r.fencingToken),
    reports.map((r) => JSON.stringify(r.value)),
    reports.map((r) => r.at),
  ]);
  return new Set(rows.map((row) => row.id));
}

const WRITE_PROGRESS = prepared(
  `UPDATE operations AS o
     SET progress = jsonb_build_object('value', x.value::jsonb, 'at', x.at, 'attempt', o.attempts)
     FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS x(id, fencing_token, value, at)
     WHERE o.id = x.id AND o.fencing_token = x.fencing_token AND o.state = 'PROCESSING'
     RETURNING o.id`,
);
