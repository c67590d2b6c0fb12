import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { ERROR_CATALOG, OpsdError, RETRY_AFTER_S, type ErrorCode } from '../domain/errors.js';
import type { Json } from '../domain/operation.js';
import { unexpectedError } from './httpErrors.js';

/** Framework error codes and what they mean in the opsd catalog. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'OPSD_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'OPSD_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'OPSD_ERR_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'OPSD_ERR_MALFORMED_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'OPSD_ERR_MALFORMED_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'OPSD_ERR_VALIDATION',
};

export function sendError(reply: FastifyReply, code: ErrorCode, message: string, details?: Json) {
  const retryAfter = RETRY_AFTER_S[code];
  if (retryAfter !== undefined && !reply.hasHeader('retry-after')) reply.header('retry-after', String(retryAfter));
  return reply
    .code(ERROR_CATALOG[code].status)
    .send({ error: { code, message, ...(details !== undefined ? { details } : {}) } });
}

/** Every error leaves as `{"error":{"code","message","details"?}}` with a published code. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | OpsdError | Error, request, reply) => {
    if (error instanceof OpsdError) return sendError(reply, error.code, error.message, error.details);
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) {
      const details = fastifyError.validation.map((v) => ({
        path: `${fastifyError.validationContext ?? ''}${v.instancePath}`,
        message: v.message ?? 'invalid',
      }));
      return sendError(reply, 'OPSD_ERR_VALIDATION', error.message, details);
    }
    const mapped = fastifyError.code ? FRAMEWORK_CODES[fastifyError.code] : undefined;
    if (mapped) return sendError(reply, mapped, error.message);
    if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
      return sendError(reply, 'OPSD_ERR_MALFORMED_JSON', error.message);
    }
    // Before the store check: a client that hangs up mid-body raises ECONNRESET too, with a 400.
    if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      return sendError(reply, 'OPSD_ERR_VALIDATION', error.message);
    }
    const unexpected = unexpectedError(error, request.log);
    reply.headers(unexpected.headers);
    return sendError(reply, unexpected.error.code, unexpected.error.message);
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 'OPSD_ERR_ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );
}
