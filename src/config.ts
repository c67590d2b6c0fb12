import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { HEALTH_DEFAULTS, type HealthThresholds } from './observe/healthModel.js';
import type { AuthMode } from './auth/scopes.js';
import type { DestinationLimits } from './protect/resourcePolicy.js';

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
  /** `OPSD_POLL_INTERVAL_MS`: longest a worker sleeps between claims when nothing wakes it, default 1000. */
  pollIntervalMs: number;
  /** `OPSD_GRACE_MS`: how long shutdown waits for running handlers, default 30000. */
  graceMs: number;
  /** `OPSD_BODY_LIMIT`: largest request body in bytes, default 1048576. */
  bodyLimit: number;
  /** `OPSD_REQUEST_TIMEOUT_MS`: longest time a whole request may take to arrive (then 408), default 30000. */
  requestTimeoutMs: number;
  /** `OPSD_ACCEPT_TIMEOUT_MS`: longest a submission waits for the store before it is answered 503, default 800. */
  acceptTimeoutMs: number;
  /** `OPSD_MAX_IN_FLIGHT`: requests an api or intake handles at once (health routes apart), default 1024. */
  maxInFlight: number;
  /** `OPSD_ADMISSION_WAIT_MS`: how long a request past that waits for a turn before 429, default 1000. */
  admissionWaitMs: number;
  /** `OPSD_MAX_EVENT_LOOP_DELAY_MS`: event loop delay past which requests get 503, default 1000 (0: never). */
  maxEventLoopDelayMs: number;
  /** `OPSD_MAX_POOL_WAITING`: callers waiting for a store connection past which requests get 503, default 100 (0: never). */
  maxPoolWaiting: number;
  /**
   * When `GET /health` warns (degraded): `OPSD_HEALTH_EVENT_LOOP_WARN_MS` (200),
   * `OPSD_HEALTH_MEMORY_WARN_MB` (1536), `OPSD_HEALTH_POOL_WAITING_WARN` (10), `OPSD_HEALTH_BACKLOG_WARN` (100000).
   */
  health: HealthThresholds;
  /** `DB_POOL_MAX`: PostgreSQL pool size; default per role (intake 5, api 25, worker 15, start 10). */
  dbPoolMax: number | undefined;
  /** `DB_CONNECT_TIMEOUT_MS`: longest wait for a pooled connection before a request gets 503, default 5000. */
  dbConnectTimeoutMs: number;
  /** `DB_STATEMENT_TIMEOUT_MS`: server-side statement timeout, default 30000. */
  dbStatementTimeoutMs: number;
  /** `REDIS_URL`: dispatch through BullMQ when set; in-process otherwise. */
  redisUrl: string | undefined;
  /** `OPSD_REDIS_PREFIX`: prefix of every Redis key, default `opsd`. */
  redisPrefix: string;
  /** `OPSD_HEALTH_PORT`: a worker's health server, default 3002. */
  healthPort: number;
  /** `OPSD_TYPE_CONCURRENCY`: per-type limits, `type=n,type=n`. */
  typeConcurrency: Record<string, number>;
  /** `OPSD_AUTH`: required | auto | off; unset: `required` for api, intake and worker, `auto` for start (see authModeOf). */
  auth: AuthMode | undefined;
  /** `OPSD_METRICS_AUTH`: `required` makes `/metrics` need a key with the read scope; default off. */
  metricsAuth: boolean;
  /** `OPSD_AUTH_MAX_FAILURES`: bad keys one address may send per minute before it gets 429, default 20. */
  authMaxFailures: number;
  /**
   * Limits of webhook deliveries per destination host: `OPSD_WEBHOOK_RATE` (`limit/perMs`, default
   * `50/1000`) and `OPSD_WEBHOOK_BREAKER` (`failures/windowMs/cooldownMs`, default `10/30000/30000`);
   * `off` turns either off.
   */
  webhookDestinations: DestinationLimits;
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

/** `payments.charge=5,pdf.render=2` → `{ 'payments.charge': 5, 'pdf.render': 2 }`. */
function parseTypeConcurrency(raw: string | undefined, problems: string[]): Record<string, number> {
  const limits: Record<string, number> = {};
  if (!raw) return limits;
  for (const part of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const match = /^([^=\s]+)=(\d+)$/.exec(part);
    if (!match || Number(match[2]) < 1) {
      problems.push(`OPSD_TYPE_CONCURRENCY must look like "type=5,other.type=2" (bad part "${part}")`);
      continue;
    }
    limits[match[1] as string] = Number(match[2]);
  }
  return limits;
}

/**
 * `a/b/c` of positive integers, each at most its bound, or `off` (null); the fallback when unset.
 * Anything else is a problem named after `envName` with the form it must have.
 */
function parseSlashed(raw: string | undefined, envName: string, form: string, bounds: readonly number[], fallback: number[], problems: string[]): number[] | null {
  if (raw === undefined) return fallback;
  if (raw.trim() === 'off') return null;
  const parts = raw.trim().split('/');
  const values = parts.map((part) => (/^\d{1,10}$/.test(part) ? Number(part) : NaN));
  if (parts.length !== bounds.length || values.some((value, i) => !(value >= 1 && value <= (bounds[i] as number)))) {
    problems.push(`${envName} must be "${form}" with each a positive integer (at most ${bounds.join(', ')}), or "off" (got "${raw}")`);
    return fallback;
  }
  return values;
}

/** Defaults of `OPSD_WEBHOOK_RATE` and `OPSD_WEBHOOK_BREAKER`: per destination host and port. */
export const WEBHOOK_DESTINATION_DEFAULTS: Required<DestinationLimits> = {
  rate: { limit: 50, perMs: 1000 },
  breaker: { failures: 10, windowMs: 30_000, cooldownMs: 30_000 },
};

