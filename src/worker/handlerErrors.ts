import type { Json } from '../domain/operation.js';

/**
 * Thrown by a handler to give a business answer: no. The operation becomes REJECTED and is
 * never retried. `code` is yours to publish to your clients.
 */
export class RejectError extends Error {
  override readonly name = 'RejectError';
  constructor(
    readonly code: string,
    message: string,
    readonly details?: Json,
  ) {
    super(message);
  }
}

/**
 * Thrown by a handler to ask for another attempt, optionally not before `retryAfterMs`
 * (a `Retry-After` from a third party). Any other error thrown also counts as retryable.
 *
 * With `pauseResource`, the third party asked to wait (a 429, a 503 with Retry-After): on a type
 * that goes through a resource, the whole resource pauses for `retryAfterMs` (default 1000) in
 * every worker process, and the attempt is deferred rather than failed: it does not count against
 * `maxAttempts` and does not count as a failure for the breaker. On a type without a resource it
 * is an ordinary retry.
 */
export class RetryError extends Error {
  override readonly name = 'RetryError';
  readonly code: string;
  readonly retryAfterMs: number | undefined;
  readonly details: Json | undefined;
  readonly pauseResource: boolean;
  constructor(message: string, options: { retryAfterMs?: number; code?: string; details?: Json; pauseResource?: boolean } = {}) {
    super(message);
    this.code = options.code ?? 'OPSD_RETRYABLE';
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
    this.pauseResource = options.pauseResource === true;
  }
}
