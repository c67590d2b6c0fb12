import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { AttemptOutcome } from '../domain/commands.js';
import { createMicroBatcher } from '../lib/microBatcher.js';
import { WakeSignal } from '../lib/wakeSignal.js';
import { applyCommands, type AddressedCommand, type CommandResult } from '../store/applyCommands.js';
import { claimOperations } from '../store/claimOperations.js';
import type { Db } from '../store/db.js';
import { extendLeases } from '../store/extendLeases.js';
import type { StoredOperation } from '../store/operationRow.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import { findClaimableHeads } from '../store/findClaimableHeads.js';
import type { HandlerRegistry } from './handlerRegistry.js';
import { AttemptAborted, runAttempt } from './runAttempt.js';

/** Options of a worker; every one has a default. */
export interface WorkerOptions {
  db: Db;
  registry: HandlerRegistry;
  logger: Logger;
  /** Attempts run at the same time, all types together. Default 10. */
  concurrency?: number;
  /** Attempts of one type run at the same time, by type. Default: only the global limit. */
  typeConcurrency?: Readonly<Record<string, number>>;
  /**
   * `poll`: the worker claims from PostgreSQL itself (embedded, or no Redis).
   * `jobs`: it claims only what queue jobs name, through `runJob`. Default `poll`.
   */
  source?: 'poll' | 'jobs';
  /** Where retries and the next operation on a key are announced (in `jobs` mode). */
  dispatcher?: Dispatcher;
  /** How long a claim holds without renewal, in ms. Renewed every third of it. Default 30000. */
  leaseMs?: number;
  /** Longest sleep between claims when nothing wakes the worker, in ms. Default 1000. */
  pollIntervalMs?: number;
  /** Lease owner name. Default `hostname:pid:random`. */
  workerId?: string;
  now?: () => Date;
  random?: () => number;
}

/** Counters a worker keeps since it started. */
export interface WorkerStats {
  running: number;
  claimed: number;
  completed: number;
  rejected: number;
  retried: number;
  failed: number;
  released: number;
  leaseLost: number;
}

/**
 * Claim and finish transactions a worker runs at once, each kind. Outcomes and queue jobs arrive a
 * few per tick; letting them wait for the transaction under way makes one larger transaction
 * instead of many small ones that contend for the same rows, indexes and WAL flushes.
 */
const WRITES_IN_FLIGHT = 2;

interface RunningAttempt {
  operation: StoredOperation;
  controller: AbortController;
  done: Promise<void>;
  /** The handler returned and its outcome is being recorded; the fenced finish decides from here. */
  recording: boolean;
}

/**
 * Claims due operations, runs their handlers outside any transaction, and records each outcome
 * only while its fencing token still holds. Outcomes finishing in the same tick are written in one
 * transaction.
 */
