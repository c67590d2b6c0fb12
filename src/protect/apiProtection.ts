import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Db } from '../store/db.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { createAdmission } from './admission.js';
import { createBacklogGauge } from './backlogGauge.js';

/**
 * What an api or intake process protects itself with, from its config: admission (requests in
 * flight, the wait for a turn), the saturation thresholds, and the backlogs of the types that cap
 * theirs. Started before the server listens, so a cap holds from the first request.
 */
export async function startApiProtection(config: Config, db: Db, registry: HandlerRegistry, logger: Logger) {
  const admission = createAdmission({ maxInFlight: config.maxInFlight, maxWaitMs: config.admissionWaitMs });
  const backlog = createBacklogGauge({ db, types: registry.types().filter((t) => registry.maxBacklog(t) !== undefined), logger });
  await backlog.start();
  return {
    admission,
    backlog,
    pressure: { maxEventLoopDelayMs: config.maxEventLoopDelayMs, maxPoolWaiting: config.maxPoolWaiting },
    stop: () => backlog.stop(),
  };
}
