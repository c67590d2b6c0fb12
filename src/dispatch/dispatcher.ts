import type { StoredOperation } from '../store/operationRow.js';

/**
 * Wakes workers for operations that were just committed. Only a wake-up: PostgreSQL stays the
 * source of truth, so a dispatch that is lost delays an operation, never loses it.
 */
export interface Dispatcher {
  dispatch(operations: readonly StoredOperation[]): Promise<void>;
  close(): Promise<void>;
}

/** Something in this process that can be woken (the embedded worker). */
export interface Wakeable {
  notify(): void;
  notifyAt(at: Date): void;
}

/** In-process dispatch: pokes the worker living in the same process, at once or when the operation is due. */
export function createInProcessDispatcher(target: Wakeable | null): Dispatcher {
  return {
    async dispatch(operations) {
      if (!target) return;
      for (const operation of operations) target.notifyAt(new Date(operation.runAt));
    },
    async close() {},
  };
}