export class Worker {
  readonly id: string;
  readonly #db: Db;
  readonly #registry: HandlerRegistry;
  readonly #log: Logger;
  readonly #concurrency: number;
  readonly #typeConcurrency: ReadonlyMap<string, number>;
  readonly #source: 'poll' | 'jobs';
  readonly #dispatcher: Dispatcher | undefined;
  readonly #leaseMs: number;
  readonly #pollIntervalMs: number;
  readonly #now: () => Date;
  readonly #random: () => number;
  readonly #wake = new WakeSignal();
  readonly #running = new Map<string, RunningAttempt>();
  readonly #record: (command: AddressedCommand) => Promise<CommandResult>;
  readonly #stats: Omit<WorkerStats, 'running'> = {
    claimed: 0,
    completed: 0,
    rejected: 0,
    retried: 0,
    failed: 0,
    released: 0,
    leaseLost: 0,
  };
  #stopping = false;
  #loop: Promise<void> | null = null;
  #heartbeat: NodeJS.Timeout | null = null;

  constructor(options: WorkerOptions) {
    this.#db = options.db;
    this.#registry = options.registry;
    this.#concurrency = options.concurrency ?? 10;
    this.#typeConcurrency = new Map(Object.entries(options.typeConcurrency ?? {}));
    this.#source = options.source ?? 'poll';
    this.#dispatcher = options.dispatcher;
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.#now = options.now ?? (() => new Date());
    this.#random = options.random ?? Math.random;
    this.id = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.#log = options.logger.child({ worker: this.id });
    this.#record = createMicroBatcher((commands) => applyCommands(this.#db, commands), { maxBatch: 500, maxInFlight: WRITES_IN_FLIGHT });
  }

  get stats(): WorkerStats {
    return { running: this.#running.size, ...this.#stats };
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = this.#source === 'poll' ? this.#claimLoop() : Promise.resolve();
    this.#heartbeat = setInterval(() => void this.#renewLeases(), Math.max(50, Math.floor(this.#leaseMs / 3)));
    this.#heartbeat.unref();
  }

  /** Something may be claimable now (a new operation was accepted, or becomes due). */
  notify(): void {
    this.#wake.notify();
  }

  /** Wakes the worker at `at` (a retry or a scheduled run); a no-op for instants already past. */
  notifyAt(at: Date): void {
    const delay = at.getTime() - this.#now().getTime();
    if (delay <= 0) return this.notify();
    setTimeout(() => this.notify(), Math.min(delay, 2 ** 31 - 1)).unref();
  }

  /**
   * Stops claiming, lets running attempts finish within `graceMs`, then aborts the rest and
   * releases them back to PENDING so another worker can take them at once.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.#wake.notify();
    await this.#loop;
    const drained = Promise.allSettled([...this.#running.values()].map((a) => a.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const finished = await Promise.race([drained.then(() => 'drained' as const), graceOver]);
    clearTimeout(timer);
    if (finished === 'timeout') await this.#releaseRunning();
    if (this.#heartbeat) clearInterval(this.#heartbeat);
  }

  /** The most attempts of `type` this worker would start now. */
  freeSlots(type?: string): number {
    const free = this.#concurrency - this.#running.size;
    const limit = type === undefined ? undefined : this.#typeConcurrency.get(type);
    if (limit === undefined) return Math.max(0, free);
    let running = 0;
    for (const attempt of this.#running.values()) if (attempt.operation.type === type) running += 1;
    return Math.max(0, Math.min(free, limit - running));
  }

  /**
   * Claims the operation a queue job names, if it can run now (due, at the head of its key, not
   * already taken), runs it and resolves once the outcome is recorded. A duplicated or stale job
   * claims nothing and resolves false.
   */
  async runJob(operationId: string): Promise<boolean> {
    if (this.#stopping) throw new Error('worker is stopping');
    const operation = await this.#claimById(operationId);
    if (!operation) return false;
    await this.#startAttempt(operation);
    return true;
  }

  /**
   * Jobs that arrive in the same tick share one claim transaction. The same id twice in a batch
   * (a duplicated job) is claimed once: the second caller gets nothing, so its job runs nothing.
   */
  readonly #claimById = createMicroBatcher(
    async (ids: string[]): Promise<(StoredOperation | null)[]> => {
      const claimed = await claimOperations(this.#db, {
        limit: ids.length,
        now: this.#now,
        leaseOwner: this.id,
        leaseMs: this.#leaseMs,
        types: this.#registry.types(),
        operationIds: [...new Set(ids)],
      });
      const unclaimed = new Map(claimed.map((op) => [op.id, op]));
      return ids.map((id) => {
        const operation = unclaimed.get(id) ?? null;
        unclaimed.delete(id);
        return operation;
      });
    },
    { maxBatch: 500, maxInFlight: WRITES_IN_FLIGHT },
  );

  async #claimLoop(): Promise<void> {
    while (!this.#stopping) {
      try {
        for (const batch of this.#claimBatches()) {
          const claimed = await claimOperations(this.#db, {
            ...batch,
            now: this.#now,
            leaseOwner: this.id,
            leaseMs: this.#leaseMs,
          });
          for (const operation of claimed) void this.#startAttempt(operation);
        }
      } catch (error) {
        this.#log.error({ err: error }, 'claim failed; retrying');
      }
      if (this.#stopping) break;
      await this.#wake.wait(this.#pollIntervalMs);
      // Let the finishes of this tick land first: one claim for many free slots, not one per slot.
      if (this.#running.size > 0) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** One claim for all types without a limit of their own, then one per limited type with free slots. */
  #claimBatches(): { limit: number; types: string[] }[] {
    const types = this.#registry.types();
    const unlimited = types.filter((t) => !this.#typeConcurrency.has(t));
    const batches = [{ limit: this.freeSlots(), types: unlimited }];
    for (const type of types.filter((t) => this.#typeConcurrency.has(t))) batches.push({ limit: this.freeSlots(type), types: [type] });
    return batches.filter((b) => b.limit > 0 && b.types.length > 0);
  }

  /** Runs one claimed attempt; resolves when its outcome is recorded (or given up on). */
  #startAttempt(operation: StoredOperation): Promise<void> {
    this.#stats.claimed += 1;
    const registered = this.#registry.get(operation.type);
    const controller = new AbortController();
    const log = this.#log.child({ operation_id: operation.id, type: operation.type, attempt: operation.attempts });
    log.debug('attempt started');
    const attempt: Omit<RunningAttempt, 'done'> = { operation, controller, recording: false };
    const done = (async () => {
      if (!registered) {
        // Claims are filtered by registered types, so this is a registry changed under a running worker.
        throw new Error(`no handler for ${operation.type}`);
      }
      const outcome = await runAttempt(operation, registered, controller, { now: this.#now, random: this.#random, log });
      attempt.recording = true;
      if (outcome) await this.#recordOutcome(operation, outcome, log);
    })()
      .catch((error: unknown) => log.error({ err: error }, 'attempt could not be recorded; the lease will expire and it will run again'))
      .finally(() => {
        this.#running.delete(operation.id);
        this.#wake.notify();
      });
    this.#running.set(operation.id, Object.assign(attempt, { done }));
    return done;
  }

  async #recordOutcome(operation: StoredOperation, outcome: AttemptOutcome, log: Logger): Promise<void> {
    const result = await this.#recordWithRetry({ operationId: operation.id, command: outcome });
    if (!result.ok) {
      this.#stats.leaseLost += 1;
      log.warn({ code: result.error.code }, 'outcome discarded: the attempt no longer holds the lease');
      return;
    }
    const after = result.operation;
    switch (after.status) {
      case 'COMPLETED':
        this.#stats.completed += 1;
        log.info('operation completed');
        break;
      case 'REJECTED':
        this.#stats.rejected += 1;
        log.info({ reason: after.lastError }, 'operation rejected');
        break;
      case 'FAILED':
        this.#stats.failed += 1;
        log.warn({ error: after.lastError }, 'operation failed: attempts exhausted');
        break;
      case 'PENDING':
        this.#stats.retried += 1;
        log.info({ error: after.lastError, retry_at: after.runAt }, 'attempt failed; retry scheduled');
        this.notifyAt(new Date(after.runAt));
        await this.#announce([after]);
        return;
      default:
        log.warn({ state: after.status }, 'unexpected state after outcome');
    }
    await this.#announceNextOnKey(after);
  }

  /** In `jobs` mode, queue jobs are the only wake-up other workers get. */
  async #announce(operations: StoredOperation[], cause?: string): Promise<void> {
    if (this.#source !== 'jobs' || !this.#dispatcher || operations.length === 0) return;
    await this.#dispatcher.dispatch(operations, cause).catch((error: unknown) => {
      this.#log.warn({ err: error }, 'dispatch failed; the reconciler will pick these up');
    });
  }

  /**
   * The operation after `ended` on its key may have been woken while `ended` still ran and found
   * itself blocked; wake it again, with a job id of its own so it is not merged with that one.
   */
  async #announceNextOnKey(ended: StoredOperation): Promise<void> {
    if (this.#source !== 'jobs' || !this.#dispatcher) return;
    try {
      const next = await findClaimableHeads(this.#db, { orderingKey: ended.orderingKey, limit: 1 });
      await this.#dispatcher.dispatch(next, `after_${ended.id}`);
    } catch (error) {
      this.#log.warn({ err: error, ordering_key: ended.orderingKey }, 'could not wake the next operation on the key; the reconciler will');
    }
  }

  /** A database blip must not lose an outcome while the lease still holds: retry for up to one lease. */
  async #recordWithRetry(command: AddressedCommand): Promise<CommandResult> {
    const deadline = Date.now() + this.#leaseMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await this.#record(command);
      } catch (error) {
        if (Date.now() + delay > deadline) throw error;
        this.#log.warn({ err: error, operation_id: command.operationId }, 'recording outcome failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async #renewLeases(): Promise<void> {
    const held = [...this.#running.values()]
      .filter((a) => !a.controller.signal.aborted)
      .map((a) => ({ operationId: a.operation.id, fencingToken: a.operation.fencingToken }));
    if (held.length === 0) return;
    try {
      const lost = await extendLeases(this.#db, held, new Date(this.#now().getTime() + this.#leaseMs));
      for (const id of lost) {
        const attempt = this.#running.get(id);
        // An attempt whose finish committed while the renewal ran looks lost to it; only a handler
        // still running can lose its lease (a finish that lost it says so itself, fenced).
        if (!attempt || attempt.recording || attempt.controller.signal.aborted) continue;
        this.#stats.leaseLost += 1;
        this.#log.warn({ operation_id: id }, 'lease lost; aborting the attempt');
        attempt.controller.abort(new AttemptAborted('lease_lost', 'the lease was lost'));
      }
    } catch (error) {
      this.#log.warn({ err: error }, 'lease renewal failed');
    }
  }

  async #releaseRunning(): Promise<void> {
    const attempts = [...this.#running.values()];
    for (const attempt of attempts) attempt.controller.abort(new AttemptAborted('shutdown', 'worker shutting down'));
    await Promise.allSettled(attempts.map((a) => a.done));
    const results = await applyCommands(
      this.#db,
      attempts.map((a) => ({
        operationId: a.operation.id,
        command: { kind: 'release', now: this.#now().toISOString(), fencingToken: a.operation.fencingToken },
      })),
    );
    const released = results.flatMap((r) => (r.ok ? [r.operation] : []));
    this.#stats.released += released.length;
    await this.#announce(released);
    this.#log.info({ released: released.length }, 'released attempts still running at the end of the grace period');
  }
}
