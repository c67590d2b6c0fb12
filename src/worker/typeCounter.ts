import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { addTypeCounts, bucketOf, COUNT_KINDS, type CountKind, type Counts } from '../store/typeCounts.js';

/** How often a worker adds what it counted to the store. */
const FLUSH_EVERY_MS = 5000;

/**
 * A worker's outcomes: its totals, and by type, counted in memory and added to the store every few seconds, so the admin view
 * can say what every worker did in the last minutes without a scan of the event log. Counts a
 * worker could not write are kept for its next try; those of a worker that dies unflushed are lost
 * (at most the last few seconds).
 */
export function createTypeCounter(options: { db: Db; worker: string; logger: Logger; now: () => Date }) {
  /** Since the worker started, all types together. */
  const totals: Counts = { completed: 0, rejected: 0, failed: 0, retried: 0, deferred: 0 };
  let pending = new Map<string, { type: string; bucket: number; counts: Counts }>();
  let timer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> = Promise.resolve();

  const flush = () =>
    (flushing = flushing.then(async () => {
      if (pending.size === 0) return;
      const batch = pending;
      pending = new Map();
      try {
        await addTypeCounts(options.db, options.worker, [...batch.values()]);
      } catch (error) {
        options.logger.warn({ err: error }, 'writing outcome counts failed; keeping them for the next try');
        for (const [key, row] of batch) {
          const current = pending.get(key);
          if (!current) pending.set(key, row);
          else for (const kind of COUNT_KINDS) current.counts[kind] += row.counts[kind];
        }
      }
    }));

  return {
    totals,
    add(type: string, kind: CountKind): void {
      totals[kind] += 1;
      const bucket = bucketOf(options.now().getTime());
      const key = `${type}\u0000${bucket}`;
      let row = pending.get(key);
      if (!row) {
        row = { type, bucket, counts: { completed: 0, rejected: 0, failed: 0, retried: 0, deferred: 0 } };
        pending.set(key, row);
      }
      row.counts[kind] += 1;
    },
    start(): void {
      const tick = () => {
        timer = setTimeout(() => void flush().finally(tick), FLUSH_EVERY_MS);
        timer.unref();
      };
      tick();
    },
    /** Stops the timer and writes what is left. */
    async stop(): Promise<void> {
      if (timer) clearTimeout(timer);
      await flush();
    },
  };
}
