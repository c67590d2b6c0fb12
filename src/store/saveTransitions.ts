import type { OperationEvent } from '../domain/events.js';
import { evolve } from '../domain/evolve.js';
import type { OperationState } from '../domain/operation.js';
import { prepared, type Queryable } from './db.js';
import { ENDED_STATES_SQL, HEAD_ON_RETURN, markHeadsOnKeys } from './headMarks.js';
import { eventToRecord } from './operationRow.js';
import { pendingFoundByKey } from './pendingByKey.js';

/** One decided change to an existing operation: the state it was decided on and the events it produced. */
export interface Transition<S extends OperationState = OperationState> {
  before: S;
  events: OperationEvent[];
}

const folded = new WeakMap<Transition, OperationState>();

/**
 * The state after a transition: its events folded onto the state it was decided on. Folded once
 * per transition (a finish needs it for its answer and for the row it writes).
 */
export function stateAfter<S extends OperationState>(t: Transition<S>): S {
  let after = folded.get(t);
  if (!after) {
    // evolve copies every field of the state it is given, the claim's extra ones too.
    after = t.events.length === 0 ? { ...t.before } : t.events.reduce<OperationState>(evolve, t.before);
    folded.set(t, after);
  }
  return after as S;
}

/**
 * Which transitions a write may leave out:
 * - `all-or-error`: none; a row whose version moved fails the whole write (the caller holds the row locks).
 * - `current`: those whose row is no longer at the version they were decided on (decided without a lock).
 */
export type WriteGuard = 'all-or-error' | 'current';

/**
 * The operation waiting next behind the row on its key: the entry after the row in the active-key
 * index, `(ordering_key, seq)`, if it is on the row's key and PENDING. Asked as `ordering_key = k AND
 * seq > s ORDER BY seq`, the planner could walk the seq index from the row to the end of the table
 * when the statistics expected many rows per key (18,800 pages for one look-up, test/headCheck); no
 * other index has this order. The entry comes from the index alone, and its row is read only if it
 * is on the key: the next key's row, fetched each time, cost 8 µs per operation on distinct keys.
 */
export const NEXT_ON_KEY = `(SELECT to_jsonb(n) FROM (
      SELECT p.ordering_key, p.seq FROM operations p
      WHERE (p.ordering_key, p.seq) > (o.ordering_key, o.seq) AND p.state IN ('PENDING', 'PROCESSING')
      ORDER BY p.ordering_key, p.seq LIMIT 1) following
    JOIN operations n ON n.seq = following.seq
    WHERE following.ordering_key = o.ordering_key AND ${pendingFoundByKey('n')}) AS next`;

/** Twelve arrays of projection columns, from parameter `$first` on, as the table `x`. */
export function projectionInput(first: number): string {
  const p = (i: number) => `$${first + i}`;
  return `SELECT * FROM unnest(${p(0)}::uuid[], ${p(1)}::text[], ${p(2)}::int[], ${p(3)}::timestamptz[], ${p(4)}::bigint[], ${p(5)}::text[],
                              ${p(6)}::timestamptz[], ${p(7)}::text[], ${p(8)}::text[], ${p(9)}::int[], ${p(10)}::timestamptz[], ${p(11)}::int[])
           AS x(id, state, attempts, run_at, fencing_token, lease_owner, lease_expires_at, result, last_error, version,
                updated_at, expected_version)`;
}

/**
 * Seven event columns, from parameter `$first` on, as the table `e`: arrays, but the data as one JSON
 * array, not a text array whose every quote the driver escapes and the server unescapes.
 */
export function eventInput(first: number): string {
  const p = (i: number) => `$${first + i}`;
  return `ROWS FROM (unnest(${p(0)}::uuid[]), unnest(${p(1)}::int[]), unnest(${p(2)}::text[]), jsonb_array_elements(${p(3)}::jsonb),
                     unnest(${p(4)}::text[]), unnest(${p(5)}::text[]), unnest(${p(6)}::timestamptz[]))
           AS e(operation_id, seq, type, data, external_id, payload_hash, occurred_at)`;
}

