import type { AttemptLines } from './attemptLog.js';
import { createMicroBatcher } from '../lib/microBatcher.js';
import type { CommandResult } from '../store/applyCommands.js';
import type { Db } from '../store/db.js';
import { finishAttempts, type FinishedAttempt, type SuccessorClaim } from '../store/finishAttempts.js';
import type { StoredOperation } from '../store/operationRow.js';
import { isStoreUnavailable } from '../store/storeErrors.js';

/** What the recorder needs to know about the attempt whose outcome it records. */
export interface RecordingContext {
  log: AttemptLines;
  /** Until when the lease is known to hold (the last renewal that succeeded, plus the lease length). */
  leaseValidUntil(): number;
  /** True once the worker has stopped waiting for anything (end of shutdown). */
  givenUp(): boolean;
}

/**
 * Records attempt outcomes. Outcomes of one tick share one transaction (at most `inFlight` under
 * way); if the store refuses a batch, each outcome is tried alone so that one never fails another.
 * An outcome is retried for as long as the store is unreachable: the fencing token makes a late
 * write safe, and giving up would run the handler again once its lease is rescued.
 */
export function createOutcomeRecorder(
  db: Db,
  options: {
    inFlight: number;
    /**
     * What the worker can start on the keys of operations that end (asked per batch), or null
     * for nothing; and where the operations started that way go.
     */
    successors?: { claim(): SuccessorClaim | null; started(operations: StoredOperation[]): void };
  },
) {
  const finish = async (attempts: FinishedAttempt[]): Promise<CommandResult[]> => {
    const { results, successors } = await finishAttempts(db, attempts, options.successors?.claim() ?? undefined);
    if (successors.length > 0) options.successors?.started(successors);
    return results;
  };
  const apply = createMicroBatcher(finish, {
    maxBatch: 500,
    maxInFlight: options.inFlight,
    isolate: (error) => !isStoreUnavailable(error),
  });

  return async function record(command: FinishedAttempt, context: RecordingContext): Promise<CommandResult> {
    let current = command;
    let warnedExpiry = false;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await apply(current);
      } catch (error) {
        if (!isStoreUnavailable(error)) {
          const bare = withoutDetails(current);
          if (bare === current) throw error;
          // The outcome was made storable where it entered; this is a last resort that still keeps
          // a returned handler from running again.
          context.log.error({ err: error }, 'outcome refused by the store; recording it without its details');
          current = bare;
          continue;
        }
        if (context.givenUp()) throw error;
        if (!warnedExpiry && Date.now() > context.leaseValidUntil()) {
          warnedExpiry = true;
          context.log.error(
            { operation_id: command.operationId },
            'the store has been unreachable for longer than the lease: still trying to record the outcome, but if the lease is rescued first the operation will run again',
          );
        }
        context.log.warn({ err: error, operation_id: command.operationId, retry_in_ms: delay }, 'recording outcome failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  };
}

/** The same outcome with its free-form parts (result, details) replaced by a note; itself if it has none. */
function withoutDetails(addressed: FinishedAttempt): FinishedAttempt {
  const { command } = addressed;
  const note = { code: 'OPSD_NOT_STORABLE', message: 'the value could not be stored' };
  switch (command.kind) {
    case 'complete':
      return command.result === null ? addressed : { ...addressed, command: { ...command, result: note } };
    case 'reject':
      return command.reason.details === undefined ? addressed : { ...addressed, command: { ...command, reason: { code: command.reason.code, message: command.reason.message } } };
    case 'fail':
      return command.error.details === undefined ? addressed : { ...addressed, command: { ...command, error: { code: command.error.code, message: command.error.message } } };
    case 'defer':
      return command.reason.details === undefined ? addressed : { ...addressed, command: { ...command, reason: { code: command.reason.code, message: command.reason.message } } };
    default:
      return addressed;
  }
}
