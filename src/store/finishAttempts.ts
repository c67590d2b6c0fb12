import { decide } from '../domain/decide.js';
import { notBefore } from '../domain/eventTime.js';
import type { OperationCommand } from '../domain/commands.js';
import type { OperationState } from '../domain/operation.js';
import { applyCommands, type AddressedCommand, type CommandResult } from './applyCommands.js';
import { CLAIM_LOCK_NAMESPACE, startCommand, type ClaimedOperation, type ClaimOptions } from './claimOperations.js';
import { prepared, type Db } from './db.js';
import { isHeadOfKey } from './headOfKey.js';
import { ENDED_STATES_SQL, markHeadsOnKeys } from './headMarks.js';
import { jsonToOperation, type StoredOperation } from './operationRow.js';
import { eventInput, NEXT_ON_KEY, projectionInput, SET_PROJECTION, stateAfter, transitionArrays, writeTransitions, type Transition } from './saveTransitions.js';

/** An attempt's outcome, with the state the worker was given when it claimed the operation. */
export interface FinishedAttempt extends AddressedCommand {
  /** With `next` when the claim read the operation waiting behind it on its key. */
  claimed: StoredOperation & Partial<Pick<ClaimedOperation, 'next'>>;
}

/**
 * Starting the operation that follows an ended one on its key, in the finish's own statement.
 * `types`: the types the worker may start this way, those free of limits (a successor takes the
 * ended one's slot); the start of any other type must go through its limits, in a claim of its group;
 * `busyKeys`: keys on which the worker still runs a handler.
 */
export type SuccessorClaim = Omit<ClaimOptions, 'limit'>;

export interface FinishResult {
  /** Per attempt, in order. */
  results: CommandResult[];
  /** Operations started on the keys of ended ones, now leased to the caller. */
  successors: ClaimedOperation[];
}

const ENDED: ReadonlySet<OperationState['status']> = new Set(['COMPLETED', 'REJECTED', 'FAILED']);

/**
 * Records attempt outcomes. Each is decided on the state its worker claimed and written in one
 * statement (one round trip and one commit for the batch), guarded by the version it was decided
 * on: an outcome decides only on status, fencing token and attempts, which cannot change without a
 * new version, so a row still at that version is exactly the state a lock would have shown. Any
 * row that moved (its lease was rescued, for example) goes through {@link applyCommands}, which
 * locks it and decides again, refusing an outcome whose lease is lost.
 *
 * With `successors`, the operations that waited behind ended ones start in the same statement: a
 * few-key workload then takes one round trip and one commit per operation, and no scan.
 */
export async function finishAttempts(db: Db, attempts: readonly FinishedAttempt[], successors?: SuccessorClaim): Promise<FinishResult> {
  if (attempts.length === 0) return { results: [], successors: [] };
  const once = new Map<string, number>();
  for (const a of attempts) once.set(a.operationId, (once.get(a.operationId) ?? 0) + 1);
  const decided = attempts.map((a) => (once.get(a.operationId) === 1 && a.claimed.id === a.operationId ? decideOnClaimed(a) : null));
  const transitions = decided.filter((t): t is Transition<StoredOperation> => t !== null);
  const after = new Map(transitions.map((t) => [t.before.id, stateAfter(t)]));
  const starts = successors ? decideSuccessorStarts(attempts, after, successors) : [];

  let written: ReadonlySet<string>;
  let started: ClaimedOperation[] = [];
  if (starts.length > 0) {
    const outcome = await writeFinishesAndStarts(db, transitions, starts);
    written = outcome.finished;
    started = outcome.started;
  } else {
    written = await writeTransitions(db, transitions, 'current', { endedWereHeads: true });
  }

  const results: (CommandResult | null)[] = decided.map((t) => (t && written.has(t.before.id) ? { ok: true, operation: after.get(t.before.id) as StoredOperation } : null));
  const rest = attempts.filter((_, i) => results[i] === null);
  const restResults = await applyCommands(db, rest.map(({ operationId, command }) => ({ operationId, command })));
  let next = 0;
  return { results: results.map((result) => result ?? (restResults[next++] as CommandResult)), successors: started };
}

/**
 * The starts of the operations that waited behind ending ones when those were claimed, decided on
 * the state read then: the write refuses any whose row has moved since (cancelled, taken, changed),
 * and those are left to the worker's next scan. A successor of a type the worker may not start
 * here (one with limits, even the ended one's own type), not due yet, or on a key it still runs something on is left to that scan too.
 */
