import type { Logger } from 'pino';
import { createBodyValidator } from '../api/bodyValidator.js';
import { newOperationSchema } from '../api/schemas.js';
import { createSubmissions } from '../api/submissions.js';
import type { Config } from '../config.js';
import { createInProcessDispatcher } from '../dispatch/dispatcher.js';
import { createNotifyDispatcher } from '../dispatch/notifyDispatcher.js';
import type { RunningService } from '../service.js';
import type { Db } from '../store/db.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { startIntakeServer } from './intakeServer.js';
import { startApiProtection } from '../protect/apiProtection.js';
import { OpsdMetrics } from '../observe/metrics.js';
import { startObservability } from '../observe/startObservability.js';
import { authenticatorFor, describeAuth } from '../auth/startAuth.js';
import { createWebhookReceiver } from '../webhooks/receiveWebhook.js';

/**
 * The intake role: accepts operations and nothing else. With Redis configured it hands what it
 * accepts to the leader by NOTIFY rather than queueing it itself; without Redis, workers poll the
 * store and need no wake-up from another process.
 */
export async function startIntake(options: { config: Config; db: Db; registry: HandlerRegistry; logger: Logger }): Promise<RunningService> {
  const { config, db, registry, logger } = options;
  const dispatcher = config.redisUrl ? createNotifyDispatcher(db) : createInProcessDispatcher(null);
  // Ajv caches compiled schemas: the server's single-submission check and the batch items share one.
  const validator = createBodyValidator();
  const protection = await startApiProtection(config, db, registry, logger);
  const metrics = new OpsdMetrics({ role: 'intake' });
  const observability = await startObservability(metrics, config, { role: 'intake', db, logger, types: registry.types(), dispatcher, admission: protection.admission });
  const submissions = createSubmissions({
    db,
    registry,
    dispatcher,
    logger,
    now: () => new Date(),
    validateItem: validator.compile(newOperationSchema),
    acceptTimeoutMs: config.acceptTimeoutMs,
    backlog: protection.backlog,
    onShed: () => {
      protection.admission.stats.shedBacklog += 1;
    },
    onOutcome: (type, outcome) => metrics.submission(type, outcome),
  });
  logger.info({ role: 'intake', store: db.kind, dispatch: dispatcher.kind, types: registry.types() }, 'store ready');

  const authenticator = authenticatorFor(config, 'intake', db, logger);
  let server: Awaited<ReturnType<typeof startIntakeServer>>;
  try {
    server = await startIntakeServer({
      port: config.port,
      host: config.host,
      db,
      submissions,
      validator,
      logger,
      bodyLimit: config.bodyLimit,
      requestTimeoutMs: config.requestTimeoutMs,
      admission: protection.admission,
      pressure: protection.pressure,
      observability,
      authenticator,
      webhooks: createWebhookReceiver({ db, registry, submissions, now: () => new Date() }),
    });
  } catch (error) {
    await db.close();
    throw error;
  }
  logger.info({ role: 'intake', url: server.url, auth: await describeAuth(authenticator, db) }, 'opsd listening');

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      logger.info({ role: 'intake' }, 'shutting down: no new requests, finishing those under way');
      await server.close();
      protection.stop();
      observability.stop();
      await dispatcher.close();
      await db.close();
      logger.info({ role: 'intake' }, 'stopped');
    })());

  return { role: 'intake', url: server.url, healthUrl: null, app: null, db, worker: null, dispatcher, logger, isLeader: () => false, stop };
}
