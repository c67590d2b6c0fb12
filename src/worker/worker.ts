import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { AttemptOutcome } from '../domain/commands.js';
import type { Json } from '../domain/operation.js';
import { WakeSignal } from '../lib/wakeSignal.js';
import { raceTimeout } from '../lib/withTimeout.js';
import type { ClaimedOperation } from '../store/claimOperations.js';
import type { Db } from '../store/db.js';
import type { StoredOperation } from '../store/operationRow.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { SuccessorClaim } from '../store/finishAttempts.js';
import type { HandlerRegistry } from './handlerRegistry.js';
import { AttemptAbort } from './attemptAbort.js';
import { GroupClaims, type ClaimWaits } from './groupClaims.js';
import { LeaseKeeper, type HeldAttempt } from './leaseKeeper.js';
import { ProgressKeeper } from './progressKeeper.js';
import { createResourceReports, type ResourceReportStats } from './resourceReports.js';
import { createTypeCounter } from './typeCounter.js';
import { redactionFor } from '../lib/logRedaction.js';
import { NO_WORKER_OBSERVER, type WorkerObserver } from './workerObserver.js';
import { endKindOf, logEnd } from './attemptEnd.js';
import { AttemptLog, type AttemptLines } from './attemptLog.js';
import { createOutcomeRecorder } from './outcomeRecorder.js';
import { reportAttemptEnd } from './resourceFeedback.js';
import { AttemptAborted, runAttempt } from './runAttempt.js';

/** Options of a worker; every one has a default. */
export interface WorkerOptions {
  db: Db;
  registry: HandlerRegistry;
  logger: Logger;
  /** Attempts run at the same time, all types together. Default 10. */
  concurrency?: number;
  /**
   * Attempts of one type in flight at once across every worker process, by type (the store
   * enforces them). Default: only each worker's own concurrency.
   */
  typeConcurrency?: Readonly<Record<string, number>>;
  /**
   * Where operations this worker puts back to PENDING (retries, releases at shutdown) are announced
   * to other processes (BullMQ, or NOTIFY). Default: nowhere; they are found by polls.
   */
  announceTo?: Dispatcher;
  /** How long a claim holds without renewal, in ms. Renewed every third of it. Default 30000. */
  leaseMs?: number;
  /** Longest sleep between claims when nothing wakes the worker, in ms. Default 1000. */
  pollIntervalMs?: number;
  /** Lease owner name. Default `hostname:pid:random`. */
  workerId?: string;
  /**
   * How long a handler may go on after its signal aborted (timeout, shutdown, lost lease) before
   * the worker counts it as wedged. Until then it keeps its slot, its lease and its key. Default 30000.
   */
  wedgedAfterMs?: number;
  /**
   * Called when a handler is wedged and the worker is not shutting down. Its lease is no longer
   * renewed; the process should exit so that no other worker runs the operation while the wedged
   * handler may still have effects. Default: log at fatal and exit the process with code 70.
   */
  onWedged?: (operation: StoredOperation) => void;
  /** Told of claims, attempts and outcomes as they happen (the metrics). Default: nobody. */
  observer?: WorkerObserver;
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
  /** Attempts deferred because their upstream asked to wait (not counted as attempts). */
  deferred: number;
  leaseLost: number;
}

/**
 * Finish transactions a worker runs at once. Outcomes arrive a few per tick; letting them wait for
 * the transaction under way makes one larger transaction instead of many small ones that contend
 * for the same rows, indexes and WAL flushes.
 */
const WRITES_IN_FLIGHT = 2;

