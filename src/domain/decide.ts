import type { AttemptOutcome, OperationCommand } from './commands.js';
import { LEASE_EXPIRED_PROBLEM, OpsdError } from './errors.js';
import type { OperationEvent } from './events.js';
import type { OperationState } from './operation.js';

/**
 * Decides what happens when `command` meets `state` (null: the operation does not exist yet).
 * Pure: returns the events to append, or throws an OpsdError naming why the move is illegal.
 */
export function decide(command: OperationCommand, state: OperationState | null): OperationEvent[] {
  const at = command.now;
  if (command.kind === 'accept') {
    if (state !== null) throw new OpsdError('OPSD_ERR_INVALID_STATE', 'operation already exists');
    return [
      {
        type: 'received',
        at,
        operationId: command.operationId,
        externalId: command.externalId,
        operationType: command.operationType,
        payload: command.payload,
        payloadHash: command.payloadHash,
        orderingKey: command.orderingKey,
        maxAttempts: command.maxAttempts,
        runAt: command.runAt,
        priority: command.priority,
        ...(command.delivery !== undefined ? { delivery: command.delivery } : {}),
      },
    ];
  }
  if (state === null) throw new OpsdError('OPSD_ERR_NOT_FOUND');

  switch (command.kind) {
    case 'start':
      requireStatus(state, 'PENDING', 'start');
      if (state.runAt > at) throw new OpsdError('OPSD_ERR_INVALID_STATE', `operation is not due before ${state.runAt}`);
      return [
        {
          type: 'started',
          at,
          attempt: state.attempts + 1,
          fencingToken: state.fencingToken + 1,
          leaseOwner: command.leaseOwner,
          leaseExpiresAt: command.leaseExpiresAt,
        },
      ];
    case 'complete':
    case 'reject':
    case 'fail':
    case 'release':
    case 'defer':
      requireLease(state, command);
      return decideOutcome(command, state);
    case 'expire_lease':
      requireStatus(state, 'PROCESSING', 'expire the lease of');
      if (!command.ownerGone && state.leaseExpiresAt !== null && state.leaseExpiresAt > at) {
        throw new OpsdError('OPSD_ERR_INVALID_STATE', `lease holds until ${state.leaseExpiresAt}`);
      }
      if (state.attempts >= state.maxAttempts) return [{ type: 'failed', at, error: { ...LEASE_EXPIRED_PROBLEM } }];
      return [{ type: 'lease_expired', at, leaseOwner: state.leaseOwner, retryAt: command.retryAt }];
    case 'cancel':
      requireStatus(state, 'PENDING', 'cancel');
      return [{ type: 'cancelled', at }];
    case 'redrive':
      requireStatus(state, 'FAILED', 'retry');
      return [{ type: 'redriven', at }];
    default: {
      const _never: never = command;
      throw new Error(`unknown command ${JSON.stringify(_never)}`);
    }
  }
}

function decideOutcome(command: AttemptOutcome, state: OperationState): OperationEvent[] {
  const at = command.now;
  switch (command.kind) {
    case 'complete':
      return [{ type: 'completed', at, result: command.result }];
    case 'reject':
      return [{ type: 'rejected', at, reason: command.reason }];
    case 'fail':
      if (state.attempts >= state.maxAttempts) return [{ type: 'failed', at, error: command.error }];
      return [{ type: 'attempt_failed', at, error: command.error, retryAt: command.retryAt }];
    case 'release':
      return [{ type: 'released', at }];
    case 'defer':
      return [{ type: 'deferred', at, reason: command.reason, retryAt: command.retryAt }];
    default: {
      const _never: never = command;
      throw new Error(`unknown outcome ${JSON.stringify(_never)}`);
    }
  }
}

function requireStatus(state: OperationState, status: OperationState['status'], verb: string): void {
  if (state.status !== status) {
    throw new OpsdError('OPSD_ERR_INVALID_STATE', `cannot ${verb} an operation in state ${state.status}`, {
      state: state.status,
    });
  }
}

/** The fencing check: only the attempt that holds the current token may record an outcome. */
function requireLease(state: OperationState, command: AttemptOutcome): void {
  if (state.status !== 'PROCESSING' || state.fencingToken !== command.fencingToken) {
    throw new OpsdError('OPSD_ERR_LEASE_LOST', 'the attempt no longer holds the lease', {
      state: state.status,
      fencing_token: state.fencingToken,
      presented_token: command.fencingToken,
    });
  }
}