function parseWebhookDestinations(rateRaw: string | undefined, breakerRaw: string | undefined, problems: string[]): DestinationLimits {
  const { rate, breaker } = WEBHOOK_DESTINATION_DEFAULTS;
  const DAY_MS = 86_400_000;
  const r = parseSlashed(rateRaw, 'OPSD_WEBHOOK_RATE', 'limit/perMs', [1_000_000, DAY_MS], [rate.limit, rate.perMs], problems);
  const b = parseSlashed(breakerRaw, 'OPSD_WEBHOOK_BREAKER', 'failures/windowMs/cooldownMs', [1_000_000, DAY_MS, DAY_MS], [breaker.failures, breaker.windowMs, breaker.cooldownMs], problems);
  return {
    ...(r ? { rate: { limit: r[0] as number, perMs: r[1] as number } } : {}),
    ...(b ? { breaker: { failures: b[0] as number, windowMs: b[1] as number, cooldownMs: b[2] as number } } : {}),
  };
}

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
  const redisUrl = pick('redisUrl', 'REDIS_URL');
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) {
    problems.push(`REDIS_URL must be a redis:// URL (got "${redisUrl.replace(/:[^:@/]*@/, ':***@')}")`);
  }
  const handlersPath = pick('handlersPath', 'OPSD_HANDLERS');
  if (handlersPath !== undefined && !existsSync(resolve(handlersPath))) {
    problems.push(`OPSD_HANDLERS names a file that does not exist: ${resolve(handlersPath)}`);
  }
  const auth = pick('auth', 'OPSD_AUTH');
  if (auth !== undefined && !['required', 'auto', 'off'].includes(auth)) problems.push(`OPSD_AUTH must be required, auto or off (got "${auth}")`);
  const metricsAuth = pick('metricsAuth', 'OPSD_METRICS_AUTH') ?? 'off';
  if (!['required', 'off'].includes(metricsAuth)) problems.push(`OPSD_METRICS_AUTH must be required or off (got "${metricsAuth}")`);
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
    pollIntervalMs: integer('pollIntervalMs', 'OPSD_POLL_INTERVAL_MS', 1000, 10, 3_600_000),
    graceMs: integer('graceMs', 'OPSD_GRACE_MS', 30_000, 0, 86_400_000),
    bodyLimit: integer('bodyLimit', 'OPSD_BODY_LIMIT', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    requestTimeoutMs: integer('requestTimeoutMs', 'OPSD_REQUEST_TIMEOUT_MS', 30_000, 1000, 3_600_000),
    health: {
      eventLoopWarnMs: integer('health', 'OPSD_HEALTH_EVENT_LOOP_WARN_MS', HEALTH_DEFAULTS.eventLoopWarnMs, 1, 600_000),
      memoryWarnMb: integer('health', 'OPSD_HEALTH_MEMORY_WARN_MB', HEALTH_DEFAULTS.memoryWarnMb, 1, 1_000_000),
      poolWaitingWarn: integer('health', 'OPSD_HEALTH_POOL_WAITING_WARN', HEALTH_DEFAULTS.poolWaitingWarn, 0, 1_000_000),
      backlogWarn: integer('health', 'OPSD_HEALTH_BACKLOG_WARN', HEALTH_DEFAULTS.backlogWarn, 0, 1_000_000_000),
    },
    maxInFlight: integer('maxInFlight', 'OPSD_MAX_IN_FLIGHT', 1024, 1, 1_000_000),
    admissionWaitMs: integer('admissionWaitMs', 'OPSD_ADMISSION_WAIT_MS', 1000, 0, 600_000),
    maxEventLoopDelayMs: integer('maxEventLoopDelayMs', 'OPSD_MAX_EVENT_LOOP_DELAY_MS', 1000, 0, 600_000),
    maxPoolWaiting: integer('maxPoolWaiting', 'OPSD_MAX_POOL_WAITING', 100, 0, 1_000_000),
    acceptTimeoutMs: integer('acceptTimeoutMs', 'OPSD_ACCEPT_TIMEOUT_MS', 800, 50, 600_000),
    dbPoolMax: pick('dbPoolMax', 'DB_POOL_MAX') === undefined ? undefined : integer('dbPoolMax', 'DB_POOL_MAX', 10, 1, 1000),
    dbConnectTimeoutMs: integer('dbConnectTimeoutMs', 'DB_CONNECT_TIMEOUT_MS', 5000, 100, 600_000),
    dbStatementTimeoutMs: integer('dbStatementTimeoutMs', 'DB_STATEMENT_TIMEOUT_MS', 30_000, 100, 86_400_000),
    redisUrl,
    redisPrefix: pick('redisPrefix', 'OPSD_REDIS_PREFIX') ?? 'opsd',
    healthPort: integer('healthPort', 'OPSD_HEALTH_PORT', 3002, 0, 65535),
    typeConcurrency: parseTypeConcurrency(pick('typeConcurrency', 'OPSD_TYPE_CONCURRENCY'), problems),
    auth: auth as AuthMode | undefined,
    metricsAuth: metricsAuth === 'required',
    authMaxFailures: integer('authMaxFailures', 'OPSD_AUTH_MAX_FAILURES', 20, 1, 1_000_000),
    webhookDestinations: parseWebhookDestinations(pick('webhookDestinations', 'OPSD_WEBHOOK_RATE'), pick('webhookDestinations', 'OPSD_WEBHOOK_BREAKER'), problems),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
