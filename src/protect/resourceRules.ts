import type { BreakerPolicy, RateLimit, ResourceDefinition } from './resourcePolicy.js';

/**
 * When attempts on a resource may start, and how what happens to them changes that: pure
 * functions of the shared state the store keeps per resource, with times in ms since the epoch.
 */

export type BreakerPhase = 'closed' | 'open' | 'half_open';

export interface BreakerState {
  phase: BreakerPhase;
  /** When it entered its phase (null: closed since the resource was first used). */
  since: number | null;
  /** Failures still inside the window, oldest first (closed only). */
  failures: number[];
  /** The one attempt let through while half-open, and until when it counts as out. */
  probe: { operationId: string; until: number } | null;
}

/** What the store keeps about a resource, shared by every process. */
export interface ResourceState {
  /** Recent starts, oldest first; at most the rate's limit of them. */
  starts: number[];
  /** Paused by an operator, until resumed. */
  paused: boolean;
  /** Paused until then by an upstream's Retry-After. */
  pausedUntil: number | null;
  breaker: BreakerState;
  /** Upstream answers that asked to wait (429, or 503 with Retry-After), since the resource was first used. */
  throttled: number;
  /** Times such an answer started or lengthened a pause. */
  pauses: number;
}

export const INITIAL_RESOURCE_STATE: ResourceState = {
  starts: [],
  paused: false,
  pausedUntil: null,
  breaker: { phase: 'closed', since: null, failures: [], probe: null },
  throttled: 0,
  pauses: 0,
};

/** Why no more attempts may start now. */
export type WaitReason = 'paused' | 'upstream_pause' | 'breaker_open' | 'probe_out' | 'concurrency' | 'rate';

/** How many attempts may start now; when fewer than wanted, why, and when to ask again (null: when something ends). */
export interface Allowance {
  starts: number;
  /** The one start is the breaker's half-open probe. */
  probe: boolean;
  reason: WaitReason | null;
  retryAt: number | null;
}

/**
 * A start is counted in the window for a tenth longer than the window itself: the upstream sees
 * the call a little after the claim that allowed it, and a call that lags its start by less than
 * that margin cannot make a window of `perMs` see more than `limit` calls.
 */
export function rateWindowMs(rate: RateLimit): number {
  return rate.perMs + Math.max(1, Math.round(rate.perMs / 10));
}

/** The least time between two starts: the window shared evenly among its starts. */
export function rateIntervalMs(rate: RateLimit): number {
  return Math.floor(rate.perMs / rate.limit);
}

/** Most starts let through at once after a quiet spell: a tenth of the limit, at least one. */
export function rateBurst(rate: RateLimit): number {
  return Math.max(1, Math.ceil(rate.limit / 10));
}

/**
 * Starts the rate allows now, and when the next one frees if none does. Two rules: at most `limit`
 * starts in any window (of `perMs` plus its margin), and starts spread `perMs / limit` apart, a
 * claim catching up on the intervals it missed by at most `rateBurst` starts. Spread out, a call
 * that lags its start by more than the margin can push at most one call into another window,
 * where bunched starts would move together and could double a window.
 */
export function rateAllowance(rate: RateLimit, starts: readonly number[], now: number): { free: number; nextAt: number | null } {
  const window = rateWindowMs(rate);
  const recent = starts.filter((at) => at > now - window);
  if (recent.length >= rate.limit) {
    // The (limit)-th most recent start is the one whose leaving frees a place.
    return { free: 0, nextAt: (recent[recent.length - rate.limit] as number) + window };
  }
  const last = starts.at(-1);
  const interval = rateIntervalMs(rate);
  const spaced = last === undefined || interval === 0 ? rateBurst(rate) : Math.min(rateBurst(rate), Math.floor((now - last) / interval));
  if (spaced <= 0) return { free: 0, nextAt: (last as number) + interval };
  return { free: Math.min(rate.limit - recent.length, spaced), nextAt: null };
}

/** The starts kept after `count` more at `now`: the last `limit` (the window's), and at least the latest (the spacing's). */
export function withStarts(rate: RateLimit, starts: readonly number[], now: number, count: number): number[] {
  const window = rateWindowMs(rate);
  const kept = starts.filter((at) => at > now - window);
  if (kept.length === 0 && count === 0 && starts.length > 0) kept.push(starts.at(-1) as number);
  for (let i = 0; i < count; i += 1) kept.push(now);
  return kept.slice(-rate.limit);
}

/** How many of `want` attempts may start now, given the attempts of the resource in flight cluster-wide. */
export function allowance(policy: ResourceDefinition, state: ResourceState, context: { now: number; inFlight: number; want: number }): Allowance {
  const { now, inFlight, want } = context;
  const none = (reason: WaitReason, retryAt: number | null): Allowance => ({ starts: 0, probe: false, reason, retryAt });
  if (want <= 0) return { starts: 0, probe: false, reason: null, retryAt: null };
  if (state.paused) return none('paused', null);
  if (state.pausedUntil !== null && state.pausedUntil > now) return none('upstream_pause', state.pausedUntil);

  let cap = want;
  let probe = false;
  let limitedBy: WaitReason | null = null;
  let retryAt: number | null = null;
  if (policy.breaker) {
    const breaker = state.breaker;
    if (breaker.phase === 'open') {
      const reopensAt = (breaker.since ?? now) + policy.breaker.cooldownMs;
      if (now < reopensAt) return none('breaker_open', reopensAt);
    }
    if (breaker.phase !== 'closed') {
      if (breaker.probe && breaker.probe.until > now) return none('probe_out', breaker.probe.until);
      cap = 1;
      probe = true;
      limitedBy = want > 1 ? 'probe_out' : null;
    }
  }
  if (policy.concurrency !== undefined) {
    const free = policy.concurrency - inFlight;
    if (free <= 0) return none('concurrency', null);
    if (free < cap) [cap, limitedBy] = [free, 'concurrency'];
  }
  if (policy.rate) {
    const { free, nextAt } = rateAllowance(policy.rate, state.starts, now);
    if (free <= 0) return none('rate', nextAt);
    if (free < cap) {
      cap = free;
      limitedBy = 'rate';
      // The place after these frees when the oldest start still counted leaves the window.
      retryAt = rateAllowance(policy.rate, withStarts(policy.rate, state.starts, now, free), now).nextAt;
    }
  }
  return { starts: cap, probe, reason: limitedBy, retryAt };
}

