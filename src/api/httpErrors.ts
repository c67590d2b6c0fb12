import type { ValidateFunction } from 'ajv';
import type { BaseLogger } from 'pino';
import { OpsdError } from '../domain/errors.js';
import type { Json } from '../domain/operation.js';
import { isStoreUnavailable } from '../store/storeErrors.js';

/** Seconds a client should wait before retrying when the store is unreachable. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

/** The JSON body of every error reply: `{"error":{"code","message","details"?}}`. */
export function errorBody(error: OpsdError): { error: { code: string; message: string; details?: Json } } {
  return { error: { code: error.code, message: error.message, ...(error.details !== undefined ? { details: error.details } : {}) } };
}

/** The errors of a failed schema check as one `OPSD_ERR_VALIDATION`; `prefix` names the part checked. */
export function validationError(validate: ValidateFunction, prefix = ''): OpsdError {
  const details = (validate.errors ?? []).map((e) => ({ path: `${prefix}${e.instancePath}` || '/', message: e.message ?? 'invalid' }));
  return new OpsdError('OPSD_ERR_VALIDATION', details.map((d) => `${d.path} ${d.message}`).join('; '), details);
}

/**
 * What a client is told about an error opsd did not raise on purpose: 503 with Retry-After when
 * the store is unreachable (logged as a warning), 500 otherwise (logged as an error).
 */
export function unexpectedError(error: unknown, log: Pick<BaseLogger, 'warn' | 'error'>): { error: OpsdError; headers: Record<string, string> } {
  if (isStoreUnavailable(error)) {
    log.warn({ err: error }, 'store unavailable');
    return {
      error: new OpsdError('OPSD_ERR_UNAVAILABLE', 'the store is unavailable; retry later'),
      headers: { 'retry-after': String(UNAVAILABLE_RETRY_AFTER_S) },
    };
  }
  log.error({ err: error }, 'request failed');
  return { error: new OpsdError('OPSD_ERR_INTERNAL', 'internal error'), headers: {} };
}
