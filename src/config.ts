import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/** Everything a process reads from its environment and flags, resolved and checked. */
export interface Config {
  /** `PORT`, default 8080. */
  port: number;
  /** `HOST`, default 127.0.0.1 (use 0.0.0.0 in a container). */
  host: string;
  /** `DATABASE_URL`; unset means embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined;
  /** `OPSD_DATA_DIR`, default ./.opsd (embedded mode only). */
  dataDir: string;
  /** `OPSD_HANDLERS`: module exporting operation definitions. */
  handlersPath: string | undefined;
  /** `LOG_LEVEL`, default info. */
  logLevel: string;
  /** `OPSD_CONCURRENCY`: attempts a worker runs at once, default 10. */
  concurrency: number;
  /** `OPSD_LEASE_MS`: lease length, default 30000. */
  leaseMs: number;
  /** `OPSD_GRACE_MS`: how long shutdown waits for running handlers, default 30000. */
  graceMs: number;
  /** `OPSD_BODY_LIMIT`: largest request body in bytes, default 1048576. */
  bodyLimit: number;
  /** `DB_POOL_MAX`: PostgreSQL pool size, default 10. */
  dbPoolMax: number;
}

/** Flags given on the command line; each overrides its environment variable. */
export type ConfigFlags = Partial<Record<keyof Config, string | number | undefined>>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Resolves flags over environment over defaults; throws one ConfigError naming every problem. */
export function resolveConfig(env: NodeJS.ProcessEnv, flags: ConfigFlags = {}): Config {
  const problems: string[] = [];
  const pick = (key: keyof Config, envName: string): string | undefined => {
    const flag = flags[key];
    if (flag !== undefined && flag !== '') return String(flag);
    const value = env[envName];
    return value === undefined || value === '' ? undefined : value;
  };
  const integer = (key: keyof Config, envName: string, fallback: number, min: number, max: number): number => {
    const raw = pick(key, envName);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || value < min || value > max) {
      problems.push(`${envName} must be an integer from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  };

  const databaseUrl = pick('databaseUrl', 'DATABASE_URL');
  if (databaseUrl !== undefined) {
    let protocol = '';
    try {
      protocol = new URL(databaseUrl).protocol;
    } catch {
      // reported below
    }
    if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
      problems.push(`DATABASE_URL must be a postgres:// URL (got "${databaseUrl.replace(/:[^:@/]*@/, ':***@')}")`);
    }
  }
  const handlersPath = pick('handlersPath', 'OPSD_HANDLERS');
  if (handlersPath !== undefined && !existsSync(resolve(handlersPath))) {
    problems.push(`OPSD_HANDLERS names a file that does not exist: ${resolve(handlersPath)}`);
  }
  const logLevel = pick('logLevel', 'LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);

  const config: Config = {
    port: integer('port', 'PORT', 8080, 0, 65535),
    host: pick('host', 'HOST') ?? '127.0.0.1',
    databaseUrl,
    dataDir: resolve(pick('dataDir', 'OPSD_DATA_DIR') ?? '.opsd'),
    handlersPath,
    logLevel,
    concurrency: integer('concurrency', 'OPSD_CONCURRENCY', 10, 1, 10_000),
    leaseMs: integer('leaseMs', 'OPSD_LEASE_MS', 30_000, 100, 86_400_000),
    graceMs: integer('graceMs', 'OPSD_GRACE_MS', 30_000, 0, 86_400_000),
    bodyLimit: integer('bodyLimit', 'OPSD_BODY_LIMIT', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    dbPoolMax: integer('dbPoolMax', 'DB_POOL_MAX', 10, 1, 1000),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
