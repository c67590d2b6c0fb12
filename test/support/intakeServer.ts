import { createBodyValidator } from '../../src/api/bodyValidator.js';
import { newOperationSchema } from '../../src/api/schemas.js';
import { createSubmissions } from '../../src/api/submissions.js';
import { createInProcessDispatcher } from '../../src/dispatch/dispatcher.js';
import { startIntakeServer, type IntakeServer } from '../../src/intake/intakeServer.js';
import type { Db } from '../../src/store/db.js';
import type { HandlerRegistry } from '../../src/worker/handlerRegistry.js';
import { testLogger } from './helpers.js';

/** The intake's HTTP server on a free port of 127.0.0.1, wired as `opsd intake` wires it, without a dispatcher. */
export function startTestIntake(
  db: Db,
  registry: HandlerRegistry,
  { acceptTimeoutMs, ...limits }: { bodyLimit: number; requestTimeoutMs?: number; acceptTimeoutMs?: number },
): Promise<IntakeServer> {
  const validator = createBodyValidator();
  const submissions = createSubmissions({
    db,
    registry,
    dispatcher: createInProcessDispatcher(null),
    logger: testLogger(),
    now: () => new Date(),
    validateItem: validator.compile(newOperationSchema),
    ...(acceptTimeoutMs !== undefined ? { acceptTimeoutMs } : {}),
  });
  return startIntakeServer({ port: 0, host: '127.0.0.1', db, submissions, validator, logger: testLogger(), ...limits });
}