function decideSuccessorStarts(
  attempts: readonly FinishedAttempt[],
  after: ReadonlyMap<string, StoredOperation>,
  claim: SuccessorClaim,
): Transition<StoredOperation>[] {
  const start = startCommand(claim);
  const busy = new Set(claim.busyKeys ?? []);
  const starts: Transition<StoredOperation>[] = [];
  for (const attempt of attempts) {
    const ended = after.get(attempt.operationId);
    const next = attempt.claimed.next;
    if (!ended || !ENDED.has(ended.status) || !next || busy.has(next.orderingKey) || starts.some((t) => t.before.id === next.id)) continue;
    if (next.orderingKey !== ended.orderingKey || !claim.types.includes(next.type)) continue;
    try {
      // Never before the end that hands it the key, which another clock may have stamped later.
      starts.push({ before: next, events: decide({ ...start, now: notBefore(start.now, ended.updatedAt) }, next) });
    } catch {
      // Not startable as read (not due yet, for one): the scan decides on its current state.
    }
  }
  return starts;
}

/**
 * Ends operations and starts the ones waiting behind them, in one statement: one round trip and one
 * commit per key turn. A start is written only if its row is still at the version it was decided
 * on, the operation before it on its key ended in this same statement, and nothing else on its key
 * is active ahead of it or running, seen from this statement's snapshot (where the ended row still
 * looks PROCESSING, so it is left out of that check).
 */
async function writeFinishesAndStarts(
  db: Db,
  finishes: readonly Transition[],
  starts: readonly Transition<StoredOperation>[],
): Promise<{ finished: ReadonlySet<string>; started: ClaimedOperation[] }> {
  const finishArrays = transitionArrays(finishes);
  const startArrays = transitionArrays(starts);
  if (!finishArrays || !startArrays) throw new Error('finish-and-start needs both finishes and starts');
  const { rows } = await db.query<{ id: string; started: boolean; next: Record<string, unknown> | null }>(FINISH_AND_START, [
    ...finishArrays.rows,
    ...finishArrays.events,
    ...startArrays.rows,
    ...startArrays.events,
  ]);
  const finished = new Set(rows.filter((r) => !r.started).map((r) => r.id));
  const nextById = new Map(rows.filter((r) => r.started).map((r) => [r.id, r.next ? jsonToOperation(r.next) : null]));
  const started = starts.flatMap((t) =>
    nextById.has(t.before.id) ? [{ ...stateAfter(t), next: nextById.get(t.before.id) ?? null }] : [],
  );
  return { finished, started };
}

const FINISH_AND_START = prepared(
  `WITH fx AS (
     ${projectionInput(1).replace('AS x(', 'AS fx(')}
   ), finished AS (
     UPDATE operations AS o SET ${SET_PROJECTION}
     FROM fx AS x
     WHERE o.id = x.id AND o.version = x.expected_version
     RETURNING o.id, o.ordering_key, o.seq, o.state, o.updated_at
   ), sx AS (
     ${projectionInput(20).replace('AS x(', 'AS sx(')}
   ), started AS (
     UPDATE operations AS o SET ${SET_PROJECTION}
     FROM sx AS x
     WHERE o.id = x.id AND o.version = x.expected_version
       AND o.ordering_key IN (SELECT ordering_key FROM finished)
       AND ${isHeadOfKey('SELECT seq FROM finished')}
       AND NOT EXISTS (SELECT 1 FROM opsd_type_controls c WHERE c.type = o.type AND c.paused)
       AND pg_try_advisory_xact_lock(${CLAIM_LOCK_NAMESPACE}, hashtext(o.ordering_key))
     RETURNING o.id, o.ordering_key, ${NEXT_ON_KEY}
   ), marked_heads AS (
     -- The next on the key of an ended operation becomes the head, unless this statement started it.
     -- Read after started, so that a row is never written by both.
     ${markHeadsOnKeys(
       `SELECT f.ordering_key, f.seq, f.updated_at FROM finished f
        WHERE f.state IN ${ENDED_STATES_SQL} AND f.ordering_key NOT IN (SELECT ordering_key FROM started)`,
       'SELECT id FROM fx',
     )}
   ), appended AS (
     INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
     SELECT e.* FROM ${eventInput(13)} WHERE e.operation_id IN (SELECT id FROM finished)
     UNION ALL
     SELECT e.* FROM ${eventInput(32)} WHERE e.operation_id IN (SELECT id FROM started)
   )
   SELECT id, false AS started, NULL::jsonb AS next FROM finished
   UNION ALL
   SELECT id, true, next FROM started`,
);

function decideOnClaimed(attempt: FinishedAttempt): Transition<StoredOperation> | null {
  try {
    return { before: attempt.claimed, events: decide(attempt.command as OperationCommand, attempt.claimed) };
  } catch {
    // Refused on the claimed state: the locked path decides, and says why.
    return null;
  }
}
