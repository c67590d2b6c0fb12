import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Db } from '../store/db.js';

const RESOLUTION_MS = 10;
const SAMPLE_MS = 1000;

/**
 * Saturation as the intake sees it, measured the way `@fastify/under-pressure` does on the api: the
 * event loop's mean delay over the last second, and the callers waiting for a store connection.
 * The intake does not load Fastify, so it reads the same signals itself.
 */
export function createPressureGauge(options: { db: Db; maxEventLoopDelayMs: number; maxPoolWaiting: number }) {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  let delayMs = 0;
  const timer = setInterval(() => {
    delayMs = Math.max(0, histogram.mean / 1e6 - RESOLUTION_MS);
    histogram.reset();
  }, SAMPLE_MS);
  timer.unref();
  return {
    /** Why requests should be refused now, or null. */
    saturation(): string | null {
      if (options.maxEventLoopDelayMs > 0 && delayMs > options.maxEventLoopDelayMs) return `the event loop lags ${Math.round(delayMs)} ms`;
      const waiting = options.db.poolStats()?.waiting ?? 0;
      if (options.maxPoolWaiting > 0 && waiting >= options.maxPoolWaiting) return `${waiting} requests are waiting for the store`;
      return null;
    },
    stop(): void {
      clearInterval(timer);
      histogram.disable();
    },
  };
}
