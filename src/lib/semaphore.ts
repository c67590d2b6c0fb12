/** Counts permits; `acquire` waits in FIFO order when none is free, at most `maxWaitMs` if given. */
export class Semaphore {
  #free: number;
  readonly #capacity: number;
  readonly #waiting: ((granted: boolean) => void)[] = [];

  constructor(permits: number) {
    this.#free = permits;
    this.#capacity = permits;
  }

  /** Permits taken right now. */
  get taken(): number {
    return this.#capacity - this.#free;
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** A release function once a permit is held; null if `maxWaitMs` passed first. */
  async acquire(maxWaitMs?: number): Promise<(() => void) | null> {
    if (this.#free > 0) {
      this.#free -= 1;
      return this.#releaser();
    }
    if (maxWaitMs !== undefined && maxWaitMs <= 0) return null;
    const granted = await new Promise<boolean>((resolve) => {
      this.#waiting.push(resolve);
      if (maxWaitMs === undefined) return;
      setTimeout(() => {
        const index = this.#waiting.indexOf(resolve);
        if (index === -1) return;
        this.#waiting.splice(index, 1);
        resolve(false);
      }, maxWaitMs).unref();
    });
    return granted ? this.#releaser() : null;
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next(true);
      else this.#free += 1;
    };
  }
}
