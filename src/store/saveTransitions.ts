import type { OperationEvent } from '../domain/events.js';
import { evolve } from '../domain/evolve.js';
import type { OperationState } from '../domain/operation.js';
import type { Queryable } from './db.js';
import { eventToRecord, operationToRecord } from './operationRow.js';

/** One decided change to an existing operation: the state it was decided on and the events it produced. */
export interface Transition<S extends OperationState = OperationState> {
  before: S;
  events: OperationEvent[];
}

const EVENT_COLUMNS = `operation_id uuid, seq integer, type text, data jsonb, external_id text, payload_hash text, occurred_at timestamptz`;

/** Appends events in one statement; `(operation_id, seq)` is unique, so two writers can never both append seq N. */
export async function appendEvents(tx: Queryable, records: Record<string, unknown>[]): Promise<void> {
  if (records.length === 0) return;
  await tx.query(
    `INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
     SELECT operation_id, seq, type, data, external_id, payload_hash, occurred_at
     FROM jsonb_to_recordset($1::jsonb) AS x(${EVENT_COLUMNS})`,
    [JSON.stringify(records)],
  );
}

/**
 * Writes a batch of transitions inside the caller's transaction: the events, and the projection
 * row folded from them. The row update is guarded by the version it was decided on, so a writer
 * that did not hold the row lock fails loudly instead of silently overwriting.
 */
export async function saveTransitions<S extends OperationState>(
  tx: Queryable,
  transitions: Transition<S>[],
): Promise<(S & OperationState)[]> {
  const changed = transitions.filter((t) => t.events.length > 0);
  const after = transitions.map((t) => ({ ...t.before, ...t.events.reduce<OperationState>(evolve, t.before) }));
  if (changed.length === 0) return after;

  const eventRecords = changed.flatMap((t) =>
    t.events.map((event, i) => eventToRecord(t.before.id, t.before.version + i + 1, event)),
  );
  const stateRecords = transitions
    .map((t, i) => ({ t, state: after[i] as OperationState }))
    .filter(({ t }) => t.events.length > 0)
    .map(({ t, state }) => ({ ...operationToRecord(state), expected_version: t.before.version }));

  await appendEvents(tx, eventRecords);
  const updated = await tx.query(
    `UPDATE operations AS o SET
       state = x.state, attempts = x.attempts, run_at = x.run_at, fencing_token = x.fencing_token,
       lease_owner = x.lease_owner, lease_expires_at = x.lease_expires_at, result = x.result,
       last_error = x.last_error, version = x.version, updated_at = x.updated_at
     FROM jsonb_to_recordset($1::jsonb) AS x(
       id uuid, state text, attempts integer, run_at timestamptz, fencing_token bigint, lease_owner text,
       lease_expires_at timestamptz, result jsonb, last_error jsonb, version integer, updated_at timestamptz,
       expected_version integer)
     WHERE o.id = x.id AND o.version = x.expected_version`,
    [JSON.stringify(stateRecords)],
  );
  if (updated.rowCount !== stateRecords.length) {
    throw new Error(`projection write lost a race: updated ${updated.rowCount} of ${stateRecords.length} rows`);
  }
  return after;
}
