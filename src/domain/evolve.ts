import { LEASE_EXPIRED_PROBLEM } from './errors.js';
import type { OperationEvent } from './events.js';
import type { OperationState } from './operation.js';

const WITHOUT_LEASE = { leaseOwner: null, leaseExpiresAt: null } as const;

/**
 * Applies one event to a state. Pure; the `operations` table is exactly a fold of this over
 * `operation_events`, so a change here is a change to what replay rebuilds.
 */
export function evolve(state: OperationState | null, event: OperationEvent): OperationState {
  if (event.type === 'received') {
    if (state !== null) throw new Error(`received applied to existing operation ${state.id}`);
    return {
      id: event.operationId,
      externalId: event.externalId,
      type: event.operationType,
      payload: event.payload,
      payloadHash: event.payloadHash,
      orderingKey: event.orderingKey,
      priority: event.priority ?? 0,
      status: 'PENDING',
      attempts: 0,
      maxAttempts: event.maxAttempts,
      runAt: event.runAt,
      fencingToken: 0,
      leaseOwner: null,
      leaseExpiresAt: null,
      result: null,
      lastError: null,
      version: 1,
      createdAt: event.at,
      updatedAt: event.at,
    };
  }
  if (state === null) throw new Error(`${event.type} applied before received`);
  // Each case builds its state in one object literal: a worker folds an event for every outcome it records.
  const version = state.version + 1;
  const updatedAt = event.at;

  switch (event.type) {
    case 'started':
      return {
        ...state,
        version,
        updatedAt,
        status: 'PROCESSING',
        attempts: event.attempt,
        fencingToken: event.fencingToken,
        leaseOwner: event.leaseOwner,
        leaseExpiresAt: event.leaseExpiresAt,
      };
    case 'completed':
      return { ...state, version, updatedAt, ...WITHOUT_LEASE, status: 'COMPLETED', result: event.result };
    case 'rejected':
      return { ...state, version, updatedAt, ...WITHOUT_LEASE, status: 'REJECTED', lastError: event.reason };
    case 'attempt_failed':
      return { ...state, version, updatedAt, ...WITHOUT_LEASE, status: 'PENDING', lastError: event.error, runAt: event.retryAt };
    case 'failed':
      return { ...state, version, updatedAt, ...WITHOUT_LEASE, status: 'FAILED', lastError: event.error };
    case 'lease_expired':
      return {
        ...state,
        version,
        updatedAt,
        ...WITHOUT_LEASE,
        status: 'PENDING',
        runAt: event.retryAt,
        lastError: { ...LEASE_EXPIRED_PROBLEM },
      };
    case 'released':
      return { ...state, version, updatedAt, ...WITHOUT_LEASE, status: 'PENDING', attempts: state.attempts - 1, runAt: event.at };
    case 'deferred':
      return { ...state, version, updatedAt, ...WITHOUT_LEASE, status: 'PENDING', attempts: state.attempts - 1, runAt: event.retryAt, lastError: event.reason };
    case 'cancelled':
      return { ...state, version, updatedAt, status: 'CANCELLED' };
    case 'redriven':
      return { ...state, version, updatedAt, status: 'PENDING', attempts: 0, runAt: event.at };
    default: {
      const _never: never = event;
      throw new Error(`unknown event ${JSON.stringify(_never)}`);
    }
  }
}

/** Rebuilds a state from its whole history. */
export function foldEvents(events: readonly OperationEvent[]): OperationState | null {
  return events.reduce<OperationState | null>(evolve, null);
}
