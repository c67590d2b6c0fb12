#!/usr/bin/env node
import cluster from 'node:cluster';
import { Command, Option } from 'commander';
import { ConfigError, resolveConfig, type ConfigFlags } from '../config.js';
import type { Role } from '../service.js';

const program = new Command('opsd')
  .description('Operations processing service: accepts operations at once, records every change, processes them in the background.')
  .showHelpAfterError();

const storeOptions = (command: Command) =>
  command
    .addOption(new Option('--database-url <url>', 'PostgreSQL server; embedded PGlite when unset').env('DATABASE_URL'))
    .addOption(new Option('--data-dir <dir>', 'embedded data folder').env('OPSD_DATA_DIR').default('./.opsd'));

const processOptions = (command: Command) =>
  storeOptions(command)
    .addOption(new Option('--redis-url <url>', 'Redis for BullMQ dispatch; in-process dispatch when unset').env('REDIS_URL'))
    .addOption(new Option('--handlers <path>', 'module exporting operation definitions').env('OPSD_HANDLERS'))
    .addOption(new Option('--grace-ms <ms>', 'shutdown grace period for running handlers').env('OPSD_GRACE_MS').default('30000'))
    .addOption(new Option('--pool-max <n>', 'PostgreSQL pool size (default per role: intake 5, api 25, worker 15, start 10)').env('DB_POOL_MAX'))
    .addOption(new Option('--cluster <n>', 'fork n processes of this role (node:cluster), respawned when they die'))
    .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent').env('LOG_LEVEL').default('info'));

const httpOptions = (command: Command, port: string) =>
  command
    .addOption(new Option('-p, --port <port>', 'HTTP port').env('PORT').default(port))
    .addOption(new Option('--host <host>', 'HTTP bind address').env('HOST').default('127.0.0.1'));

const workerOptions = (command: Command) =>
  command
    .addOption(new Option('--concurrency <n>', 'attempts run at once, all types together').env('OPSD_CONCURRENCY').default('10'))
    .addOption(new Option('--type-concurrency <limits>', 'per-type caps across every worker process, e.g. "payments.charge=5,pdf.render=2"').env('OPSD_TYPE_CONCURRENCY'));

type Options = Record<string, string | undefined>;

function flagsOf(options: Options): ConfigFlags {
  return {
    port: options.port,
    host: options.host,
    databaseUrl: options.databaseUrl,
    dataDir: options.dataDir,
    redisUrl: options.redisUrl,
    handlersPath: options.handlers,
    concurrency: options.concurrency,
    typeConcurrency: options.typeConcurrency,
    graceMs: options.graceMs,
    dbPoolMax: options.poolMax,
    healthPort: options.healthPort,
    logLevel: options.logLevel,
  };
}

async function runRole(role: Role, options: Options): Promise<void> {
  const config = resolveConfig(process.env, flagsOf(options));
  const { createLogger, startRole } = await import('../service.js');
  const logger = createLogger(config.logLevel);
  if (options.cluster !== undefined && cluster.isPrimary) {
    const size = Number(options.cluster);
    if (!Number.isInteger(size) || size < 1 || size > 256) throw new ConfigError([`--cluster must be an integer from 1 to 256 (got "${options.cluster}")`]);
    const { superviseCluster } = await import('../cluster/supervisor.js');
    superviseCluster({ size, logger, graceMs: config.graceMs });
    return;
  }
  const service = await startRole(role, config, logger);
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(130);
    }
    logger.info({ signal }, 'signal received');
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

workerOptions(httpOptions(processOptions(program.command('start')), '8080'))
  .description('run everything in one process: API, worker, lease rescuer (and reconciler with Redis)')
  .action((options: Options) => runRole('start', options));

httpOptions(processOptions(program.command('api')), '8080')
  .description('serve the HTTP API (submit, query, cancel, retry); needs DATABASE_URL')
  .action((options: Options) => runRole('api', options));

httpOptions(processOptions(program.command('intake')), '8081')
  .description('accept operations only: a lean process for the submission path; needs DATABASE_URL')
  .action((options: Options) => runRole('intake', options));

workerOptions(processOptions(program.command('worker')))
  .description('claim and run operations; needs DATABASE_URL (and REDIS_URL for queue dispatch)')
  .addOption(new Option('--health-port <port>', 'health and stats server').env('OPSD_HEALTH_PORT').default('3002'))
  .addOption(new Option('--host <host>', 'health server bind address').env('HOST').default('127.0.0.1'))
  .action((options: Options) => runRole('worker', options));

/**
 * Runs `work` on the store the options name, on one connection, and closes it. Migrated first
 * unless `migrate` is false (a key can be made before anything runs).
 */
async function withStore<T>(options: Options, work: (db: import('../store/db.js').Db) => Promise<T>, { migrate = true } = {}): Promise<T> {
  const config = resolveConfig(process.env, flagsOf(options));
  const { openDb } = await import('../store/openDb.js');
  const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolMax: 1, migrate });
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}

