import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { writeProgress, type ProgressReport } from '../store/writeProgress.js';

/**
 * Keeps the latest progress each running attempt reported and writes it, for all of them in one
 * statement, at most once every `everyMs`: a handler may report in a tight loop, and only the last
 * report of each second is worth a write. A write that fails is tried again a period later, unless
 * a newer report took its place.
 */
export class ProgressKeeper {
  readonly #db: Db;
  readonly #log: Logger;
  readonly #everyMs: number;
  readonly #pending = new Map<string, ProgressReport>();
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #writingIds = new Set<string>();
  #lastWriteAt = 0;
  #stopped = false;

  constructor(options: { db: Db; log: Logger; everyMs?: number }) {
    this.#db = options.db;
    this.#log = options.log;
    this.#everyMs = options.everyMs ?? 1000;
  }

  /** Keeps `report` in place of any earlier one of its operation, to be written within `everyMs`. */
  report(report: ProgressReport): void {
    this.#pending.set(report.operationId, report);
    this.#schedule();
  }

  /**
   * Before an attempt's outcome is recorded: writes its last report now if it is not written yet,
   * so that the operation ends with it (once it has ended, a report is refused). Returns undefined,
   * without waiting, when nothing of the operation is pending.
   */
  settle(operationId: string): Promise<void> | undefined {
    if (!this.#pending.has(operationId) && !this.#writingIds.has(operationId)) return undefined;
    return this.#writeNow();
  }

  /** Stops the timer after writing what is pending (once, without retrying). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#writeNow();
  }

  #schedule(): void {
    if (this.#timer || this.#writing || this.#stopped || this.#pending.size === 0) return;
    const delay = Math.max(0, this.#lastWriteAt + this.#everyMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#writeNow();
    }, delay);
    this.#timer.unref();
  }

  /** Waits for a write under way, then writes what is pending. */
  async #writeNow(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (this.#pending.size === 0) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const reports = [...this.#pending.values()];
    this.#pending.clear();
    this.#writingIds = new Set(reports.map((r) => r.operationId));
    this.#lastWriteAt = Date.now();
    this.#writing = this.#write(reports);
    try {
      await this.#writing;
    } finally {
      this.#writing = null;
      this.#writingIds = new Set();
      this.#schedule();
    }
  }

  async #write(reports: ProgressReport[]): Promise<void> {
    try {
      await writeProgress(this.#db, reports);
    } catch (error) {
      this.#log.warn({ err: error, reports: reports.length }, 'writing progress failed; trying again');
      if (this.#stopped) return;
      for (const report of reports) {
        if (!this.#pending.has(report.operationId)) this.#pending.set(report.operationId, report);
      }
    }
  }
}