/** The SET list that writes a projection row from `x`. */
export const SET_PROJECTION = `state = x.state, attempts = x.attempts, run_at = x.run_at, fencing_token = x.fencing_token,
           lease_owner = x.lease_owner, lease_expires_at = x.lease_expires_at, result = x.result::jsonb,
           last_error = x.last_error::jsonb, version = x.version, updated_at = x.updated_at, ${HEAD_ON_RETURN}`;

/**
 * The write; both guards share it and differ in what they make of rows it left out. Where an
 * operation ends, the next on its key becomes the head: looked for from the start of the key, or,
 * with `endedWereHeads`, past the ended operation.
 */
function writeStatement(endedWereHeads: boolean) {
  const ended = endedWereHeads
    ? `SELECT u.ordering_key, u.seq, u.updated_at FROM updated u WHERE u.state IN ${ENDED_STATES_SQL}`
    : `SELECT u.ordering_key, 0::bigint, max(u.updated_at) FROM updated u WHERE u.state IN ${ENDED_STATES_SQL} GROUP BY u.ordering_key`;
  return prepared(
    `WITH x AS (
       ${projectionInput(1)}
     ), updated AS (
       UPDATE operations AS o SET ${SET_PROJECTION}
       FROM x
       WHERE o.id = x.id AND o.version = x.expected_version
       RETURNING o.id, o.ordering_key, o.seq, o.state, o.updated_at
     ), marked_heads AS (
       ${markHeadsOnKeys(ended, 'SELECT id FROM x')}
     ), appended AS (
       INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
       SELECT e.* FROM ${eventInput(13)}
       WHERE e.operation_id IN (SELECT id FROM updated)
     )
     SELECT id FROM updated`,
  );
}

const WRITE = writeStatement(false);
const WRITE_ENDING_HEADS = writeStatement(true);

/**
 * Writes transitions in one statement: the projection rows, each guarded by the version it was
 * decided on, and the events of the rows written. Arrays through `unnest` rather than a JSON record
 * set (PostgreSQL parses one value per cell instead of a document), and one statement rather than
 * two, so a write of many rows is one round trip and, outside a transaction, one commit.
 * Returns the ids written. `endedWereHeads`: every transition is the end of an attempt, whose
 * operation was its key's head while it ran.
 */
export async function writeTransitions(
  tx: Queryable,
  transitions: readonly Transition[],
  guard: WriteGuard,
  options: { endedWereHeads?: boolean } = {},
): Promise<Set<string>> {
  const arrays = transitionArrays(transitions);
  if (!arrays) return new Set();
  const { rows } = await tx.query<{ id: string }>(options.endedWereHeads ? WRITE_ENDING_HEADS : WRITE, [...arrays.rows, ...arrays.events]);
  const written = new Set(rows.map((row) => row.id));
  if (guard === 'all-or-error' && written.size !== arrays.count) {
    throw new Error(`projection write lost a race: updated ${written.size} of ${arrays.count} rows`);
  }
  return written;
}

/**
 * The parameters of a write: twelve arrays of projection columns (the state after each
 * transition, and the version it was decided on) and seven event columns (see eventInput). Null when nothing changes.
 */
export function transitionArrays(transitions: readonly Transition[]): { rows: unknown[][]; events: unknown[]; count: number } | null {
  const changed = transitions.filter((t) => t.events.length > 0);
  if (changed.length === 0) return null;
  const rows = changed.map((t) => ({ t, state: stateAfter(t) }));
  const events = changed.flatMap((t) => t.events.map((event, i) => eventToRecord(t.before.id, t.before.version + i + 1, event)));
  return {
    count: rows.length,
    rows: [
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
    ],
    events: [
      events.map((e) => e.operation_id),
      events.map((e) => e.seq),
      events.map((e) => e.type),
      JSON.stringify(events.map((e) => e.data)),
      events.map((e) => e.external_id),
      events.map((e) => e.payload_hash),
      events.map((e) => e.occurred_at),
    ],
  };
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
  return transitions.map(stateAfter);
}
