import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { drainRequest } from './clientErrors.js';
import { RouteTable } from './routeTable.js';
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

/** Errors the router raises before any route runs, mapped onto the catalog. */
export function answerFrameworkError(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(reply, 'OPSD_ERR_URI_TOO_LONG', 'a path parameter is too long');
  if (error.code === 'FST_ERR_BAD_URL') return sendError(reply, 'OPSD_ERR_BAD_REQUEST', 'the URL is not valid percent-encoded UTF-8');
  return sendError(reply, 'OPSD_ERR_BAD_REQUEST', error.message);
}

/** Every error leaves as `{"error":{"code","message","details"?}}` with a published code. */
export function installErrorHandling(app: FastifyInstance): void {
  const routes = new RouteTable();
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.add(route.url, method);
  });
  app.setErrorHandler(async (error: FastifyError | OpsdError | Error, request, reply) => {
    const tooLarge = (error as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE' || (error instanceof OpsdError && error.code === 'OPSD_ERR_PAYLOAD_TOO_LARGE');
    if (tooLarge) {
      await drainRequest(request.raw);
      reply.header('connection', 'close');
    }
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
    return sendError(reply, unexpected.code, unexpected.message);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = routes.allowed(path);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return sendError(reply, 'OPSD_ERR_METHOD_NOT_ALLOWED', `${request.method} is not served on ${path}; use ${allowed.join(', ')}`);
    }
    return sendError(reply, 'OPSD_ERR_ROUTE_NOT_FOUND', `no route ${request.method} ${path}`);
  });
}
