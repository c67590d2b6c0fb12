import type { AttemptLines } from './attemptLog.js';
import type { AttemptOutcome } from '../domain/commands.js';
import type { StoredOperation } from '../store/operationRow.js';
import type { AttemptEndKind } from './workerObserver.js';

/** What a recorded outcome made of the operation; null for a state no outcome leads to. */
export function endKindOf(after: StoredOperation, outcome: AttemptOutcome): AttemptEndKind | null {
  switch (after.status) {
    case 'COMPLETED':
      return 'completed';
    case 'REJECTED':
      return 'rejected';
    case 'FAILED':
      return 'failed';
    case 'PENDING':
      return outcome.kind === 'release' ? 'released' : outcome.kind === 'defer' ? 'deferred' : 'retried';
    default:
      return null;
  }
}

/** The line an attempt's end gets in the log (bound to the operation, its attempt and its worker). */
export function logEnd(log: AttemptLines, kind: AttemptEndKind, after: StoredOperation): void {
  switch (kind) {
    case 'completed':
      return log.info('operation completed');
    case 'rejected':
      return log.info({ reason: after.lastError }, 'operation rejected');
    case 'failed':
      return log.warn({ error: after.lastError }, 'operation failed: attempts exhausted');
    case 'released':
      return log.info('attempt released at shutdown');
    case 'deferred':
      return log.info({ reason: after.lastError, retry_at: after.runAt }, 'upstream asked to wait: attempt deferred, not counted');
    case 'retried':
      return log.info({ error: after.lastError, retry_at: after.runAt }, 'attempt failed; retry scheduled');
    default: {
      const _never: never = kind;
      throw new Error(`unknown end ${String(_never)}`);
    }
  }
}
