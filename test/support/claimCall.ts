import { CLAIM_LOCK_NAMESPACE } from '../../src/store/claimOperations.js';

/**
 * A direct call of `opsd_claim` as the store makes it, leased for 30 s, as `[sql, params]` for a
 * query or for pagesRead. `columns`: what to return of each claimed operation.
 */
export function claimCall(options: { types: string[]; limit?: number; busyKeys?: string[]; columns?: string }): [string, unknown[]] {
  const now = new Date();
  const leaseEnds = new Date(now.getTime() + 30_000);
  return [
    `SELECT ${options.columns ?? 'id'} FROM opsd_claim($1, $2, $3, $4, $5, $6, $7, $8)`,
    [now, options.limit ?? 1, options.types, options.busyKeys ?? [], 'w1', leaseEnds, leaseEnds.toISOString(), CLAIM_LOCK_NAMESPACE],
  ];
}