storeOptions(program.command('migrate'))
  .description('apply pending database migrations and exit')
  .action(async (options: Options) => {
    const { migrate } = await import('../store/migrate.js');
    const applied = await withStore(options, (db) => migrate(db), { migrate: false });
    console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'up to date');
  });

const keys = program.command('keys').description('API keys: create, list, revoke (only a hash of each key is stored)');

storeOptions(keys.command('create'))
  .description('create a key and print it once')
  .requiredOption('--scopes <list>', 'comma-separated: submit, read, admin')
  .option('--name <name>', 'what the key is for', 'unnamed')
  .action(async (options: Options) => {
    const { parseScopes } = await import('../auth/scopes.js');
    let scopes;
    try {
      scopes = parseScopes(options.scopes ?? '');
    } catch (error) {
      throw new ConfigError([(error as Error).message]);
    }
    const { generateApiKey, secretDigest } = await import('../auth/apiKey.js');
    const { insertApiKey } = await import('../store/apiKeys.js');
    const key = generateApiKey();
    const record = await withStore(options, (db) => insertApiKey(db, { id: key.id, name: options.name ?? 'unnamed', secretSha256: secretDigest(key.secret), scopes }, new Date()));
    console.log(key.token);
    console.error(`created key ${record.id} (${record.name}) with scopes ${record.scopes.join(',')}; it is shown only now, keep it safe`);
  });

storeOptions(keys.command('list'))
  .description('list keys (ids, names, scopes; never the keys themselves)')
  .action(async (options: Options) => {
    const { listApiKeys } = await import('../store/apiKeys.js');
    const records = await withStore(options, (db) => listApiKeys(db));
    for (const r of records) console.log([r.id, r.name, r.scopes.join(','), r.createdAt, r.revokedAt ? `revoked ${r.revokedAt}` : 'active'].join('\t'));
  });

storeOptions(keys.command('revoke'))
  .description('revoke a key by id; every process refuses it within 5 s')
  .argument('<id>', 'the id `opsd keys list` shows (the part after opsd_)')
  .action(async (id: string, options: Options) => {
    const { revokeApiKey } = await import('../store/apiKeys.js');
    const revoked = await withStore(options, (db) => revokeApiKey(db, id, new Date()));
    if (!revoked) {
      console.error(`opsd: no active key ${id}`);
      process.exitCode = 1;
      return;
    }
    console.log(`revoked ${id}`);
  });

program
  .command('doctor')
  .description('print the PostgreSQL connections a deployment would open against the server limit, and long transactions that slow its claims')
  .addOption(new Option('--database-url <url>', 'the PostgreSQL server').env('DATABASE_URL'))
  .option('--api <n>', 'api processes', '0')
  .option('--worker <n>', 'worker processes', '0')
  .option('--intake <n>', 'intake processes', '0')
  .option('--cluster <n>', 'processes each of those forks with --cluster', '1')
  .addOption(new Option('--pool-max <n>', 'DB_POOL_MAX, if set in the deployment').env('DB_POOL_MAX'))
  .option('--max-transaction-age <seconds>', 'list transactions older than this that hold back the cleanup of the tables', '60')
  .action(async (options: Options) => {
    const config = resolveConfig(process.env, { databaseUrl: options.databaseUrl, dbPoolMax: options.poolMax });
    if (!config.databaseUrl) throw new ConfigError(['doctor reads max_connections from the server: set DATABASE_URL or --database-url']);
    const counts: Record<string, number> = {};
    const problems: string[] = [];
    for (const name of ['api', 'worker', 'intake', 'cluster']) {
      const value = Number(options[name]);
      if (!Number.isInteger(value) || value < 0 || (name === 'cluster' && value < 1)) problems.push(`--${name} must be a whole number (got "${options[name]}")`);
      counts[name] = value;
    }
    const maxTransactionAge = /^\d{1,10}(\.\d{1,3})?$/.test(options.maxTransactionAge ?? '') ? Number(options.maxTransactionAge) : Number.NaN;
    if (!(maxTransactionAge <= 1e9)) {
      problems.push(`--max-transaction-age must be a number of seconds from 0 to 1000000000 (got "${options.maxTransactionAge}")`);
    }
    if (problems.length > 0) throw new ConfigError(problems);
    const { runDoctor } = await import('./doctor.js');
    const code = await runDoctor(
      config.databaseUrl,
      { api: counts.api ?? 0, worker: counts.worker ?? 0, intake: counts.intake ?? 0, cluster: counts.cluster ?? 1, poolMax: config.dbPoolMax, queue: config.redisUrl !== undefined, maxTransactionAge },
      (line) => console.log(line),
    );
    process.exitCode = code;
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    console.error(`opsd: ${error.message}`);
    process.exit(2);
  }
  console.error(`opsd: ${(error as Error).message ?? String(error)}`);
  process.exit(1);
});
