import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { Config } from './config.js';
import { createInProcessDispatcher, fanOutDispatcher, type Dispatcher } from './dispatch/dispatcher.js';
import { createNotifyDispatcher, decodeDispatchNotice, DISPATCH_CHANNEL } from './dispatch/notifyDispatcher.js';
import { createReconciler } from './dispatch/reconciler.js';
import { createOutboxRelay } from './webhooks/outboxRelay.js';
import { registerWebhookDeliveries } from './webhooks/deliveryDestinations.js';
import { runPeriodically, type CountingDuty, type Duty } from './lib/periodic.js';
import { startApiProtection } from './protect/apiProtection.js';
import { createProtectionCleaner } from './protect/protectionCleaner.js';
import { SECRET_PATHS } from './lib/logRedaction.js';
import { OpsdMetrics } from './observe/metrics.js';
import { startObservability, type Observability } from './observe/startObservability.js';
import type { Db } from './store/db.js';
import { findOtherLeaseHolders } from './store/findOtherLeaseHolders.js';
import { openDb } from './store/openDb.js';
import { waitForStore } from './store/waitForStore.js';
import { startHealthServer } from './worker/healthServer.js';
import { authenticatorFor, describeAuth } from './auth/startAuth.js';
import { createHeadMarker } from './worker/headMarker.js';
import { createLeaseRescuer } from './worker/leaseRescuer.js';
import { createTableUpkeeper } from './worker/tableUpkeeper.js';
import { createEstimateKeeper } from './worker/estimateKeeper.js';
import { loadHandlers } from './worker/loadHandlers.js';
import { Worker } from './worker/worker.js';

/** What a process does: everything (`start`), or one part of a scaled-out deployment. */
export type Role = 'start' | 'api' | 'worker' | 'intake';

/** PostgreSQL pool size per role when `DB_POOL_MAX` is unset. */
export const POOL_DEFAULTS: Record<Role, number> = { intake: 5, api: 25, worker: 15, start: 10 };

