import type { Logger } from 'pino';
import type { Duty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import type { StoredOperation } from '../store/operationRow.js';
import { rescueExpiredLeases } from '../store/rescueExpiredLeases.js';

/**
 * The duty that returns operations of dead workers: every PROCESSING operation whose lease ran
 * out goes back to PENDING (or FAILED on its last attempt), in batches until none is left. With
 * `ownersWithoutLiveness`, so does every operation whose lease holder has been seen without its
 * liveness lock for `ownerGoneAfterMs`: a killed worker's operations run again in seconds.
 */
export function createLeaseRescuer(options: {
  db: Db;
  logger: Logger;
  now?: () => Date;
  /** Lease holders that hold no liveness lock right now. Default: none known (rescue at expiry only). */
  ownersWithoutLiveness?: () => Promise<string[]>;
  /** How long a holder must be seen without its liveness lock before its leases are rescued, in ms. Default 1500. */
  ownerGoneAfterMs?: number;
  /** Told about the operations put back to PENDING, to wake a worker for them. */
  onRescued?: (operations: StoredOperation[]) => Promise<void> | void;
  batchSize?: number;
}): Duty {
  const now = options.now ?? (() => new Date());
  const batchSize = options.batchSize ?? 500;
  const goneAfterMs = options.ownerGoneAfterMs ?? 1500;
  // A holder's session may drop for a moment (a restart of the server, a terminated backend): it
  // counts as gone only once this leader has seen it without its lock for goneAfterMs.
  const absentSince = new Map<string, number>();
  const goneOwners = async (): Promise<string[]> => {
    if (!options.ownersWithoutLiveness) return [];
    const absent = new Set(await options.ownersWithoutLiveness());
    const at = Date.now();
    for (const owner of absentSince.keys()) if (!absent.has(owner)) absentSince.delete(owner);
    for (const owner of absent) if (!absentSince.has(owner)) absentSince.set(owner, at);
    return [...absent].filter((owner) => at - (absentSince.get(owner) ?? at) >= goneAfterMs);
  };
  return {
    name: 'lease-rescuer',
    async runOnce() {
      let total = 0;
      const pending: StoredOperation[] = [];
      const gone = await goneOwners();
      for (;;) {
        const rescued = await rescueExpiredLeases(options.db, { now: now(), limit: batchSize, goneOwners: gone });
        for (const op of rescued) {
          options.logger.warn({ operation_id: op.id, state: op.status, attempts: op.attempts }, 'lease expired or its holder is gone; operation rescued');
        }
        total += rescued.length;
        pending.push(...rescued.filter((op) => op.status === 'PENDING'));
        if (rescued.length < batchSize) break;
      }
      if (total > 0) await options.onRescued?.(pending);
      return total;
    },
  };
}
