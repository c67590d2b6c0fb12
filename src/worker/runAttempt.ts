import type { Logger } from 'pino';
import type { AttemptOutcome } from '../domain/commands.js';
import { backoffDelayMs } from '../domain/backoff.js';
import type { Json } from '../domain/operation.js';
import type { StoredOperation } from '../store/operationRow.js';
import { RejectError, RetryError } from './handlerErrors.js';
import type { RegisteredOperation } from './handlerRegistry.js';

/** Why an attempt's signal was aborted by opsd itself. */
export class AttemptAborted extends Error {
  constructor(
    readonly reason: 'timeout' | 'lease_lost' | 'shutdown',
    message: string,
  ) {
    super(message);
  }
}

export interface AttemptEnvironment {
  now: () => Date;
  random: () => number;
  log: Logger;
}

/**
 * Runs one attempt of a claimed operation and turns whatever happened into the outcome command
 * to record, or null when the attempt must not record anything (its lease is gone, or the worker
 * is shutting down and will release it).
 */
export async function runAttempt(
  operation: StoredOperation,
  registered: RegisteredOperation,
  controller: AbortController,
  env: AttemptEnvironment,
): Promise<AttemptOutcome | null> {
  const fencing = { fencingToken: operation.fencingToken };
  const timer = setTimeout(
    () => controller.abort(new AttemptAborted('timeout', `attempt timed out after ${registered.timeoutMs} ms`)),
    registered.timeoutMs,
  );
  try {
    const result = await untilAborted(
      Promise.resolve().then(() =>
        registered.definition.handle({
          operation: {
            id: operation.id,
            externalId: operation.externalId,
            type: operation.type,
            orderingKey: operation.orderingKey,
            attempt: operation.attempts,
            maxAttempts: operation.maxAttempts,
          },
          payload: operation.payload,
          signal: controller.signal,
          log: env.log,
        }),
      ),
      controller.signal,
    );
    return { kind: 'complete', now: env.now().toISOString(), ...fencing, result: toJson(result) };
  } catch (error) {
    const now = env.now();
    const aborted = controller.signal.reason;
    if (aborted instanceof AttemptAborted && aborted.reason !== 'timeout') return null;
    if (error instanceof RejectError) {
      return {
        kind: 'reject',
        now: now.toISOString(),
        ...fencing,
        reason: { code: error.code, message: error.message, ...(error.details !== undefined ? { details: error.details } : {}) },
      };
    }
    const delayMs =
      error instanceof RetryError && error.retryAfterMs !== undefined
        ? error.retryAfterMs
        : backoffDelayMs(operation.attempts, registered.backoff, env.random);
    return {
      kind: 'fail',
      now: now.toISOString(),
      ...fencing,
      retryAt: new Date(now.getTime() + delayMs).toISOString(),
      error: describeFailure(error, aborted),
    };
  } finally {
    clearTimeout(timer);
  }
}

function describeFailure(error: unknown, aborted: unknown): { code: string; message: string; details?: Json } {
  if (aborted instanceof AttemptAborted) return { code: 'OPSD_TIMEOUT', message: aborted.message };
  if (error instanceof RetryError) {
    return { code: error.code, message: error.message, ...(error.details !== undefined ? { details: error.details } : {}) };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'OPSD_HANDLER_ERROR', message };
}

/** The handler's promise, or a rejection as soon as the signal aborts (a handler may ignore its signal). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Handler results are stored as JSON; `undefined` becomes null, class instances become plain data. */
function toJson(value: unknown): Json {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(value)) as Json;
}
