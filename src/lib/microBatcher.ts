export interface MicroBatcherOptions {
  /** Most items in one call of `run`. */
  maxBatch: number;
  /**
   * Most calls of `run` under way at once. While that many are, new items wait and go together in
   * the next call (group commit): the slower the store, the larger the batches, and no delay is
   * added when it keeps up. Default: no limit (one call per tick).
   */
  maxInFlight?: number;
  /**
   * Most items waiting for a call. Past it, a new item is refused at once with
   * `overloaded(queued)` instead of waiting without bound. Default: no limit.
   */
  maxQueued?: number;
  /** The error a refused item gets. Default: a plain Error. */
  overloaded?: (queued: number) => Error;
  /**
   * Whether a batch that failed with `error` should be run again one item at a time, so that one
   * item the store refuses fails alone instead of failing every item it shared the batch with.
   * Default: never (every caller of the batch gets the error).
   */
  isolate?: (error: unknown) => boolean;
}

interface Entry<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

/** A caller's way to stop waiting: `signal` aborts the wait, with `signal.reason` as the error. */
export interface WaitOptions {
  signal?: AbortSignal;
}

/**
 * Coalesces calls made in the same tick into one call of `run` with all their items, so that
 * many concurrent single writes become one multi-row statement. `run` returns one result per item,
 * in order. If `run` throws, every caller of that batch gets the error, unless `isolate` says to
 * try each item alone.
 *
 * A caller whose `signal` aborts stops waiting at once: an item still queued is taken out and never
 * reaches `run`; one already in a call of `run` stays in it (its result is dropped), because a
 * statement under way cannot be taken back.
 */
export function createMicroBatcher<I, O>(run: (items: I[]) => Promise<O[]>, options: MicroBatcherOptions): (item: I, wait?: WaitOptions) => Promise<O> {
  const maxInFlight = options.maxInFlight ?? Number.POSITIVE_INFINITY;
  const maxQueued = options.maxQueued ?? Number.POSITIVE_INFINITY;
  let queue: Entry<I, O>[] = [];
  let scheduled = false;
  let inFlight = 0;

  async function runBatch(batch: Entry<I, O>[]): Promise<void> {
    try {
      const results = await run(batch.map((entry) => entry.item));
      batch.forEach((entry, i) => entry.resolve(results[i] as O));
    } catch (error) {
      if (batch.length > 1 && options.isolate?.(error)) {
        // Sequential: the store just refused this batch; N parallel retries would only contend.
        for (const entry of batch) await runBatch([entry]);
        return;
      }
      batch.forEach((entry) => entry.reject(error));
    }
  }

  function flush(): void {
    scheduled = false;
    while (queue.length > 0 && inFlight < maxInFlight) {
      const batch = queue.slice(0, options.maxBatch);
      queue = queue.slice(options.maxBatch);
      inFlight += 1;
      Promise.resolve()
        .then(() => runBatch(batch))
        .finally(() => {
          inFlight -= 1;
          schedule();
        });
    }
  }

  function schedule(): void {
    if (scheduled || queue.length === 0) return;
    scheduled = true;
    setImmediate(flush);
  }

  return (item, wait = {}) =>
    new Promise<O>((resolve, reject) => {
      const { signal } = wait;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      if (queue.length >= maxQueued) {
        reject(options.overloaded?.(queue.length) ?? new Error(`too many items queued (${queue.length})`));
        return;
      }
      if (!signal) {
        queue.push({ item, resolve, reject });
        schedule();
        return;
      }
      const onAbort = () => {
        queue = queue.filter((queued) => queued !== entry);
        reject(signal.reason);
      };
      const entry: Entry<I, O> = {
        item,
        resolve: (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      queue.push(entry);
      schedule();
    });
}
