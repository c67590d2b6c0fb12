import type { Logger } from 'pino';
import type { BackoffPolicy } from '../domain/backoff.js';
import type { Json } from '../domain/operation.js';

/** What a handler is told about the attempt it runs. */
export interface OperationContext<P = Json> {
  operation: {
    id: string;
    externalId: string;
    type: string;
    orderingKey: string;
    /** 1 for the first attempt. */
    attempt: number;
    maxAttempts: number;
  };
  payload: P;
  /** Aborted when the attempt times out, the lease is lost, or the worker shuts down past its grace period. */
  signal: AbortSignal;
  /** A logger bound to this operation and attempt. */
  log: Logger;
  /**
   * Reports how far the attempt has got: any JSON, made storable as a result is, at most 4,096
   * characters of it (a RangeError past that). Only the latest report is kept: it is written within
   * a second, and before the attempt's outcome, and shown as the operation's `progress`.
   */
  progress(value: unknown): void;
}

/** A type of operation and how to run it. */
export interface OperationDefinition<P = Json, R = unknown> {
  /** The `type` clients submit, e.g. `payments.charge`. */
  type: string;
  /** JSON Schema the payload must match; checked at submission (422 otherwise). Default: any JSON. */
  payload?: Record<string, unknown>;
  /** Per-attempt time limit in ms; the handler's signal aborts when it passes. Default 30000. */
  timeoutMs?: number;
  /** Attempts before FAILED, unless the client sets `max_attempts`. Default 5. */
  maxAttempts?: number;
  /**
   * Attempts of this type in flight at once across every worker process (`OPSD_TYPE_CONCURRENCY`
   * overrides). Default: no cap beyond each worker's own concurrency.
   */
  concurrency?: number;
  /** The resource (see `defineResource`) whose rate, slots and breaker its attempts go through. Default: none. */
  resource?: string;
  /**
   * Most PENDING operations of this type; past it new submissions get 429 (those with a priority
   * below 0 once the backlog is at half of it). Default: no limit.
   */
  maxBacklog?: number;
  /**
   * Payload fields that are secret, as dot paths (`card.number`, `credentials.*`): redacted from
   * every log line about the type's operations, the handler's own `log` included. Default: none.
   */
  sensitive?: string[];
  /** Delay between attempts (exponential, full jitter). Default `{ baseMs: 1000, maxMs: 300000 }`. */
  backoff?: Partial<BackoffPolicy>;
  /**
   * Runs one attempt. Return the result (any JSON) to complete; throw `RejectError` for a business
   * refusal, `RetryError` (or anything else) for a retryable failure.
   */
  handle(context: OperationContext<P>): Promise<R> | R;
}

const DEFINITION = Symbol.for('opsd.operationDefinition');

/** Declares an operation type. Export the result from the module named by `OPSD_HANDLERS`. */
export function defineOperation<P = Json, R = unknown>(definition: OperationDefinition<P, R>): OperationDefinition<P, R> {
  if (!/^[a-z0-9][a-z0-9._-]{0,127}$/i.test(definition.type)) {
    throw new TypeError(`operation type "${definition.type}" must be 1-128 letters, digits, '.', '_' or '-'`);
  }
  if (typeof definition.handle !== 'function') {
    throw new TypeError(`operation type "${definition.type}" has no handle function`);
  }
  for (const key of ['timeoutMs', 'maxAttempts', 'concurrency', 'maxBacklog'] as const) {
    const value = definition[key];
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
      throw new TypeError(`operation type "${definition.type}": ${key} must be a positive integer`);
    }
  }
  if (definition.sensitive !== undefined && !(Array.isArray(definition.sensitive) && definition.sensitive.every((p) => typeof p === 'string' && /^[A-Za-z0-9_$*-]+(\.[A-Za-z0-9_$*-]+)*$/.test(p)))) {
    throw new TypeError(`operation type "${definition.type}": sensitive must list payload fields as dot paths (card.number)`);
  }
  if (definition.resource !== undefined && (typeof definition.resource !== 'string' || definition.resource === '')) {
    throw new TypeError(`operation type "${definition.type}": resource must name a resource`);
  }
  return Object.assign(definition, { [DEFINITION]: true });
}

export function isOperationDefinition(value: unknown): value is OperationDefinition {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DEFINITION] === true;
}
