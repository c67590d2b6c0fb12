#!/usr/bin/env node
import { Command, Option } from 'commander';
import { ConfigError, resolveConfig, type ConfigFlags } from '../config.js';
import { migrate } from '../store/migrate.js';
import { openDb } from '../store/openDb.js';
import { createLogger, startService } from '../service.js';

const program = new Command('opsd')
  .description('Operations processing service: accepts operations at once, records every change, processes them in the background.')
  .showHelpAfterError();

const storeOptions = (command: Command) =>
  command
    .addOption(new Option('--database-url <url>', 'PostgreSQL server; embedded PGlite when unset').env('DATABASE_URL'))
    .addOption(new Option('--data-dir <dir>', 'embedded data folder').env('OPSD_DATA_DIR').default('./.opsd'));

storeOptions(
  program
    .command('start')
    .description('run everything in one process: API, worker and lease rescuer')
    .addOption(new Option('-p, --port <port>', 'HTTP port').env('PORT').default('8080'))
    .addOption(new Option('--host <host>', 'HTTP bind address').env('HOST').default('127.0.0.1'))
    .addOption(new Option('--handlers <path>', 'module exporting operation definitions').env('OPSD_HANDLERS'))
    .addOption(new Option('--concurrency <n>', 'attempts run at once').env('OPSD_CONCURRENCY').default('10'))
    .addOption(new Option('--grace-ms <ms>', 'shutdown grace period for running handlers').env('OPSD_GRACE_MS').default('30000'))
    .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent').env('LOG_LEVEL').default('info')),
).action(async (options: Record<string, string | undefined>) => {
  const config = resolveConfig(process.env, {
    port: options.port,
    host: options.host,
    databaseUrl: options.databaseUrl,
    dataDir: options.dataDir,
    handlersPath: options.handlers,
    concurrency: options.concurrency,
    graceMs: options.graceMs,
    logLevel: options.logLevel,
  } satisfies ConfigFlags);
  const logger = createLogger(config.logLevel);
  const service = await startService(config, logger);
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
});

storeOptions(program.command('migrate').description('apply pending database migrations and exit')).action(
  async (options: Record<string, string | undefined>) => {
    const config = resolveConfig(process.env, { databaseUrl: options.databaseUrl, dataDir: options.dataDir });
    const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolMax: 1, migrate: false });
    try {
      const applied = await migrate(db);
      console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'up to date');
    } finally {
      await db.close();
    }
  },
);

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    console.error(`opsd: ${error.message}`);
    process.exit(2);
  }
  console.error(`opsd: ${(error as Error).message ?? String(error)}`);
  process.exit(1);
});
