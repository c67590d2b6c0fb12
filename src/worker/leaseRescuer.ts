import type { Logger } from 'pino';
import type { Duty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import type { StoredOperation } from '../store/operationRow.js';
import { rescueExpiredLeases } from '../store/rescueExpiredLeases.js';

/**
 * The duty that returns operations of dead workers: every PROCESSING operation whose lease ran
 * out goes back to PENDING (or FAILED on its last attempt), in batches until none is left.
 */
export function createLeaseRescuer(options: {
  db: Db;
  logger: Logger;
  now?: () => Date;
  /** Told about the operations put back to PENDING, to wake a worker for them. */
  onRescued?: (operations: StoredOperation[]) => Promise<void> | void;
  batchSize?: number;
}): Duty {
  const now = options.now ?? (() => new Date());
  const batchSize = options.batchSize ?? 500;
  return {
    name: 'lease-rescuer',
    async runOnce() {
      let total = 0;
      const pending: StoredOperation[] = [];
      for (;;) {
        const rescued = await rescueExpiredLeases(options.db, { now: now(), limit: batchSize });
        for (const op of rescued) {
          options.logger.warn({ operation_id: op.id, state: op.status, attempts: op.attempts }, 'lease expired; operation rescued');
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
