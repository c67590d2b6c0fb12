import { OpsdError } from '../domain/errors.js';
import { parseRunAt } from '../domain/runAt.js';
import type { Json } from '../domain/operation.js';
import type { NewOperation } from '../store/acceptOperations.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';

/** A submitted operation after schema validation. */
export interface SubmittedOperation {
  type: string;
  external_id: string;
  payload: Json;
  ordering_key?: string;
  max_attempts?: number;
  run_at?: string;
  priority?: number;
}

/**
 * Checks what the schema cannot: the type has a handler, the payload matches that handler's
 * schema, `run_at` is a real RFC 3339 date-time within range. Fills in the type's defaults.
 */
export function toNewOperation(body: SubmittedOperation, registry: HandlerRegistry, delivery?: Json): NewOperation {
  const registered = registry.isInternal(body.type) ? undefined : registry.get(body.type);
  if (!registered) {
    throw new OpsdError('OPSD_ERR_UNKNOWN_TYPE', `no handler is registered for type "${body.type}"`, {
      type: body.type,
      known_types: registry.types().filter((t) => !registry.isInternal(t)),
    });
  }
  const payloadErrors = registry.payloadErrors(body.type, body.payload);
  if (payloadErrors) {
    throw new OpsdError('OPSD_ERR_PAYLOAD_INVALID', `payload does not match the schema of "${body.type}"`, payloadErrors);
  }
  const runAt = body.run_at === undefined ? undefined : parseRunAt(body.run_at);
  return {
    externalId: body.external_id,
    type: body.type,
    payload: body.payload,
    orderingKey: body.ordering_key,
    maxAttempts: body.max_attempts ?? registered.maxAttempts,
    runAt,
    priority: body.priority,
    ...(delivery !== undefined ? { delivery } : {}),
  };
}
