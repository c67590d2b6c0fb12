import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { extendLeases } from '../store/extendLeases.js';
import type { StoredOperation } from '../store/operationRow.js';

/** What the keeper needs of an attempt a worker holds. */
export interface HeldAttempt {
  operation: StoredOperation;
  /** Its outcome is being recorded: the fenced finish decides from here, not the renewal. */
  recording: boolean;
  /** The last renewal that succeeded, plus the lease length (ms since epoch). */
  leaseValidUntil: number;
  /** No longer renewed: lost to another worker, or left to expire by a wedged handler. */
  leaseGivenUp: boolean;
}

/**
 * Renews a worker's leases every third of the lease length, in one statement for all of them,
 * including those of handlers that are stopping (they keep their key until they stop). After a
 * renewal the store failed, it tries every second, to win the leases back as soon as the store
 * answers again. A lease found lost is reported once, for a handler still running.
 */
export class LeaseKeeper {
  readonly #db: Db;
  readonly #leaseMs: number;
  readonly #now: () => Date;
  readonly #log: Logger;
  readonly #held: () => Iterable<HeldAttempt>;
  readonly #onLost: (attempt: HeldAttempt) => void;
  readonly #onRenewed: (count: number) => void;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(options: {
    db: Db;
    leaseMs: number;
    now: () => Date;
    log: Logger;
    held: () => Iterable<HeldAttempt>;
    onLost: (attempt: HeldAttempt) => void;
    /** Leases renewed by one heartbeat. */
    onRenewed?: (count: number) => void;
  }) {
    this.#db = options.db;
    this.#leaseMs = options.leaseMs;
    this.#now = options.now;
    this.#log = options.log;
    this.#held = options.held;
    this.#onLost = options.onLost;
    this.#onRenewed = options.onRenewed ?? (() => {});
  }

  start(): void {
    this.#schedule(this.#everyMs());
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #everyMs(): number {
    return Math.max(50, Math.floor(this.#leaseMs / 3));
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.renewOnce().then((ok) => this.#schedule(ok ? this.#everyMs() : Math.min(1000, this.#everyMs())));
    }, delayMs);
    this.#timer.unref();
  }

  /** One renewal of every lease still held; true unless the store failed. */
  async renewOnce(): Promise<boolean> {
    const held = [...this.#held()].filter((a) => !a.leaseGivenUp);
    if (held.length === 0) return true;
    const renewedAt = Date.now();
    try {
      const lost = await extendLeases(
        this.#db,
        held.map((a) => ({ operationId: a.operation.id, fencingToken: a.operation.fencingToken })),
        new Date(this.#now().getTime() + this.#leaseMs),
      );
      this.#onRenewed(held.length - lost.size);
      for (const attempt of held) {
        if (!lost.has(attempt.operation.id)) {
          attempt.leaseValidUntil = renewedAt + this.#leaseMs;
          continue;
        }
        // An attempt whose finish committed while the renewal ran looks lost to it; only a handler
        // still running can lose its lease (a finish that lost it says so itself, fenced).
        if (attempt.recording || attempt.leaseGivenUp) continue;
        attempt.leaseGivenUp = true;
        this.#onLost(attempt);
      }
      return true;
    } catch (error) {
      this.#log.warn({ err: error }, 'lease renewal failed');
      return false;
    }
  }
}
