import { decide } from '../domain/decide.js';
import type { OperationCommand } from '../domain/commands.js';
import { evolve } from '../domain/evolve.js';
import type { OperationState } from '../domain/operation.js';
import { applyCommands, type AddressedCommand, type CommandResult } from './applyCommands.js';
import type { Db } from './db.js';
import type { StoredOperation } from './operationRow.js';
import { writeTransitions, type Transition } from './saveTransitions.js';

/** An attempt's outcome, with the state the worker was given when it claimed the operation. */
export interface FinishedAttempt extends AddressedCommand {
  claimed: StoredOperation;
}

/**
 * Records attempt outcomes. Each is decided on the state its worker claimed and written in one
 * statement (one round trip and one commit for the batch), guarded by the version it was decided
 * on: an outcome decides only on status, fencing token and attempts, which cannot change without a
 * new version, so a row still at that version is exactly the state a lock would have shown. Any
 * row that moved (its lease was rescued, for example) goes through {@link applyCommands}, which
 * locks it and decides again, refusing an outcome whose lease is lost.
 */
export async function finishAttempts(db: Db, attempts: readonly FinishedAttempt[]): Promise<CommandResult[]> {
  if (attempts.length === 0) return [];
  const once = new Map<string, number>();
  for (const a of attempts) once.set(a.operationId, (once.get(a.operationId) ?? 0) + 1);
  const decided = attempts.map((a) => (once.get(a.operationId) === 1 && a.claimed.id === a.operationId ? decideOnClaimed(a) : null));
  const transitions = decided.filter((t): t is Transition<StoredOperation> => t !== null);
  const written = await writeTransitions(db, transitions, 'current');

  const results: (CommandResult | null)[] = decided.map((t) =>
    t && written.has(t.before.id) ? { ok: true, operation: { ...t.before, ...t.events.reduce<OperationState>(evolve, t.before) } } : null,
  );
  const rest = attempts.filter((_, i) => results[i] === null);
  const restResults = await applyCommands(db, rest.map(({ operationId, command }) => ({ operationId, command })));
  let next = 0;
  return results.map((result) => result ?? (restResults[next++] as CommandResult));
}

function decideOnClaimed(attempt: FinishedAttempt): Transition<StoredOperation> | null {
  try {
    return { before: attempt.claimed, events: decide(attempt.command as OperationCommand, attempt.claimed) };
  } catch {
    // Refused on the claimed state: the locked path decides, and says why.
    return null;
  }
}
