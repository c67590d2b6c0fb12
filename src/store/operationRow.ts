import type { OperationProblem, OperationState, OperationStatus, Json } from '../domain/operation.js';
import type { OperationEvent } from '../domain/events.js';

/** An operation as stored: its state plus its place in acceptance order. */
export interface StoredOperation extends OperationState {
  seq: number;
}

/** A row of `operations` as either driver returns it (bigint as string or number, timestamps as Date). */
export interface OperationRow {
  id: string;
  seq: string | number;
  external_id: string;
  type: string;
  payload: Json;
  payload_hash: string;
  ordering_key: string;
  state: OperationStatus;
  attempts: number;
  max_attempts: number;
  run_at: Date;
  fencing_token: string | number;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  result: Json | null;
  last_error: OperationProblem | null;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export function rowToOperation(row: OperationRow): StoredOperation {
  return {
    id: row.id,
    seq: Number(row.seq),
    externalId: row.external_id,
    type: row.type,
    payload: row.payload,
    payloadHash: row.payload_hash,
    orderingKey: row.ordering_key,
    status: row.state,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    runAt: row.run_at.toISOString(),
    fencingToken: Number(row.fencing_token),
    leaseOwner: row.lease_owner,
    leaseExpiresAt: row.lease_expires_at ? row.lease_expires_at.toISOString() : null,
    result: row.result,
    lastError: row.last_error,
    version: row.version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** A stored event: the domain event plus where it sits. */
export interface StoredEvent {
  position: number;
  operationId: string;
  seq: number;
  event: OperationEvent;
}

export interface EventRow {
  position: string | number;
  operation_id: string;
  seq: number;
  type: OperationEvent['type'];
  data: Record<string, Json>;
  occurred_at: Date;
}

export function rowToEvent(row: EventRow): StoredEvent {
  return {
    position: Number(row.position),
    operationId: row.operation_id,
    seq: row.seq,
    event: { ...row.data, type: row.type, at: row.occurred_at.toISOString() } as unknown as OperationEvent,
  };
}

/** The event as the columns of `operation_events`; `type` and `at` live in columns of their own. */
export function eventToRecord(operationId: string, seq: number, event: OperationEvent): Record<string, unknown> {
  const { type, at, ...data } = event;
  const clientSent = event.type === 'received';
  return {
    operation_id: operationId,
    seq,
    type,
    data,
    external_id: clientSent ? event.externalId : null,
    payload_hash: clientSent ? event.payloadHash : null,
    occurred_at: at,
  };
}
