import { Ajv } from 'ajv';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { Db } from '../store/db.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { createBodyValidator } from './bodyValidator.js';
import { answerClientError, serverTimeouts } from './clientErrors.js';
import { answerFrameworkError, installErrorHandling } from './errorHandler.js';
import { registerHealthRoutes } from './healthRoutes.js';
import { registerAdminRoutes } from './adminRoutes.js';
import type { OpsdMetrics } from '../observe/metrics.js';
import { registerHttpMetrics } from '../observe/httpMetrics.js';
import { registerObservabilityRoutes } from '../observe/observabilityRoutes.js';
import { registerOpenApi } from './openApi.js';
import { requestIdOf } from '../observe/requestId.js';
import { VERSION } from '../version.js';
import type { Observability } from '../observe/startObservability.js';
import { registerAdmission } from './admissionPlugin.js';
import { registerAuth } from './authPlugin.js';
import { registerSubscriptionRoutes } from './subscriptionRoutes.js';
import type { Authenticator } from '../auth/authenticator.js';
import { createAdmission, PRESSURE_DEFAULTS, type Admission, type PressureOptions } from '../protect/admission.js';
import type { BacklogGauge } from '../protect/backlogGauge.js';
import { BATCH_ROUTE, registerOperationRoutes } from './operationRoutes.js';
import { checkStorableStrings, parseBatchBody, parseJsonBody, type BatchBody } from './parseJsonBody.js';

/** What the HTTP app needs; the caller owns their lifecycles. */
export interface AppOptions {
  db: Db;
  registry: HandlerRegistry;
  dispatcher: Dispatcher;
  logger: Logger;
  /** Largest accepted body in bytes. Default 1 MiB. */
  bodyLimit?: number;
  /** Longest time a whole request may take to arrive, body included, in ms; then 408. Default 30000. */
  requestTimeoutMs?: number;
  /** Longest a submission waits for the store, in ms; then 503 with Retry-After. Default 800. */
  acceptTimeoutMs?: number;
  /** Requests in flight and the wait for a turn (429 past them). Default: see ADMISSION_DEFAULTS. */
  admission?: Admission;
  /** Saturation thresholds (503 past them). Default: event loop delay 1000 ms, 100 callers waiting for the store. */
  pressure?: PressureOptions;
  /** Backlogs of the types that cap theirs; without it no type is shed. */
  backlog?: BacklogGauge;
  /** `/metrics`, `/health` and the HTTP metrics; without it neither route is served. */
  observability?: Observability;
  /** Who may call which route; without it every route is open. */
  authenticator?: Authenticator;
  now?: () => Date;
}

/**
 * Bodies are validated without coercion (a string is never silently a number); query strings
 * and params are text by nature, so those are coerced.
 */
function createValidators() {
  const strict = createBodyValidator();
  const coercing = new Ajv({ allErrors: true, strict: false, coerceTypes: true, useDefaults: true });
  return { strict, coercing };
}

export function buildApp(options: AppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // Operations log their own lifecycle; a line per request would drown them under load.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    return503OnClosing: true,
    // The longest names a path carries: operation types and resources (128 characters).
    routerOptions: { maxParamLength: 128 },
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    http: serverTimeouts(options.requestTimeoutMs ?? 30_000),
    clientErrorHandler: answerClientError,
    frameworkErrors: answerFrameworkError,
    genReqId: requestIdOf,
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  const validators = createValidators();
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? validators.strict : validators.coercing).compile(schema),
  );
  // JSON only: any other content type is refused with 415 rather than parsed as text.
  app.removeAllContentTypeParsers();
  // A batch's items are checked one by one: an item that holds what opsd refuses fails alone.
  const batchItemProblems = new WeakMap<object, BatchBody['itemProblems']>();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    try {
      if (request.routeOptions.url !== BATCH_ROUTE) return done(null, parseJsonBody(body as string));
      const batch = parseBatchBody(body as string);
      batchItemProblems.set(request, batch.itemProblems);
      done(null, batch.value);
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  app.addHook('preValidation', async (request) => {
    checkStorableStrings(request.params, 'path');
    checkStorableStrings(request.query, 'query');
  });
  installErrorHandling(app);
  if (options.authenticator) registerAuth(app, options.authenticator);
  const { observability } = options;
  if (observability) registerHttpMetrics(app, observability.metrics);
  const admission = options.admission ?? createAdmission();
  registerAdmission(app, { admission, pressure: options.pressure ?? PRESSURE_DEFAULTS, db: options.db });
  registerOpenApi(app, VERSION);
  // In a plugin of their own, after the OpenAPI generator: it describes the routes it sees added.
  void app.register(async (routes) => {
    if (observability) registerObservabilityRoutes(routes, observability);
    registerHealthRoutes(routes, options.db, options.dispatcher);
    registerOperationRoutes(routes, {
      ...options,
      onShed: () => {
        admission.stats.shedBacklog += 1;
      },
      ...(observability ? { onOutcome: (type: string, outcome: Parameters<OpsdMetrics['submission']>[1]) => observability.metrics.submission(type, outcome) } : {}),
      validators,
      batchItemProblems: (request) => batchItemProblems.get(request) ?? new Map(),
      now: options.now ?? (() => new Date()),
    });
    registerAdminRoutes(routes, { ...options, now: options.now ?? (() => new Date()) });
    registerSubscriptionRoutes(routes, { db: options.db, now: options.now ?? (() => new Date()) });
  });
  return app;
}
