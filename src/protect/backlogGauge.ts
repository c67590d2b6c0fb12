import type { Logger } from 'pino';
import type { Queryable } from '../store/db.js';
import { countPending } from '../store/countPending.js';

/**
 * The PENDING backlog of the types that cap theirs, as this process estimates it: the store's count,
 * read every `refreshMs`, plus what this process accepted since. Other processes' acceptances show
 * at the next read, so a burst spread over many api processes can pass a cap by what they accept
 * in one refresh interval.
 */
export function createBacklogGauge(options: { db: Queryable; types: readonly string[]; logger: Logger; refreshMs?: number }) {
  const counted = new Map<string, number>();
  const acceptedSince = new Map<string, number>();
  let timer: NodeJS.Timeout | null = null;
  let warned = false;

  const refresh = async () => {
    try {
      const counts = await countPending(options.db, options.types);
      for (const type of options.types) {
        counted.set(type, counts.get(type) ?? 0);
        acceptedSince.set(type, 0);
      }
      warned = false;
    } catch (error) {
      if (!warned) options.logger.warn({ err: error }, 'reading the backlogs of capped types failed; shedding uses the last count');
      warned = true;
    }
  };
  const schedule = () => {
    timer = setTimeout(() => void refresh().finally(schedule), options.refreshMs ?? 1000);
    timer.unref();
  };

  return {
    /** Starts reading; the first read is awaited so that a cap holds from the first request. */
    async start(): Promise<void> {
      if (options.types.length === 0) return;
      await refresh();
      schedule();
    },
    stop(): void {
      if (timer) clearTimeout(timer);
    },
    estimate(type: string): number {
      return (counted.get(type) ?? 0) + (acceptedSince.get(type) ?? 0);
    },
    accepted(type: string, count: number): void {
      if (counted.has(type)) acceptedSince.set(type, (acceptedSince.get(type) ?? 0) + count);
    },
  };
}

export type BacklogGauge = ReturnType<typeof createBacklogGauge>;
