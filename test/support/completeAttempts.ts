import type { Db } from '../../src/store/db.js';
import { finishAttempts, type FinishedAttempt, type FinishResult, type SuccessorClaim } from '../../src/store/finishAttempts.js';

/**
 * Records every claimed operation's attempt as completed, in one finish, as the worker does after
 * handlers that returned `null`; with `successors`, the finish also starts the next on their keys.
 */
export function completeAttempts(db: Db, claimed: readonly FinishedAttempt['claimed'][], successors?: SuccessorClaim): Promise<FinishResult> {
  const now = new Date().toISOString();
  return finishAttempts(
    db,
    claimed.map((op) => ({ operationId: op.id, claimed: op, command: { kind: 'complete', now, fencingToken: op.fencingToken, result: null } })),
    successors,
  );
}

/** For `measuringPages`: the statement that ends operations and starts the ones behind them. */
export function isFinishAndStart(sql: string): boolean {
  return sql.includes('UPDATE operations') && sql.includes('started AS');
}
