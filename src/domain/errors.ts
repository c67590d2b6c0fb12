import type { Json } from './operation.js';

/**
 * The one catalog of error codes opsd publishes, with the HTTP status each maps to.
 * A code, once published, never changes meaning; add new ones instead.
 */
export const ERROR_CATALOG = {
  OPSD_ERR_VALIDATION: { status: 400, title: 'The request does not match the schema' },
  OPSD_ERR_MALFORMED_JSON: { status: 400, title: 'The body is not valid JSON' },
  OPSD_ERR_INVALID_CURSOR: { status: 400, title: 'The pagination cursor is not one opsd issued' },
  OPSD_ERR_UNSAFE_NUMBER: { status: 400, title: 'A number in the body cannot be kept exactly (send it as a string)' },
  OPSD_ERR_UNSTORABLE_TEXT: { status: 400, title: 'A string holds NUL or a lone surrogate' },
  OPSD_ERR_JSON_TOO_DEEP: { status: 400, title: 'The body nests too deep' },
  OPSD_ERR_BAD_REQUEST: { status: 400, title: 'The HTTP request is malformed' },
  OPSD_ERR_WEBHOOK_TIMESTAMP: { status: 400, title: 'The webhook timestamp is outside the tolerance' },
  OPSD_ERR_UNAUTHENTICATED: { status: 401, title: 'A valid API key is required (Authorization: Bearer <key>)' },
  OPSD_ERR_WEBHOOK_SIGNATURE: { status: 401, title: 'The webhook signature is missing or does not match' },
  OPSD_ERR_FORBIDDEN: { status: 403, title: 'The API key lacks the scope this route needs' },
  OPSD_ERR_REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time' },
  OPSD_ERR_NOT_FOUND: { status: 404, title: 'No such operation' },
  OPSD_ERR_UNKNOWN_RESOURCE: { status: 404, title: 'No such resource' },
  OPSD_ERR_UNKNOWN_WEBHOOK_SOURCE: { status: 404, title: 'No such webhook source' },
  OPSD_ERR_SUBSCRIPTION_NOT_FOUND: { status: 404, title: 'No such subscription' },
  OPSD_ERR_ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  OPSD_ERR_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  OPSD_ERR_DUPLICATE_CONFLICT: { status: 409, title: 'The external_id is already used by a different operation' },
  OPSD_ERR_IDEMPOTENCY_MISMATCH: { status: 409, title: 'The external_id was submitted before with different options' },
  OPSD_ERR_INVALID_STATE: { status: 409, title: 'The operation is not in a state that allows this' },
  OPSD_ERR_LEASE_LOST: { status: 409, title: 'The attempt no longer holds the lease' },
  OPSD_ERR_PAYLOAD_TOO_LARGE: { status: 413, title: 'The body is over the size limit' },
  OPSD_ERR_URI_TOO_LONG: { status: 414, title: 'The URL is too long' },
  OPSD_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The body must be application/json' },
  OPSD_ERR_UNKNOWN_TYPE: { status: 422, title: 'No handler is registered for this operation type' },
  OPSD_ERR_PAYLOAD_INVALID: { status: 422, title: 'The payload does not match the schema of its type' },
  OPSD_ERR_OVERLOADED: { status: 429, title: 'Too many requests' },
  OPSD_ERR_BACKLOG_FULL: { status: 429, title: 'Too many operations of this type are waiting' },
  OPSD_ERR_TOO_MANY_AUTH_FAILURES: { status: 429, title: 'Too many requests with a bad API key from this address' },
  OPSD_ERR_HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  OPSD_ERR_INTERNAL: { status: 500, title: 'Internal error' },
  OPSD_ERR_UNAVAILABLE: { status: 503, title: 'The service is not ready' },
  OPSD_ERR_SATURATED: { status: 503, title: 'The service is saturated (event loop or store)' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/** Seconds a client should wait before it tries again, for the codes that invite a retry. */
export const RETRY_AFTER_S: Partial<Record<ErrorCode, number>> = {
  OPSD_ERR_OVERLOADED: 1,
  OPSD_ERR_BACKLOG_FULL: 5,
  OPSD_ERR_UNAVAILABLE: 5,
  OPSD_ERR_SATURATED: 2,
};

/** An error with a published code; everything opsd reports to a client is one of these. */
export class OpsdError extends Error {
  override readonly name = 'OpsdError';
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_CATALOG[code].title,
    readonly details?: Json,
  ) {
    super(message);
    this.status = ERROR_CATALOG[code].status;
  }
}

/** The problem recorded on an operation whose lease ran out; a published code. */
export const LEASE_EXPIRED_PROBLEM = {
  code: 'OPSD_LEASE_EXPIRED',
  message: 'the worker holding the lease stopped renewing it',
} as const;
