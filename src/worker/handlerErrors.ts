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
 */
export class RetryError extends Error {
  override readonly name = 'RetryError';
  readonly code: string;
  readonly retryAfterMs: number | undefined;
  readonly details: Json | undefined;
  constructor(message: string, options: { retryAfterMs?: number; code?: string; details?: Json } = {}) {
    super(message);
    this.code = options.code ?? 'OPSD_RETRYABLE';
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }
}
