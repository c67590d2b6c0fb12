import { decide } from '../domain/decide.js';
import type { OperationCommand } from '../domain/commands.js';
import { evolve } from '../domain/evolve.js';
import type { OperationState } from '../domain/operation.js';
import { applyCommands, type AddressedCommand, type CommandResult } from './applyCommands.js';
import { claimInTransaction, type ClaimedOperation, type ClaimOptions } from './claimOperations.js';
import type { Db } from './db.js';
import type { StoredOperation } from './operationRow.js';
import { writeTransitions, type Transition } from './saveTransitions.js';

/** An attempt's outcome, with the state the worker was given when it claimed the operation. */
export interface FinishedAttempt extends AddressedCommand {
  claimed: StoredOperation;
}

/**
 * Starting the operation that follows an ended one on its key, in the finish's own transaction.
 * `types`: the types the worker may start besides the ended one's (whose slot the successor takes).
 */
export type SuccessorClaim = Omit<ClaimOptions, 'limit' | 'successorsOf'>;

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
 * With `successors`, the operations that now head the keys of ended ones are claimed in the same
 * transaction: a few-key workload then takes one commit per operation instead of two, and no scan.
 */
export async function finishAttempts(db: Db, attempts: readonly FinishedAttempt[], successors?: SuccessorClaim): Promise<FinishResult> {
  if (attempts.length === 0) return { results: [], successors: [] };
  const once = new Map<string, number>();
  for (const a of attempts) once.set(a.operationId, (once.get(a.operationId) ?? 0) + 1);
  const decided = attempts.map((a) => (once.get(a.operationId) === 1 && a.claimed.id === a.operationId ? decideOnClaimed(a) : null));
  const transitions = decided.filter((t): t is Transition<StoredOperation> => t !== null);
  const after = new Map(transitions.map((t) => [t.before.id, { ...t.before, ...t.events.reduce<OperationState>(evolve, t.before) }]));
  // Only keys on which something waited when the attempt was claimed: probing every key of a
  // distinct-key workload would cost a transaction and a statement per batch for nothing.
  // Something accepted later behind it is found by the worker's next scan.
  const followed = new Set(attempts.filter((a) => (a.claimed as Partial<ClaimedOperation>).followed !== false).map((a) => a.operationId));
  const ending = successors ? [...after.values()].filter((op) => ENDED.has(op.status) && followed.has(op.id)) : [];

  let written: Map<string, unknown>;
  let started: ClaimedOperation[] = [];
  if (successors && ending.length > 0) {
    // One transaction, one commit: the next operation on a key starts as the one before it ends.
    [written, started] = await db.transaction(async (tx) => {
      const done = await writeTransitions(tx, transitions, 'current');
      const keys = new Map<string, string>();
      for (const op of ending) if (done.has(op.id)) keys.set(op.orderingKey, op.type);
      const next = await claimInTransaction(tx, {
        ...successors,
        limit: keys.size,
        successorsOf: [...keys].map(([orderingKey, type]) => ({ orderingKey, type })),
      });
      return [done, next] as const;
    });
  } else {
    written = await writeTransitions(db, transitions, 'current');
  }

  const results: (CommandResult | null)[] = decided.map((t) => (t && written.has(t.before.id) ? { ok: true, operation: after.get(t.before.id) as StoredOperation } : null));
  const rest = attempts.filter((_, i) => results[i] === null);
  const restResults = await applyCommands(db, rest.map(({ operationId, command }) => ({ operationId, command })));
  let next = 0;
  return { results: results.map((result) => result ?? (restResults[next++] as CommandResult)), successors: started };
}

function decideOnClaimed(attempt: FinishedAttempt): Transition<StoredOperation> | null {
  try {
    return { before: attempt.claimed, events: decide(attempt.command as OperationCommand, attempt.claimed) };
  } catch {
    // Refused on the claimed state: the locked path decides, and says why.
    return null;
  }
}
