import type { OperationProblem, OperationState, OperationStatus, Json } from '../domain/operation.js';
import type { OperationEvent } from '../domain/events.js';

/** An operation as stored: its state plus its place in acceptance order. */
export interface StoredOperation extends OperationState {
  seq: number;
}

/**
 * A row of `operations` as either driver returns it: bigint as string or number, timestamps as Date,
 * or as ISO-8601 text from a statement that asks for it (see PreparedStatement.isoTimes).
 */
export interface OperationRow {
  id: string;
  seq: string | number;
  external_id: string;
  type: string;
  payload: Json;
  payload_hash: string;
  ordering_key: string;
  priority: number;
  state: OperationStatus;
  attempts: number;
  max_attempts: number;
  run_at: Date | string;
  fencing_token: string | number;
  lease_owner: string | null;
  lease_expires_at: Date | string | null;
  result: Json | null;
  last_error: OperationProblem | null;
  version: number;
  created_at: Date | string;
  updated_at: Date | string;
}

/** A time as an operation keeps it: the ISO-8601 text `toISOString` writes. */
function isoTime(value: Date | string): string {
  return typeof value === 'string' ? value : value.toISOString();
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
    priority: row.priority,
    status: row.state,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    runAt: isoTime(row.run_at),
    fencingToken: Number(row.fencing_token),
    leaseOwner: row.lease_owner,
    leaseExpiresAt: row.lease_expires_at ? isoTime(row.lease_expires_at) : null,
    result: row.result,
    lastError: row.last_error,
    version: row.version,
    createdAt: isoTime(row.created_at),
    updatedAt: isoTime(row.updated_at),
  };
}

/**
 * A row of `operations` read back through `to_jsonb`: the same as {@link rowToOperation}, with
 * timestamps that arrive as text.
 */
export function jsonToOperation(json: Record<string, unknown>): StoredOperation {
  const row = json as unknown as Record<keyof OperationRow, unknown>;
  const iso = (value: unknown) => new Date(value as string).toISOString();
  return {
    id: row.id as string,
    seq: Number(row.seq),
    externalId: row.external_id as string,
    type: row.type as string,
    payload: row.payload as Json,
    payloadHash: row.payload_hash as string,
    orderingKey: row.ordering_key as string,
    priority: row.priority as number,
    status: row.state as OperationStatus,
    attempts: row.attempts as number,
    maxAttempts: row.max_attempts as number,
    runAt: iso(row.run_at),
    fencingToken: Number(row.fencing_token),
    leaseOwner: (row.lease_owner as string | null) ?? null,
    leaseExpiresAt: row.lease_expires_at === null || row.lease_expires_at === undefined ? null : iso(row.lease_expires_at),
    result: (row.result as Json | null) ?? null,
    lastError: (row.last_error as OperationProblem | null) ?? null,
    version: row.version as number,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
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
