/**
 * A level-triggered wake-up: a `notify()` that lands while nobody waits is remembered,
 * so work announced during a claim query is never missed.
 */
export class WakeSignal {
  #pending = false;
  #waiter: (() => void) | null = null;

  notify(): void {
    if (this.#waiter) {
      const wake = this.#waiter;
      this.#waiter = null;
      wake();
    } else {
      this.#pending = true;
    }
  }

  /** Resolves on the next notify, or after `timeoutMs`, whichever comes first. */
  wait(timeoutMs: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        resolve();
      }, timeoutMs);
      this.#waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
