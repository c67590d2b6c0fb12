import { Ajv } from 'ajv';

/**
 * The validator of request bodies, on every HTTP server opsd runs: no type coercion (a string is
 * never silently a number), defaults filled in, every error reported.
 */
export function createBodyValidator(): Ajv {
  return new Ajv({ allErrors: true, strict: false, coerceTypes: false, useDefaults: true });
}
