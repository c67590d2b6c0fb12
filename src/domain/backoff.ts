/** How long to wait between attempts. */
export interface BackoffPolicy {
  /** Delay cap of the first retry, in ms. Default 1000. */
  baseMs: number;
  /** Upper bound of any delay, in ms. Default 300000 (5 min). */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 300_000 };

/**
 * Exponential backoff with full jitter: a uniform draw in [0, min(max, base·2^(n-1))].
 * Full jitter spreads retries of a failing dependency instead of synchronising them.
 * `random` is injected so the result is reproducible in tests.
 */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, attempt - 1);
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(exponent, 30));
  return Math.floor(random() * ceiling);
}
