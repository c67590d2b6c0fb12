import { OpsdError } from '../domain/errors.js';
import { Semaphore } from '../lib/semaphore.js';

/** How much an HTTP server takes in at once; every value has a default. */
export interface AdmissionOptions {
  /** Requests handled at once (health routes not counted). Default 1024. */
  maxInFlight?: number;
  /** How long a request past that may wait for its turn, in ms; then 429. Default 1000. */
  maxWaitMs?: number;
}

export const ADMISSION_DEFAULTS = { maxInFlight: 1024, maxWaitMs: 1000 } as const;

/** What a saturated process refuses, and when; every value has a default in the config. */
export interface PressureOptions {
  /** Event loop delay past which requests get 503, in ms (0: never). */
  maxEventLoopDelayMs: number;
  /** Callers waiting for a store connection past which requests get 503 (0: never). */
  maxPoolWaiting: number;
}

export const PRESSURE_DEFAULTS: PressureOptions = { maxEventLoopDelayMs: 1000, maxPoolWaiting: 100 };

/** Counters of what admission did, since the server started. */
export interface AdmissionStats {
  admitted: number;
  /** Refused with 429 after waiting `maxWaitMs` for a turn. */
  refusedInFlight: number;
  /** Refused with 503 because the event loop or the store was saturated. */
  refusedSaturated: number;
  /** Submissions refused with 429 because their type's backlog was full. */
  shedBacklog: number;
}

/**
 * A bounded number of requests in flight, and a bounded wait for a turn past it: the server answers
 * 429 with Retry-After instead of queueing without end, and the requests it does take are served
 * at the speed of the store rather than piling up in memory.
 */
export function createAdmission(options: AdmissionOptions = {}) {
  const maxInFlight = options.maxInFlight ?? ADMISSION_DEFAULTS.maxInFlight;
  const maxWaitMs = options.maxWaitMs ?? ADMISSION_DEFAULTS.maxWaitMs;
  const permits = new Semaphore(maxInFlight);
  const stats: AdmissionStats = { admitted: 0, refusedInFlight: 0, refusedSaturated: 0, shedBacklog: 0 };
  return {
    stats,
    get inFlight() {
      return permits.taken;
    },
    get waiting() {
      return permits.waiting;
    },
    /** Resolves with a release function for the request's turn; rejects with 429 when none comes in time. */
    async admit(): Promise<() => void> {
      const release = await permits.acquire(maxWaitMs);
      if (!release) {
        stats.refusedInFlight += 1;
        throw new OpsdError('OPSD_ERR_OVERLOADED', `${maxInFlight} requests are in flight and none finished within ${maxWaitMs} ms; retry shortly`);
      }
      stats.admitted += 1;
      return release;
    },
  };
}

export type Admission = ReturnType<typeof createAdmission>;
