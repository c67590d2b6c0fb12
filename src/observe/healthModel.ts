/** One check's verdict, in the shape of the IETF health check draft (snake_case like the rest of the API). */
export interface HealthCheck {
  status: 'pass' | 'warn' | 'fail';
  observed_value: number | string | boolean | null;
  observed_unit: string;
  output?: string;
}

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

/** When a check warns; every value has a default (see HEALTH_DEFAULTS) and a setting. */
export interface HealthThresholds {
  /** The event loop's longest delay over the last 10 s, in ms, past which it warns. */
  eventLoopWarnMs: number;
  /** Resident memory, in MiB, past which it warns. */
  memoryWarnMb: number;
  /** Callers waiting for a store connection, past which it warns. */
  poolWaitingWarn: number;
  /** Due PENDING operations, past which the dispatch check warns. */
  backlogWarn: number;
}

export const HEALTH_DEFAULTS: HealthThresholds = { eventLoopWarnMs: 200, memoryWarnMb: 1536, poolWaitingWarn: 10, backlogWarn: 100_000 };

/** What a process observed of itself; a part it does not have is left out. */
export interface HealthObservations {
  eventLoopMaxMs: number;
  rssMb: number;
  /** The store's answer to a ping, or why it did not answer. */
  store: { ok: true; ms: number } | { ok: false; reason: string };
  pool?: { waiting: number; total: number; max: number };
  /** Wake-ups (queue or NOTIFY) and the due backlog, for processes that dispatch or claim. */
  dispatch?: { ok: boolean; reason?: string; due: number | null };
  /** Whether some process leads (null: not known, as on the embedded store, where this one always does). */
  leaderPresent?: boolean | null;
}

/**
 * The checks and the overall status: `unhealthy` when the store does not answer (the process can
 * do nothing useful), `degraded` when anything else warns (it works, slower or with less margin),
 * `healthy` otherwise.
 */
export function evaluateHealth(observed: HealthObservations, thresholds: HealthThresholds): { status: HealthStatus; checks: Record<string, HealthCheck> } {
  const checks: Record<string, HealthCheck> = {};
  const warnIf = (bad: boolean, output: string) => (bad ? { status: 'warn' as const, output } : { status: 'pass' as const });

  checks.event_loop = {
    observed_value: Math.round(observed.eventLoopMaxMs),
    observed_unit: 'ms',
    ...warnIf(observed.eventLoopMaxMs > thresholds.eventLoopWarnMs, `the event loop lagged up to ${Math.round(observed.eventLoopMaxMs)} ms in the last 10 s (warns past ${thresholds.eventLoopWarnMs} ms)`),
  };
  checks.memory = {
    observed_value: Math.round(observed.rssMb),
    observed_unit: 'MiB',
    ...warnIf(observed.rssMb > thresholds.memoryWarnMb, `resident memory is ${Math.round(observed.rssMb)} MiB (warns past ${thresholds.memoryWarnMb} MiB)`),
  };
  checks.store = observed.store.ok
    ? { status: 'pass', observed_value: Math.round(observed.store.ms), observed_unit: 'ms' }
    : { status: 'fail', observed_value: null, observed_unit: 'ms', output: observed.store.reason };
  if (observed.pool) {
    const { waiting, total, max } = observed.pool;
    checks.store_pool = {
      observed_value: waiting,
      observed_unit: 'waiting callers',
      ...warnIf(waiting > thresholds.poolWaitingWarn, `${waiting} callers wait for one of ${total}/${max} connections (warns past ${thresholds.poolWaitingWarn})`),
    };
  }
  if (observed.dispatch) {
    const { ok, reason, due } = observed.dispatch;
    const backlogHigh = due !== null && due > thresholds.backlogWarn;
    checks.dispatch = {
      observed_value: due,
      observed_unit: 'due operations',
      ...(ok ? warnIf(backlogHigh, `${due} operations are due and waiting (warns past ${thresholds.backlogWarn})`) : { status: 'warn', output: reason ?? 'wake-ups are failing; workers find work by polling' }),
    };
  }
  if (observed.leaderPresent !== undefined) {
    checks.leader = {
      observed_value: observed.leaderPresent,
      observed_unit: 'leader present',
      ...warnIf(observed.leaderPresent === false, 'no process leads: dead workers are not rescued and forgotten work is not woken until one does'),
    };
  }
  const statuses = Object.values(checks).map((c) => c.status);
  const status: HealthStatus = statuses.includes('fail') ? 'unhealthy' : statuses.includes('warn') ? 'degraded' : 'healthy';
  return { status, checks };
}
