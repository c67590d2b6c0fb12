import type { ValidateFunction } from 'ajv';
import type { BaseLogger } from 'pino';
import { OpsdError } from '../domain/errors.js';
import type { Json } from '../domain/operation.js';
import { isStoreUnavailable } from '../store/storeErrors.js';

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
 * What a client is told about an error opsd did not raise on purpose: 503 when the store is
 * unreachable (logged as a warning; its Retry-After comes with the code, see RETRY_AFTER_S), 500
 * otherwise (logged as an error).
 */
export function unexpectedError(error: unknown, log: Pick<BaseLogger, 'warn' | 'error'>): OpsdError {
  if (isStoreUnavailable(error)) {
    log.warn({ err: error }, 'store unavailable');
    return new OpsdError('OPSD_ERR_UNAVAILABLE', 'the store is unavailable; retry later');
  }
  log.error({ err: error }, 'request failed');
  return new OpsdError('OPSD_ERR_INTERNAL', 'internal error');
}
