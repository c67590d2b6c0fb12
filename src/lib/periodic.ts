import type { Logger } from 'pino';

/** A background duty: one pass, callable directly in tests. */
export interface Duty {
  name: string;
  runOnce(): Promise<unknown>;
}

/** A duty whose pass resolves to how many things it repaired (operations woken, heads marked, tables kept up). */
export interface CountingDuty extends Duty {
  runOnce(): Promise<number>;
}

/**
 * Runs `duty.runOnce()` every `intervalMs` ±20 % (jitter keeps many processes from aligning), the
 * first time at once with `firstAtOnce`,
 * logging and continuing when a pass throws. Returns a function that stops it and waits for
 * the pass in flight.
 */
export function runPeriodically(duty: Duty, intervalMs: number, logger: Logger, options: { firstAtOnce?: boolean } = {}): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<void> = Promise.resolve();

  let first = options.firstAtOnce ?? false;
  const schedule = () => {
    if (stopped) return;
    const delay = first ? 0 : intervalMs * (0.8 + Math.random() * 0.4);
    first = false;
    timer = setTimeout(() => {
      inFlight = duty
        .runOnce()
        .then(
          () => undefined,
          (error: unknown) => logger.warn({ err: error, duty: duty.name }, 'background duty failed; will retry'),
        )
        .finally(schedule);
    }, delay);
    timer.unref();
  };
  schedule();

  return async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    await inFlight;
  };
}
