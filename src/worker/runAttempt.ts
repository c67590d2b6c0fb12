import type { AttemptOutcome } from '../domain/commands.js';
import { backoffDelayMs } from '../domain/backoff.js';
import { notBefore } from '../domain/eventTime.js';
import type { Json, OperationProblem } from '../domain/operation.js';
import { toProgressValue } from '../domain/progress.js';
import { describeThrown, toStorableJson, toStorableText } from '../domain/storableJson.js';
import type { StoredOperation } from '../store/operationRow.js';
import type { AttemptAbort } from './attemptAbort.js';
import type { AttemptLog } from './attemptLog.js';
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

/** Longest delay a retry is scheduled out, whatever a handler or an upstream `Retry-After` asks. */
export const MAX_RETRY_DELAY_MS = 30 * 24 * 3600 * 1000;

export interface AttemptEnvironment {
  now: () => Date;
  random: () => number;
  log: AttemptLog;
  /**
   * How long a handler may go on after its signal aborted before the attempt is reported wedged.
   * Until then the attempt keeps its slot, its lease and its key's turn.
   */
  wedgedAfterMs: number;
  /** The type goes through a resource: an upstream's "wait" pauses it and defers the attempt. */
  hasResource: boolean;
  /** Keeps the latest progress the handler reported for the operation it runs (see ProgressKeeper). */
  reportProgress(operation: StoredOperation, value: Json): void;
}

/** How long a resource pauses when an upstream asks to wait without saying for how long. */
export const DEFAULT_PAUSE_MS = 1000;

/**
 * How an attempt ended: an outcome to record; nothing to record (its lease is gone, so the
 * fencing token would refuse it anyway); or wedged (the handler ignored its abort and is still
 * running `wedgedAfterMs` later).
 */
export type AttemptEnd =
  | { kind: 'record'; outcome: AttemptOutcome; pauseResourceUntil?: string }
  | { kind: 'nothing' }
  | { kind: 'wedged'; stopped: Promise<void> };

type Settled = { kind: 'returned'; value: unknown } | { kind: 'threw'; error: unknown } | { kind: 'wedged'; stopped: Promise<void> };

/**
 * Runs one attempt of a claimed operation and turns whatever happened into what to record.
 * It resolves only once the handler has really stopped (or is wedged), so that the slot and the
 * key's turn are never given back while a handler that ignores its signal still has effects.
 * A handler that returned is never retried: its result is made storable and recorded, even when
 * it returned after its timeout or during shutdown.
 */
export async function runAttempt(
  operation: StoredOperation,
  registered: RegisteredOperation,
  abort: AttemptAbort,
  env: AttemptEnvironment,
): Promise<AttemptEnd> {
  const timer = setTimeout(
    () => abort.abort(new AttemptAborted('timeout', `attempt timed out after ${registered.timeoutMs} ms`)),
    registered.timeoutMs,
  );
  let settled: Settled;
  try {
    settled = await untilSettledOrWedged(
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
          get signal() {
            return abort.signal;
          },
          get log() {
            return env.log.logger;
          },
          progress(value: unknown) {
            env.reportProgress(operation, toProgressValue(value));
          },
        }),
      ),
      abort,
      env.wedgedAfterMs,
    );
  } finally {
    clearTimeout(timer);
  }
  if (settled.kind === 'wedged') return settled;

  // Never before the attempt's start: that may have been stamped on another process's clock (the
  // time of the end before it on its key, migration 019).
  const fencing = { fencingToken: operation.fencingToken, now: notBefore(env.now().toISOString(), operation.updatedAt) };
  const aborted = abort.reason;
  const abortReason = aborted instanceof AttemptAborted ? aborted.reason : null;
  if (abortReason === 'lease_lost') return { kind: 'nothing' };
  if (settled.kind === 'returned') {
    if (abortReason) env.log.warn({ abort: abortReason }, 'handler returned after its signal aborted; recording its result');
    return { kind: 'record', outcome: { kind: 'complete', ...fencing, result: toStorableJson(settled.value) } };
  }
  if (abortReason === 'shutdown') return { kind: 'record', outcome: { kind: 'release', ...fencing } };
  const error = settled.error;
  if (error instanceof RejectError) {
    return { kind: 'record', outcome: { kind: 'reject', ...fencing, reason: problemOf(error, 'OPSD_REJECTED') } };
  }
  const now = new Date(fencing.now);
  if (error instanceof RetryError && error.pauseResource && env.hasResource && abortReason === null) {
    const until = new Date(now.getTime() + retryDelayMs(error.retryAfterMs, () => DEFAULT_PAUSE_MS)).toISOString();
    return { kind: 'record', outcome: { kind: 'defer', ...fencing, retryAt: until, reason: problemOf(error, 'OPSD_THROTTLED') }, pauseResourceUntil: until };
  }
  const delayMs = retryDelayMs(error instanceof RetryError ? error.retryAfterMs : undefined, () =>
    backoffDelayMs(operation.attempts, registered.backoff, env.random),
  );
  return {
    kind: 'record',
    outcome: {
      kind: 'fail',
      ...fencing,
      retryAt: new Date(now.getTime() + delayMs).toISOString(),
      error: abortReason === 'timeout' ? { code: 'OPSD_TIMEOUT', message: (aborted as AttemptAborted).message } : describeFailure(error),
    },
  };
}

/** A usable delay: what was asked if it is a number from 0 to {@link MAX_RETRY_DELAY_MS}, else the backoff. */
export function retryDelayMs(asked: unknown, backoff: () => number): number {
  const delay = typeof asked === 'number' && Number.isFinite(asked) && asked >= 0 ? asked : backoff();
  return Math.min(Math.max(0, Math.round(delay)), MAX_RETRY_DELAY_MS);
}

function describeFailure(error: unknown): OperationProblem {
  if (error instanceof RetryError) return problemOf(error, 'OPSD_RETRYABLE');
  return { code: 'OPSD_HANDLER_ERROR', message: describeThrown(error) };
}

/** A handler's typed error as a problem that PostgreSQL will store, whatever its fields hold. */
function problemOf(error: RejectError | RetryError, fallbackCode: string): OperationProblem {
  const code = typeof error.code === 'string' && error.code !== '' ? toStorableText(error.code) : fallbackCode;
  const details = error.details === undefined ? undefined : toStorableJson(error.details);
  return { code, message: describeThrown(error), ...(details !== undefined ? { details } : {}) };
}

/**
 * Waits for the handler to settle. Once the signal aborts, it still waits, but at most
 * `wedgedAfterMs`: a handler may ignore its signal, and its effects are not over until it settles.
 */
function untilSettledOrWedged(work: Promise<unknown>, abort: AttemptAbort, wedgedAfterMs: number): Promise<Settled> {
  return new Promise<Settled>((resolve) => {
    let wedgeTimer: NodeJS.Timeout | undefined;
    const settle = (settled: Settled) => {
      abort.onAbort(null);
      clearTimeout(wedgeTimer);
      resolve(settled);
    };
    abort.onAbort(() => {
      wedgeTimer = setTimeout(() => resolve({ kind: 'wedged', stopped: work.then(() => undefined, () => undefined) }), wedgedAfterMs);
    });
    work.then(
      (value) => settle({ kind: 'returned', value }),
      (error: unknown) => settle({ kind: 'threw', error }),
    );
  });
}