/** A running opsd process. */
export interface RunningService {
  role: Role;
  /** Base URL of the HTTP API (api, intake, start). */
  url: string | null;
  /** Base URL of the worker health server (worker). */
  healthUrl: string | null;
  app: FastifyInstance | null;
  db: Db;
  worker: Worker | null;
  dispatcher: Dispatcher;
  logger: Logger;
  isLeader(): boolean;
  /** Stops accepting, drains workers within the grace period, closes the store. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'opsd', pid: process.pid }, redact: [...SECRET_PATHS] });
}

/** BullMQ dispatch when Redis is configured; loaded only then. */
async function createQueueDispatcher(redisUrl: string, prefix: string): Promise<Dispatcher> {
  const { createBullmqDispatcher } = await import('./dispatch/bullmqDispatcher.js');
  return createBullmqDispatcher({ redisUrl, prefix });
}

/**
 * Runs the cluster-wide duties (lease rescuer; reconciler when dispatch goes through Redis) while
 * this process is the leader. Embedded PGlite has one process, which is always the leader.
 */
async function startLeaderDuties(config: Config, db: Db, dispatcher: Dispatcher, logger: Logger, worker: Worker | null, metrics: OpsdMetrics) {
  let stopDuties: (() => Promise<void>) | null = null;
  // Loaded only with a server (it loads pg, which embedded processes never need).
  const liveness = config.databaseUrl ? await import('./cluster/workerLiveness.js') : null;
  const start = () => {
    const rescuer = createLeaseRescuer({
      db,
      logger,
      // In-process dispatch wakes the local worker; through Redis, any worker.
      onRescued: (operations) => {
        metrics.repairs.inc({ duty: 'lease_rescuer' }, operations.length);
        return dispatcher.dispatch(operations);
      },
      ...(liveness
        ? { ownersWithoutLiveness: () => liveness.findOwnersWithoutLiveness(db) }
        : // Embedded: the data folder is locked to this process, so any other holder is a dead predecessor.
          { ownersWithoutLiveness: () => findOtherLeaseHolders(db, worker?.id ?? ''), ownerGoneAfterMs: 0 }),
    });
    // Twice a second: a dead worker's operations should run again within a few seconds.
    const rescuerInterval = Math.max(250, Math.min(500, Math.floor(config.leaseMs / 2)));
    // A new leader rescues at once: the one before it may have died with work waiting for rescue.
    const stops = [
      runPeriodically(rescuer, rescuerInterval, logger, { firstAtOnce: true }),
      runPeriodically(createProtectionCleaner({ db }), 60_000, logger),
      // Every 2 s, up to 4,000 keys: a head whose mark is missing waits at most a few passes.
      runPeriodically(countedRepairs(createHeadMarker({ db, logger }), 'head_marker', metrics), 2000, logger),
      // Four times a second: a subscriber hears of an outcome within about a quarter second.
      runPeriodically(createOutboxRelay({ db, dispatcher, logger }), 250, logger),
    ];
    // The embedded store has no autovacuum: without this, dead row versions pile up for as long as it lives.
    if (db.kind === 'pglite') stops.push(runPeriodically(createTableUpkeeper({ db, logger }), 5000, logger));
    // Autovacuum analyzes a table once a tenth of it changed, and a new one within a minute or so: meanwhile a burst, or the table's own growth, stays unknown to the planner.
    if (db.kind === 'postgres') stops.push(runPeriodically(countedRepairs(createEstimateKeeper({ db, logger }), 'estimate_keeper', metrics), 5000, logger));
    if (dispatcher.kind === 'bullmq') {
      const reconciler = createReconciler({ db, dispatcher, logger });
      stops.push(runPeriodically(countedRepairs(reconciler, 'reconciler', metrics), 2000, logger));
    }
    stopDuties = async () => {
      await Promise.all(stops.map((stop) => stop()));
    };
  };
  const stop = async () => {
    const current = stopDuties;
    stopDuties = null;
    await current?.();
  };
  if (!config.databaseUrl) {
    start();
    return { isLeader: () => true, stop };
  }
  const { campaignForLeadership } = await import('./cluster/leaderElection.js');
  // Intake processes hand what they accept to the leader by NOTIFY; the leader queues it.
  const relayNotices = {
    channel: DISPATCH_CHANNEL,
    onNotice: (payload: string) => {
      dispatcher.dispatch(decodeDispatchNotice(payload)).catch((error: unknown) => {
        logger.warn({ err: error }, 'relaying operations from an intake failed; the reconciler will pick them up');
      });
    },
  };
  const leadership = campaignForLeadership({
    databaseUrl: config.databaseUrl,
    logger,
    ...(dispatcher.kind === 'bullmq' ? { listen: relayNotices } : {}),
    onElected: start,
    onDeposed: stop,
  });
  return {
    isLeader: leadership.isLeader,
    stop: async () => {
      await leadership.stop();
      await stop();
    },
  };
}

/** Starts one role of opsd on one store. */
export async function startRole(role: Role, config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningService> {
  if (role !== 'start' && !config.databaseUrl) {
    throw new Error(`opsd ${role} runs beside other processes and needs a PostgreSQL server: set DATABASE_URL (or use \`opsd start\` for the embedded store)`);
  }
  const registry = await loadHandlers(config.handlersPath);
  const db = await openDb({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolMax: config.dbPoolMax ?? POOL_DEFAULTS[role],
    connectTimeoutMs: config.dbConnectTimeoutMs,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    applicationName: `opsd-${role}`,
    migrate: false,
  });
  if (role === 'intake') {
    await waitForStore(db, logger);
    // Loaded apart so that the intake never loads Fastify, BullMQ or the worker.
    const { startIntake } = await import('./intake/startIntake.js');
    return startIntake({ config, db, registry, logger });
  }
  const runsWorker = role === 'start' || role === 'worker';
  // The api knows deliveries too: its admin views show them and their destinations.
  registerWebhookDeliveries(registry, db, config.webhookDestinations);
  const servesApi = role !== 'worker';
  const closers: (() => Promise<void>)[] = [];
  let draining = false;

  const metrics = new OpsdMetrics({ role });
  const typeConcurrency = { ...registry.typeConcurrency(), ...config.typeConcurrency };
  // What reaches worker processes other than this one: BullMQ jobs, or NOTIFY on PostgreSQL alone.
  const remote = config.redisUrl ? await createQueueDispatcher(config.redisUrl, config.redisPrefix) : config.databaseUrl ? createNotifyDispatcher(db) : null;
  const worker = runsWorker
    ? new Worker({
        db,
        registry,
        logger,
        concurrency: config.concurrency,
        typeConcurrency,
        leaseMs: config.leaseMs,
        pollIntervalMs: config.pollIntervalMs,
        observer: metrics.workerObserver(),
        ...(remote ? { announceTo: remote } : {}),
      })
    : null;
  // Accepted and rescued operations wake the worker of this process at once, and the others through `remote`.
  const local = createInProcessDispatcher(worker);
  const dispatcher = remote ? (worker ? fanOutDispatcher(remote.kind, [local, remote]) : remote) : local;

  // A worker's health port is up before the store is: it says "not ready" while it waits.
  let duties: Awaited<ReturnType<typeof startLeaderDuties>> | null = null;
  let observability: Observability | undefined;
  let healthUrl: string | null = null;
  const authenticator = authenticatorFor(config, role, db, logger);
  if (worker && role === 'worker') {
    const health = await startHealthServer({
      port: config.healthPort,
      host: config.host,
      worker,
      db,
      isLeader: () => duties?.isLeader() ?? false,
      isDraining: () => draining,
      queueDepth: () => queueDepth(db),
      dispatchHealth: () => dispatcher.health(),
      observability: () => observability,
      authenticator,
    });
    healthUrl = health.url;
    closers.push(health.close);
    logger.info({ health_url: healthUrl }, 'health server listening');
  }
  await waitForStore(db, logger);
  logger.info({ role, store: db.kind, dispatch: dispatcher.kind, types: registry.types() }, 'store ready');

  duties = await startLeaderDuties(config, db, dispatcher, logger, worker, metrics);
  const leadership = duties;
  const protection = servesApi ? await startApiProtection(config, db, registry, logger) : null;
  if (protection) closers.push(async () => protection.stop());
  observability = await startObservability(metrics, config, {
    role,
    db,
    logger,
    types: registry.types(),
    worker,
    isLeader: leadership.isLeader,
    dispatcher,
    ...(protection ? { admission: protection.admission } : {}),
  });
  const observed = observability;
  closers.push(async () => observed.stop());
  const liveness =
    worker && config.databaseUrl
      ? (await import('./cluster/workerLiveness.js')).holdWorkerLiveness({ databaseUrl: config.databaseUrl, workerId: worker.id, logger })
      : null;

  // What feeds the worker wake-ups from other processes: queue jobs, or NOTIFY on PostgreSQL alone.
  let feeder: { close(): Promise<void> } | null = null;
  if (worker) {
    worker.start();
    if (!config.redisUrl && config.databaseUrl) {
      const { listenForDispatch } = await import('./dispatch/noticeListener.js');
      feeder = listenForDispatch({ databaseUrl: config.databaseUrl, worker, logger });
    } else if (config.redisUrl) {
      const { startJobFeeder } = await import('./dispatch/jobFeeder.js');
      feeder = startJobFeeder({
        worker,
        types: registry.types(),
        redisUrl: config.redisUrl,
        prefix: config.redisPrefix,
        logger,
      });
    }
  }

  let app: FastifyInstance | null = null;
  let url: string | null = null;
  let stopping: Promise<void> | null = null;
  const stop = (graceMs = config.graceMs) =>
    (stopping ??= (async () => {
      draining = true;
      logger.info({ role, grace_ms: graceMs }, 'shutting down: no new requests, draining running attempts');
      await app?.close();
      await Promise.all([feeder?.close(), worker?.stop(graceMs)]);
      // Only now: while handlers finish, their leases must not look orphaned.
      await liveness?.stop();
      await leadership.stop();
      for (const close of closers) await close();
      await dispatcher.close();
      await db.close();
      logger.info({ role, ...(worker?.stats ?? {}) }, 'stopped');
    })());

  if (servesApi) {
    const { buildApp } = await import('./api/app.js');
    app = buildApp({
      db,
      registry,
      dispatcher,
      logger,
      bodyLimit: config.bodyLimit,
      requestTimeoutMs: config.requestTimeoutMs,
      acceptTimeoutMs: config.acceptTimeoutMs,
      observability,
      authenticator,
      ...(protection ? { admission: protection.admission, backlog: protection.backlog, pressure: protection.pressure } : {}),
    });
    try {
      url = await app.listen({ port: config.port, host: config.host });
    } catch (error) {
      // A taken port must not leave a worker, a leader campaign and pools running behind the error.
      await stop(0);
      throw error;
    }
  }
  logger.info({ role, url, health_url: healthUrl, concurrency: runsWorker ? config.concurrency : undefined, auth: await describeAuth(authenticator, db) }, 'opsd listening');

  return { role, url, healthUrl, app, db, worker, dispatcher, logger, isLeader: duties.isLeader, stop };
}

/** Operations waiting to run (PENDING), as the store sees them. */
async function queueDepth(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: string | number }>(`SELECT count(*) AS n FROM operations WHERE state = 'PENDING'`);
  return Number(rows[0]?.n ?? 0);
}

/** Everything in one process: API, worker and lease rescuer, on one store. */
export function startService(config: Config, logger?: Logger): Promise<RunningService> {
  return startRole('start', config, logger);
}

/** A duty whose passes count what they repaired in `opsd_repairs_total`. */
function countedRepairs(duty: CountingDuty, label: string, metrics: OpsdMetrics): Duty {
  return {
    name: duty.name,
    runOnce: async () => {
      const repaired = await duty.runOnce();
      metrics.repairs.inc({ duty: label }, repaired);
      return repaired;
    },
  };
}
