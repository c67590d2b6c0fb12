/** Every state an operation can be in. `PENDING` and `PROCESSING` are active; the rest are terminal or parked. */
export type OperationStatus = 'PENDING' | 'PROCESSING' | 'COMPLETED' | 'REJECTED' | 'FAILED' | 'CANCELLED';

export const OPERATION_STATUSES: readonly OperationStatus[] = [
  'PENDING',
  'PROCESSING',
  'COMPLETED',
  'REJECTED',
  'FAILED',
  'CANCELLED',
];

/** States from which no worker will ever move the operation again (FAILED can still be re-driven by an operator). */
export const TERMINAL_STATUSES: readonly OperationStatus[] = ['COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED'];

/** Lowest and highest priority a client may give; 0 when it gives none. */
export const PRIORITY_RANGE = { min: -10, max: 10, default: 0 } as const;

/** JSON value as stored in payloads, results and error details. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A machine-readable reason attached to a rejection or a failed attempt. */
export interface OperationProblem {
  code: string;
  message: string;
  details?: Json;
}

/**
 * The current state of one operation: exactly what a fold of its events gives.
 * Timestamps are ISO-8601 strings with millisecond precision.
 */
export interface OperationState {
  id: string;
  externalId: string;
  type: string;
  payload: Json;
  payloadHash: string;
  orderingKey: string;
  /** Claimed before operations of lower priority (never before an earlier one on its key). */
  priority: number;
  status: OperationStatus;
  /** Attempts started so far (a released attempt is given back). */
  attempts: number;
  maxAttempts: number;
  /** Not claimable before this instant. */
  runAt: string;
  /** Incremented on every claim; a finish must present the value it was given. */
  fencingToken: number;
  leaseOwner: string | null;
  leaseExpiresAt: string | null;
  result: Json | null;
  lastError: OperationProblem | null;
  /** Sequence number of the last event applied. */
  version: number;
  createdAt: string;
  updatedAt: string;
}