interface RunningAttempt extends HeldAttempt {
  abort: AttemptAbort;
  done: Promise<void>;
  /**
   * Whether it counts against the concurrency limits: while its handler runs, and while its outcome
   * is recorded if the operation waiting behind it on its key may start in the same write (which
   * takes this slot). Otherwise the slot is free as soon as the handler stops, so the next claim
   * runs while the outcome is written instead of after it.
   */
  holdsSlot: boolean;
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
  readonly #groups: GroupClaims;
  readonly #reports: ReturnType<typeof createResourceReports>;
  readonly #counts: ReturnType<typeof createTypeCounter>;
  readonly #observer: WorkerObserver;
  readonly #typeLogs = new Map<string, Logger>();
  readonly #announceTo: Dispatcher | undefined;
  readonly #leaseMs: number;
  readonly #pollIntervalMs: number;
  readonly #now: () => Date;
  readonly #random: () => number;
  readonly #wake = new WakeSignal();
  readonly #running = new Map<string, RunningAttempt>();
  readonly #wedgedAfterMs: number;
  readonly #onWedged: (operation: StoredOperation) => void;
  readonly #record: ReturnType<typeof createOutcomeRecorder>;
  /** Slots promised to claims under way: counted as taken until the claim returns. */
  #reserved = 0;
  /** Counters not kept per type (the outcomes are, in #counts). */
  readonly #stats = { claimed: 0, released: 0, leaseLost: 0 };
  #stopping = false;
  /**
   * Whether the next claim should scan for due work. A scan tests every PENDING row queued behind
   * busy keys, so after one that came up short it runs again only when something may have changed:
   * new work was announced, a slot was freed without a successor taking it, or a poll interval passed.
   */
  #scanWanted = true;
  /**
   * Whether a group with limits of its own asked to be looked at again (a rate window ends, a pause
   * is over, a destination may have work due). Such a look leaves the scan above to its own reasons:
   * the webhook deliveries of every worker ask every 100 ms while none is due, and each scan it
   * brought along tested every PENDING row behind the busy keys again (about 15 scans of 14 ms in
   * a 10-key drain of 2,000 that took 1.3 s).
   */
  #limitedLookWanted = false;
  #lastScanShort = false;
  #lastScanAt = 0;
  /** Ended attempts whose key's next operation was started by their own finish (their slot is taken). */
  readonly #handedOver = new Set<string>();
  /** Shutdown has stopped waiting: outcomes still unrecorded are given up. */
  #gaveUp = false;
  #loop: Promise<void> | null = null;
  readonly #leases: LeaseKeeper;
  readonly #progress: ProgressKeeper;
  /** What a handler's `progress` calls; bound once, not made per attempt. */
  readonly #reportProgress = (operation: StoredOperation, value: Json): void => {
    this.#progress.report({ operationId: operation.id, fencingToken: operation.fencingToken, value, at: this.#now().toISOString() });
  };

  constructor(options: WorkerOptions) {
    this.#db = options.db;
    this.#registry = options.registry;
    this.#concurrency = options.concurrency ?? 10;
    this.#announceTo = options.announceTo;
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.#now = options.now ?? (() => new Date());
    this.#random = options.random ?? Math.random;
    this.id = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.#log = options.logger.child({ worker: this.id });
    this.#wedgedAfterMs = options.wedgedAfterMs ?? 30_000;
    this.#onWedged =
      options.onWedged ??
      ((operation) => {
        this.#log.fatal({ operation_id: operation.id, type: operation.type }, 'handler did not stop after its signal aborted: exiting so that its lease expires');
        process.exit(70);
      });
    this.#groups = new GroupClaims({
      db: this.#db,
      registry: this.#registry,
      typeCaps: options.typeConcurrency ?? {},
      pollIntervalMs: this.#pollIntervalMs,
      wakeAt: (at) =>
        this.#at(at, () => {
          this.#limitedLookWanted = true;
          this.#wake.notify();
        }),
    });
    this.#reports = createResourceReports({ db: this.#db, log: this.#log });
    this.#counts = createTypeCounter({ db: this.#db, worker: this.id, logger: this.#log, now: this.#now });
    this.#observer = options.observer ?? NO_WORKER_OBSERVER;
    this.#record = createOutcomeRecorder(this.#db, {
      inFlight: WRITES_IN_FLIGHT,
      successors: { claim: () => this.#successorClaim(), started: (ops) => this.#startSuccessors(ops) },
    });
    this.#progress = new ProgressKeeper({ db: this.#db, log: this.#log });
    this.#leases = new LeaseKeeper({
      db: this.#db,
      leaseMs: this.#leaseMs,
      now: this.#now,
      log: this.#log,
      held: () => this.#running.values(),
      onRenewed: (count) => this.#observer.leasesRenewed(count),
      onLost: (attempt) => {
        this.#stats.leaseLost += 1;
        this.#observer.leaseLost(attempt.operation.type);
        this.#log.warn({ operation_id: attempt.operation.id }, 'lease lost; aborting the attempt');
        (attempt as RunningAttempt).abort.abort(new AttemptAborted('lease_lost', 'the lease was lost'));
      },
    });
  }

  get stats(): WorkerStats {
    const { completed, rejected, retried, failed, deferred } = this.#counts.totals;
    return { running: this.#running.size, ...this.#stats, completed, rejected, retried, failed, deferred };
  }

  /** What protection did in this worker: claims held back by reason, and what attempts told their resources. */
  get protection(): { waits: ClaimWaits } & ResourceReportStats {
    return { waits: { ...this.#groups.waits }, ...this.#reports.stats };
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = this.#claimLoop();
    this.#leases.start();
    this.#counts.start();
  }

  /** Something may be claimable now (a new operation was accepted, or becomes due). */
  notify(): void {
    this.#scanWanted = true;
    this.#wake.notify();
  }

  /** Wakes the worker at `at` (a retry or a scheduled run); a no-op for instants already past. */
  notifyAt(at: Date): void {
    this.#at(at, () => this.notify());
  }

  /** Runs `fn` at `at`, or now for instants already past. */
  #at(at: Date, fn: () => void): void {
    const delay = at.getTime() - this.#now().getTime();
    if (delay <= 0) return fn();
    setTimeout(fn, Math.min(delay, 2 ** 31 - 1)).unref();
  }

  /**
   * Stops claiming, lets running attempts finish within `graceMs`, then aborts the rest: a handler
   * that stops is released back to PENDING (or completed, if it returned) so another worker can take
   * it at once; one that ignores its signal keeps its lease until it stops, at most `wedgedAfterMs`.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.#wake.notify();
    await this.#loop;
    const allDone = () => Promise.allSettled([...this.#running.values()].map((a) => a.done));
    if ((await raceTimeout(allDone(), graceMs)) === 'timeout') {
      const running = [...this.#running.values()];
      for (const attempt of running) attempt.abort.abort(new AttemptAborted('shutdown', 'worker shutting down'));
      // Recording may wait for the store; past the wedge cap, shutdown goes on without it.
      await raceTimeout(allDone(), this.#wedgedAfterMs + 1000);
      this.#log.info({ aborted: running.length, still_running: this.#running.size }, 'aborted attempts still running at the end of the grace period');
    }
    this.#gaveUp = true;
    this.#leases.stop();
    await this.#progress.stop();
    await this.#counts.stop();
  }

  /**
   * The most attempts this worker would start now (slots promised to claims under way count as
   * taken). Outcomes still being written hold no slot, but at most `concurrency` of them may wait,
   * so a store slower to record than to claim cannot pile them up.
   */
  freeSlots(): number {
    let held = 0;
    for (const attempt of this.#running.values()) if (attempt.holdsSlot) held += 1;
    return Math.max(0, Math.min(this.#concurrency - held, 2 * this.#concurrency - this.#running.size) - this.#reserved);
  }

  /** Holds `count` slots while `claim` runs, so that concurrent claims never overshoot the concurrency. */
  async #withReservedSlots<T>(count: number, claim: () => Promise<T>): Promise<T> {
    this.#reserved += count;
    try {
      return await claim();
    } finally {
      this.#reserved -= count;
    }
  }

  async #claimLoop(): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#claimOnce();
      } catch (error) {
        this.#log.error({ err: error }, 'claim failed; retrying');
      }
      if (this.#stopping) break;
      await this.#wake.wait(this.#pollIntervalMs);
      // Let the finishes of this tick land first: one claim for many free slots, not one per slot.
      if (this.#running.size > 0) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * One claim per group (see GroupClaims): the types free of limits first, then each group that
   * shares a resource or a cap and may have room. Each is sized just before it runs, with the slots
   * of the claims before it already counted.
   */
  async #claimOnce(): Promise<void> {
    const recent = Date.now() - this.#lastScanAt < this.#pollIntervalMs;
    const scan = this.#scanWanted || !this.#lastScanShort || !recent;
    if (!scan && !this.#limitedLookWanted) return;
    this.#limitedLookWanted = false;
    if (scan) {
      this.#scanWanted = false;
      this.#lastScanAt = Date.now();
      this.#lastScanShort = false;
    }
    for (const group of this.#groups.groups) {
      if (!scan && group.kind === 'free') continue;
      if (!this.#groups.due(group, this.#now().getTime())) continue;
      const limit = this.freeSlots();
      if (limit <= 0) break;
      const { claimed, short } = await this.#withReservedSlots(limit, () =>
        this.#groups.claim(group, { limit, types: group.types, now: this.#now, leaseOwner: this.id, leaseMs: this.#leaseMs, busyKeys: this.#busyKeys() }),
      );
      if (short) this.#lastScanShort = true;
      this.#observer.claimed(claimed.length);
      for (const operation of claimed) void this.#startAttempt(operation);
    }
  }

  /** What a finish may start on the keys of operations that end: types without a limit of their own, and the ended one's. */
  #successorClaim(): SuccessorClaim | null {
    if (this.#stopping) return null;
    return {
      leaseOwner: this.id,
      leaseMs: this.#leaseMs,
      now: this.#now,
      types: this.#groups.freeTypes(),
      busyKeys: this.#busyKeys(),
    };
  }

  /** Starts operations a finish claimed; each takes the slot of the attempt that ended before it on its key. */
  #startSuccessors(operations: StoredOperation[]): void {
    const keys = new Set(operations.map((op) => op.orderingKey));
    for (const attempt of this.#running.values()) {
      if (attempt.recording && keys.has(attempt.operation.orderingKey)) this.#handedOver.add(attempt.operation.id);
    }
    for (const operation of operations) void this.#startAttempt(operation);
  }

  /**
   * Keys with a handler still running in this process (see ClaimOptions.busyKeys). An attempt whose
   * handler has stopped and whose outcome is being written does not count: the store's head check
   * covers it, and the next operation on its key may be claimed here as soon as the write commits.
   */
  #busyKeys(): string[] {
    return [...new Set([...this.#running.values()].filter((a) => !a.recording).map((a) => a.operation.orderingKey))];
  }

  /** Runs one claimed attempt; resolves when its handler has stopped and its outcome is recorded (or given up on). */
  #startAttempt(operation: StoredOperation): Promise<void> {
    this.#stats.claimed += 1;
    this.#observer.attemptStarted(operation.type);
    const startedAt = performance.now();
    const registered = this.#registry.get(operation.type);
    const resource = this.#registry.resourceOf(operation.type);
    const abort = new AttemptAbort();
    const log = new AttemptLog(this.#typeLog(operation.type), { operation_id: operation.id, external_id: operation.externalId, type: operation.type, attempt: operation.attempts });
    log.debug('attempt started');
    const attempt = {
      operation,
      abort,
      recording: false,
      holdsSlot: true,
      leaseValidUntil: Date.now() + this.#leaseMs,
      leaseGivenUp: false,
    } as RunningAttempt;
    // In the map before its work starts: that work may end at once (no handler), and its end takes it out.
    this.#running.set(operation.id, attempt);
    attempt.done = (async () => {
      try {
        if (!registered) {
          // Claims are filtered by registered types, so this is a registry changed under a running worker.
          throw new Error(`no handler for ${operation.type}`);
        }
        const end = await runAttempt(operation, registered, abort, {
          now: this.#now,
          random: this.#random,
          log,
          wedgedAfterMs: this.#wedgedAfterMs,
          hasResource: resource !== null,
          reportProgress: this.#reportProgress,
        });
        // An attempt bound for a destination with limits of its own tells that destination, not the whole resource.
        const reportTo = this.#groups.takeDestination(operation.id) ?? resource;
        if (reportTo) await reportAttemptEnd(this.#groups, this.#reports, reportTo, operation, end);
        if (end.kind === 'wedged') {
          this.#wedged(attempt, log);
          // The slot and the key are given back only when the handler really stops, if ever.
          await end.stopped;
          return;
        }
        attempt.recording = true;
        if (!(operation as ClaimedOperation).next) this.#releaseSlot(attempt);
        if (end.kind === 'record') {
          // The last report before the outcome: once the operation has ended, it would be refused.
          const progressWritten = this.#progress.settle(operation.id);
          if (progressWritten) await progressWritten;
          await this.#recordOutcome(attempt, end.outcome, log, (performance.now() - startedAt) / 1000);
        }
      } catch (error) {
        log.error({ err: error }, 'attempt could not be recorded; the lease will expire and it will run again');
      } finally {
        this.#running.delete(operation.id);
        this.#groups.ended(operation.type);
        // A slot no successor took may serve work a scan would find.
        if (!this.#handedOver.delete(operation.id)) this.#scanWanted = true;
        this.#wake.notify();
      }
    })();
    return attempt.done;
  }

  /** The logger of a type's attempts: the worker's, redacting the payload fields the type marks sensitive. */
  #typeLog(type: string): Logger {
    let log = this.#typeLogs.get(type);
    if (!log) {
      const sensitive = this.#registry.get(type)?.definition.sensitive ?? [];
      log = sensitive.length > 0 ? this.#log.child({}, { redact: redactionFor(sensitive) }) : this.#log;
      this.#typeLogs.set(type, log);
    }
    return log;
  }

  /** Gives an attempt's slot back before its outcome is recorded; a claim may use it at once. */
  #releaseSlot(attempt: Omit<RunningAttempt, 'done'>): void {
    attempt.holdsSlot = false;
    this.#scanWanted = true;
    this.#wake.notify();
  }

  /**
   * A handler that ignored its abort for `wedgedAfterMs`. Its lease is left to expire; the slot and
   * the key stay taken until it really stops. Outside shutdown the process is told, so it can exit
   * before the lease is rescued and the operation runs elsewhere beside the wedged handler.
   */
  #wedged(attempt: Omit<RunningAttempt, 'done'>, log: AttemptLines): void {
    attempt.leaseGivenUp = true;
    log.error({ wedged_after_ms: this.#wedgedAfterMs }, 'handler still running after its signal aborted; its lease is left to expire');
    if (!this.#stopping) this.#onWedged(attempt.operation);
  }

  async #recordOutcome(attempt: Omit<RunningAttempt, 'done'>, outcome: AttemptOutcome, log: AttemptLines, ranSeconds: number): Promise<void> {
    const result = await this.#record(
      { operationId: attempt.operation.id, command: outcome, claimed: attempt.operation },
      { log, leaseValidUntil: () => attempt.leaseValidUntil, givenUp: () => this.#gaveUp },
    );
    if (!result.ok) {
      this.#stats.leaseLost += 1;
      this.#observer.leaseLost(attempt.operation.type);
      log.warn({ code: result.error.code }, 'outcome discarded: the attempt no longer holds the lease');
      return;
    }
    const after = result.operation;
    const kind = endKindOf(after, outcome);
    if (!kind) {
      log.warn({ state: after.status }, 'unexpected state after outcome');
      return;
    }
    if (kind === 'released') this.#stats.released += 1;
    else this.#counts.add(after.type, kind);
    this.#observer.attemptEnded(after.type, kind, ranSeconds, outcome.kind === 'fail' && outcome.error.code === 'OPSD_TIMEOUT');
    if (kind === 'completed' || kind === 'rejected' || kind === 'failed') {
      this.#observer.operationEnded(after.type, kind, (Date.parse(after.updatedAt) - Date.parse(after.createdAt)) / 1000);
    }
    logEnd(log, kind, after);
    if (after.status !== 'PENDING') return;
    // Back to PENDING: this worker comes back for it when it is due; others are told at once.
    if (kind !== 'released') this.notifyAt(new Date(after.runAt));
    await this.#announce([after]);
  }

  /**
   * Tells other worker processes about operations this one put back to PENDING: a release at
   * shutdown should run elsewhere at once, not at the next poll.
   */
  async #announce(operations: StoredOperation[]): Promise<void> {
    if (!this.#announceTo || operations.length === 0) return;
    await this.#announceTo.dispatch(operations).catch((error: unknown) => {
      this.#log.warn({ err: error }, 'announcing operations failed; other workers find them at their next poll');
    });
  }
}
