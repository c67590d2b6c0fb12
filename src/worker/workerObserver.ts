/**
 * What a worker tells whoever watches it (the metrics), as things happen. Every method is called
 * on the worker's path, so implementations only count.
 */
export interface WorkerObserver {
  /** A claim of `size` operations returned (zero for a claim that found nothing). */
  claimed(size: number): void;
  attemptStarted(type: string): void;
  /**
   * An attempt's handler stopped and its outcome was written: `outcome` is what it became
   * (`completed`, `rejected`, `retried`, `failed`, `deferred`, `released`), `seconds` how long the
   * handler ran, `timedOut` whether its signal fired for the timeout.
   */
  attemptEnded(type: string, outcome: AttemptEndKind, seconds: number, timedOut: boolean): void;
  /** An operation reached COMPLETED, REJECTED or FAILED, `seconds` after it was received. */
  operationEnded(type: string, outcome: 'completed' | 'rejected' | 'failed', seconds: number): void;
  /** An attempt lost its lease (rescued elsewhere, or its outcome refused by the fencing token). */
  leaseLost(type: string): void;
  /** Leases renewed in one heartbeat. */
  leasesRenewed(count: number): void;
}

export type AttemptEndKind = 'completed' | 'rejected' | 'retried' | 'failed' | 'deferred' | 'released';

/** Watches nothing. */
export const NO_WORKER_OBSERVER: WorkerObserver = {
  claimed() {},
  attemptStarted() {},
  attemptEnded() {},
  operationEnded() {},
  leaseLost() {},
  leasesRenewed() {},
};
