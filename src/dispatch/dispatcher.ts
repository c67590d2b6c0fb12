import type { DispatchTarget } from '../store/findClaimableHeads.js';

/**
 * Wakes workers for operations that were just committed. Only a wake-up: PostgreSQL stays the
 * source of truth, so a dispatch that is lost delays an operation, never loses it (the
 * reconciler dispatches again what nobody picked up).
 */
export interface Dispatcher {
  readonly kind: 'in-process' | 'bullmq' | 'notify';
  /**
   * `cause` distinguishes wake-ups of the same operation version that must not be merged
   * (the predecessor on its key that just ended); without it, a repeat is a no-op.
   */
  dispatch(operations: readonly DispatchTarget[], cause?: string): Promise<void>;
  /** `degraded` while wake-ups fail (the queue is unreachable): operations wait for the reconciler or a poll. */
  health(): DispatchHealth;
  /**
   * Set where other processes are woken by NOTIFY on the store: an accept can send the notices on
   * `channel` in its own statement (acceptOperations' `announceOn`), and then dispatches its
   * operations to `rest` alone (this process's own wake-up, if any).
   */
  readonly notices?: { channel: string; rest: Dispatcher };
  /** Jobs waiting, active and delayed on the queue of each of `types` (queue dispatchers only). */
  queueCounts?(types: readonly string[]): Promise<Record<string, Record<'waiting' | 'active' | 'delayed', number>>>;
  close(): Promise<void>;
}

/** Whether wake-ups are getting through; `reason` says why not. */
export interface DispatchHealth {
  status: 'ok' | 'degraded';
  reason?: string;
}

const HEALTHY: DispatchHealth = { status: 'ok' };

/** Dispatchers that cannot fail on their own (in-process, NOTIFY on the store) are always healthy. */
export function alwaysHealthy(): DispatchHealth {
  return HEALTHY;
}

/** Something in this process that can be woken (the embedded worker). */
export interface Wakeable {
  notify(): void;
  notifyAt(at: Date): void;
}

/** In-process dispatch: pokes the worker living in the same process, at once or when the operation is due. */
export function createInProcessDispatcher(target: Wakeable | null): Dispatcher {
  return {
    kind: 'in-process',
    async dispatch(operations) {
      if (!target) return;
      for (const operation of operations) target.notifyAt(new Date(operation.runAt));
    },
    health: alwaysHealthy,
    async close() {},
  };
}

/** Hands every dispatch to each of `dispatchers` (a local wake-up and a NOTIFY to other processes). */
export function fanOutDispatcher(kind: Dispatcher['kind'], dispatchers: readonly Dispatcher[]): Dispatcher {
  const announcing = dispatchers.find((d) => d.notices);
  return {
    kind,
    ...(announcing?.notices
      ? {
          notices: {
            channel: announcing.notices.channel,
            rest: fanOutDispatcher(kind, [...dispatchers.filter((d) => d !== announcing), announcing.notices.rest]),
          },
        }
      : {}),
    async dispatch(operations, cause) {
      await Promise.all(dispatchers.map((d) => d.dispatch(operations, cause)));
    },
    health: () => dispatchers.map((d) => d.health()).find((h) => h.status !== 'ok') ?? HEALTHY,
    ...(dispatchers.some((d) => d.queueCounts)
      ? { queueCounts: (types: readonly string[]) => dispatchers.find((d) => d.queueCounts)?.queueCounts?.(types) ?? Promise.resolve({}) }
      : {}),
    async close() {
      await Promise.all(dispatchers.map((d) => d.close()));
    },
  };
}
