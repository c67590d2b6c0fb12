import type { OperationEvent } from '../domain/events.js';
import { evolve } from '../domain/evolve.js';
import type { OperationState } from '../domain/operation.js';
import { prepared, type PreparedStatement, type Queryable } from './db.js';
import { IS_HEAD_OF_KEY } from './headOfKey.js';
import { eventToRecord } from './operationRow.js';

/** One decided change to an existing operation: the state it was decided on and the events it produced. */
export interface Transition<S extends OperationState = OperationState> {
  before: S;
  events: OperationEvent[];
}

/**
 * Which transitions a write may leave out:
 * - `all-or-error`: none; a row whose version moved fails the whole write (the caller holds the row locks).
 * - `current`: those whose row is no longer at the version they were decided on (decided without a lock).
 * - `heads`: also those no longer at the head of their key, seen from this statement's snapshot.
 */
export type WriteGuard = 'all-or-error' | 'current' | 'heads';

/** What the write says about a row it wrote. */
export interface WrittenRow {
  /** With the `heads` guard: whether another operation was waiting behind it on its key (false otherwise). */
  followed: boolean;
}

/** Whether something waits behind the row on its key: one probe of the active-key index. */
const FOLLOWED = `EXISTS (SELECT 1 FROM operations n WHERE n.ordering_key = o.ordering_key AND n.state = 'PENDING' AND n.seq > o.seq) AS followed`;

/** The write, one statement per guard. */
function writeStatement(guard: WriteGuard): PreparedStatement {
  return prepared(
    `WITH x AS (
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::bigint[], $6::text[],
                              $7::timestamptz[], $8::text[], $9::text[], $10::int[], $11::timestamptz[], $12::int[])
           AS x(id, state, attempts, run_at, fencing_token, lease_owner, lease_expires_at, result, last_error, version,
                updated_at, expected_version)
       ), updated AS (
         UPDATE operations AS o SET
           state = x.state, attempts = x.attempts, run_at = x.run_at, fencing_token = x.fencing_token,
           lease_owner = x.lease_owner, lease_expires_at = x.lease_expires_at, result = x.result::jsonb,
           last_error = x.last_error::jsonb, version = x.version, updated_at = x.updated_at
         FROM x
         WHERE o.id = x.id AND o.version = x.expected_version ${guard === 'heads' ? `AND ${IS_HEAD_OF_KEY}` : ''}
         RETURNING o.id, ${guard === 'heads' ? FOLLOWED : 'false AS followed'}
       ), appended AS (
         INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
         SELECT e.* FROM unnest($13::uuid[], $14::int[], $15::text[], $16::jsonb[], $17::text[], $18::text[], $19::timestamptz[])
           AS e(operation_id, seq, type, data, external_id, payload_hash, occurred_at)
         WHERE e.operation_id IN (SELECT id FROM updated)
       )
       SELECT id, followed FROM updated`,
  );
}

const WRITE_STATEMENTS: Record<WriteGuard, PreparedStatement> = {
  'all-or-error': writeStatement('all-or-error'),
  current: writeStatement('current'),
  heads: writeStatement('heads'),
};

/**
 * Writes transitions in one statement: the projection rows, each guarded by the version it was
 * decided on, and the events of the rows written. Arrays through `unnest` rather than a JSON record
 * set (PostgreSQL parses one value per cell instead of a document), and one statement rather than
 * two, so a write of many rows is one round trip and, outside a transaction, one commit.
 * Returns the ids written.
 */
export async function writeTransitions(tx: Queryable, transitions: readonly Transition[], guard: WriteGuard): Promise<Map<string, WrittenRow>> {
  const changed = transitions.filter((t) => t.events.length > 0);
  if (changed.length === 0) return new Map();
  const rows = changed.map((t) => ({ t, state: t.events.reduce<OperationState>(evolve, t.before) }));
  const events = changed.flatMap((t) => t.events.map((event, i) => eventToRecord(t.before.id, t.before.version + i + 1, event)));
  const { rows: written } = await tx.query<{ id: string; followed: boolean }>(
    WRITE_STATEMENTS[guard],
    [
      rows.map(({ state }) => state.id),
      rows.map(({ state }) => state.status),
      rows.map(({ state }) => state.attempts),
      rows.map(({ state }) => state.runAt),
      rows.map(({ state }) => state.fencingToken),
      rows.map(({ state }) => state.leaseOwner),
      rows.map(({ state }) => state.leaseExpiresAt),
      rows.map(({ state }) => jsonOrNull(state.result)),
      rows.map(({ state }) => jsonOrNull(state.lastError)),
      rows.map(({ state }) => state.version),
      rows.map(({ state }) => state.updatedAt),
      rows.map(({ t }) => t.before.version),
      events.map((e) => e.operation_id),
      events.map((e) => e.seq),
      events.map((e) => e.type),
      events.map((e) => JSON.stringify(e.data)),
      events.map((e) => e.external_id),
      events.map((e) => e.payload_hash),
      events.map((e) => e.occurred_at),
    ],
  );
  const byId = new Map(written.map((row) => [row.id, { followed: row.followed }]));
  if (guard === 'all-or-error' && byId.size !== rows.length) {
    throw new Error(`projection write lost a race: updated ${byId.size} of ${rows.length} rows`);
  }
  return byId;
}

/** A JSON value as text for a jsonb cell; SQL NULL for null, as the projection has always stored it. */
function jsonOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

/**
 * Writes a batch of transitions inside the caller's transaction, which holds their row locks: the
 * events, and the projection rows folded from them. Returns every state after its transition.
 */
export async function saveTransitions<S extends OperationState>(
  tx: Queryable,
  transitions: Transition<S>[],
): Promise<(S & OperationState)[]> {
  await writeTransitions(tx, transitions, 'all-or-error');
  return transitions.map((t) => ({ ...t.before, ...t.events.reduce<OperationState>(evolve, t.before) }));
}