/** The state after `started` attempts began at `now`; `probe` names the one let through half-open. */
export function afterStarts(
  policy: ResourceDefinition,
  state: ResourceState,
  context: { now: number; started: number; probe?: { operationId: string; untilMs: number } },
): ResourceState {
  if (context.started <= 0) return state;
  const starts = policy.rate ? withStarts(policy.rate, state.starts, context.now, context.started) : state.starts;
  const breaker: BreakerState = context.probe
    ? { phase: 'half_open', since: context.now, failures: [], probe: { operationId: context.probe.operationId, until: context.probe.untilMs } }
    : state.breaker;
  return { ...state, starts, breaker };
}

/**
 * What an attempt's end says about the upstream: `failure` (it failed or timed out), `success`
 * (it answered, yes or a business no), or `neutral` (it asked to wait, or the attempt was given back).
 */
export interface AttemptReport {
  operationId: string;
  verdict: 'success' | 'failure' | 'neutral';
}

/** The state after attempts ended, and after an upstream asked to wait until `pauseUntil`. */
export function afterOutcomes(
  policy: ResourceDefinition,
  state: ResourceState,
  context: { now: number; reports: readonly AttemptReport[]; pauseUntil?: number | null; throttled?: number },
): ResourceState {
  let next = state;
  const pauseUntil = context.pauseUntil ?? null;
  if (context.throttled) next = { ...next, throttled: next.throttled + context.throttled };
  if (pauseUntil !== null && pauseUntil > context.now && (next.pausedUntil === null || pauseUntil > next.pausedUntil)) {
    next = { ...next, pausedUntil: pauseUntil, pauses: next.pauses + 1 };
  }
  if (policy.breaker) next = { ...next, breaker: breakerAfter(policy.breaker, next.breaker, context.now, context.reports) };
  return next;
}

function breakerAfter(policy: BreakerPolicy, breaker: BreakerState, now: number, reports: readonly AttemptReport[]): BreakerState {
  switch (breaker.phase) {
    case 'closed': {
      const failed = reports.filter((r) => r.verdict === 'failure').length;
      if (failed === 0) return breaker;
      const failures = [...breaker.failures.filter((at) => at > now - policy.windowMs), ...Array<number>(failed).fill(now)].slice(-policy.failures);
      if (failures.length >= policy.failures) return { phase: 'open', since: now, failures: [], probe: null };
      return { ...breaker, failures };
    }
    case 'open':
      // Attempts that started before it opened end now and then; they say nothing new.
      return breaker;
    case 'half_open': {
      const probe = breaker.probe;
      const verdict = probe ? reports.find((r) => r.operationId === probe.operationId)?.verdict : undefined;
      if (verdict === 'success') return { phase: 'closed', since: now, failures: [], probe: null };
      if (verdict === 'failure') return { phase: 'open', since: now, failures: [], probe: null };
      // The probe gave no answer (it was given back, or asked to wait): the next claim sends another.
      if (verdict === 'neutral') return { ...breaker, probe: null };
      return breaker;
    }
    default: {
      const _never: never = breaker.phase;
      throw new Error(`unknown breaker phase ${String(_never)}`);
    }
  }
}

/** Paused or resumed by an operator. */
export function withOperatorPause(state: ResourceState, paused: boolean): ResourceState {
  return { ...state, paused };
}

/** Whether a key on a resource with a per-key rate may start now, and when it may if not. */
export function keyAllowance(rate: RateLimit, starts: readonly number[], now: number): { allowed: boolean; nextAt: number | null } {
  const { free, nextAt } = rateAllowance(rate, starts, now);
  return { allowed: free > 0, nextAt };
}

/** The view an operator reads of a resource's state at `now`. */
export function describeState(policy: ResourceDefinition, state: ResourceState, now: number) {
  const rate = policy.rate
    ? { limit: policy.rate.limit, per_ms: policy.rate.perMs, recent_starts: policy.rate.limit - rateAllowance(policy.rate, state.starts, now).free, available: rateAllowance(policy.rate, state.starts, now).free }
    : null;
  const breaker = policy.breaker
    ? {
        state: state.breaker.phase,
        since: state.breaker.since === null ? null : new Date(state.breaker.since).toISOString(),
        failures_in_window: state.breaker.failures.filter((at) => at > now - (policy.breaker as BreakerPolicy).windowMs).length,
        policy: { failures: policy.breaker.failures, window_ms: policy.breaker.windowMs, cooldown_ms: policy.breaker.cooldownMs },
      }
    : null;
  return {
    rate,
    concurrency: policy.concurrency ?? null,
    per_key: policy.perKey ? { limit: policy.perKey.rate.limit, per_ms: policy.perKey.rate.perMs } : null,
    breaker,
    paused: state.paused,
    paused_until: state.pausedUntil !== null && state.pausedUntil > now ? new Date(state.pausedUntil).toISOString() : null,
    throttled: state.throttled,
    pauses: state.pauses,
  };
}
