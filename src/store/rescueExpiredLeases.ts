import { decide } from '../domain/decide.js';
import { notBefore } from '../domain/eventTime.js';
import type { Db } from './db.js';
import { rowToOperation, type OperationRow, type StoredOperation } from './operationRow.js';
import { saveTransitions } from './saveTransitions.js';

/**
 * Puts operations whose lease ran out, or whose lease holder is known to be gone, back to PENDING
 * (`lease_expired`), or FAILED when that was their last attempt. Rows another process is already
 * rescuing are skipped, not waited for.
 */
export async function rescueExpiredLeases(
  db: Db,
  options: { now: Date; limit: number; retryDelayMs?: number; goneOwners?: readonly string[] },
): Promise<StoredOperation[]> {
  const now = options.now.toISOString();
  const retryAt = new Date(options.now.getTime() + (options.retryDelayMs ?? 0)).toISOString();
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<OperationRow>(
      `SELECT * FROM operations
       WHERE state = 'PROCESSING' AND (lease_expires_at <= $1 OR lease_owner = ANY($3::text[]))
       ORDER BY lease_expires_at
       LIMIT $2
       FOR UPDATE SKIP LOCKED`,
      [now, options.limit, [...(options.goneOwners ?? [])]],
    );
    const gone = new Set(options.goneOwners ?? []);
    const transitions = rows.map(rowToOperation).map((before) => {
      // Never before the attempt's start, which the worker's clock stamped and this one may be behind.
      const at = notBefore(now, before.updatedAt);
      const ownerGone = before.leaseOwner !== null && gone.has(before.leaseOwner);
      return { before, events: decide({ kind: 'expire_lease', now: at, retryAt: notBefore(retryAt, at), ownerGone }, before) };
    });
    return saveTransitions(tx, transitions);
  });
}
