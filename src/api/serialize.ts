import type { OperationProgress } from '../domain/progress.js';
import type { StoredEvent, StoredOperation } from '../store/operationRow.js';

/**
 * The public JSON shape of an operation (snake_case, as clients send it). `progress` is in what
 * reads return; the answers to writes (accept, cancel, retry) leave it out.
 */
export function operationBody(op: StoredOperation & { progress?: OperationProgress | null }) {
  return {
    id: op.id,
    external_id: op.externalId,
    type: op.type,
    state: op.status,
    ordering_key: op.orderingKey,
    priority: op.priority,
    attempts: op.attempts,
    max_attempts: op.maxAttempts,
    payload: op.payload,
    result: op.result,
    error: op.lastError,
    run_at: op.runAt,
    created_at: op.createdAt,
    updated_at: op.updatedAt,
    progress: op.progress,
  };
}

/** Top-level event fields in snake_case like the rest of the API; payloads and results are left as sent. */
export function eventBody(stored: StoredEvent) {
  const { type, at, ...data } = stored.event;
  const snake = Object.fromEntries(Object.entries(data).map(([key, value]) => [key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value]));
  return { seq: stored.seq, type, at, data: snake };
}

export function operationLocation(id: string): string {
  return `/v1/operations/${id}`;
}
