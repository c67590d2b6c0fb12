import type { Json, OperationProblem } from './operation.js';

interface EventBase {
  /** When the change happened (ISO-8601). */
  at: string;
}

/** A client's operation was accepted. Carries everything needed to rebuild the operation from scratch. */
export interface OperationReceived extends EventBase {
  type: 'received';
  operationId: string;
  externalId: string;
  operationType: string;
  payload: Json;
  payloadHash: string;
  orderingKey: string;
  maxAttempts: number;
  runAt: string;
  /** Absent from operations accepted before priorities existed: 0. */
  priority?: number;
  /** The webhook delivery (source, headers that matter, raw body) the operation came from, if any. */
  delivery?: Json;
}

/** A worker claimed the operation and began an attempt. */
export interface AttemptStarted extends EventBase {
  type: 'started';
  attempt: number;
  fencingToken: number;
  leaseOwner: string;
  leaseExpiresAt: string;
}

export interface OperationCompleted extends EventBase {
  type: 'completed';
  result: Json;
}

/** The handler gave a business answer: no. Never retried. */
export interface OperationRejected extends EventBase {
  type: 'rejected';
  reason: OperationProblem;
}

/** An attempt failed and another one is scheduled at `retryAt`. */
export interface AttemptFailed extends EventBase {
  type: 'attempt_failed';
  error: OperationProblem;
  retryAt: string;
}

/** Attempts are exhausted: a technical dead end, which an operator can re-drive. */
export interface OperationFailed extends EventBase {
  type: 'failed';
  error: OperationProblem;
}

/** The worker holding the lease stopped renewing it; the operation goes back to PENDING. */
export interface LeaseExpired extends EventBase {
  type: 'lease_expired';
  leaseOwner: string | null;
  retryAt: string;
}

/** A worker shutting down gave back an attempt it could not finish; the attempt does not count. */
export interface AttemptReleased extends EventBase {
  type: 'released';
}

/**
 * The upstream asked to wait (a 429, or a 503 with Retry-After, on a resource): the attempt does
 * not count, and the operation is due again at `retryAt`.
 */
export interface AttemptDeferred extends EventBase {
  type: 'deferred';
  reason: OperationProblem;
  retryAt: string;
}

export interface OperationCancelled extends EventBase {
  type: 'cancelled';
}

/** An operator sent a FAILED operation back to PENDING with a fresh set of attempts. */
export interface OperationRedriven extends EventBase {
  type: 'redriven';
}

export type OperationEvent =
  | OperationReceived
  | AttemptStarted
  | OperationCompleted
  | OperationRejected
  | AttemptFailed
  | OperationFailed
  | LeaseExpired
  | AttemptReleased
  | AttemptDeferred
  | OperationCancelled
  | OperationRedriven;

export type OperationEventType = OperationEvent['type'];

/** Events after which the operation is terminal. */
export const TERMINAL_EVENT_TYPES: readonly OperationEventType[] = ['completed', 'rejected', 'failed', 'cancelled'];
