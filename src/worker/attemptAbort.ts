/**
 * How opsd stops an attempt (its timeout, a lost lease, shutdown). The handler's `AbortSignal` is
 * made only when the handler reads it: an AbortController and its listeners cost about 3 µs, a
 * twentieth of a no-op attempt's whole cost in a worker. opsd's own wait for the handler hears the
 * abort through `onAbort`, signal or not.
 */
export class AttemptAbort {
  #controller: AbortController | null = null;
  #aborted = false;
  #reason: unknown = undefined;
  #listener: (() => void) | null = null;

  /** The signal a handler honours; aborted already if the attempt was. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Why it was aborted (undefined until it is). */
  get reason(): unknown {
    return this.#reason;
  }

  /** Aborts once; later calls keep the first reason. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
    this.#listener?.();
  }

  /** Calls `listener` on abort (at once if it already happened); one listener, replaced by the next; null removes it. */
  onAbort(listener: (() => void) | null): void {
    this.#listener = listener;
    if (listener && this.#aborted) listener();
  }
}
