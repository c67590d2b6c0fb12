export interface MicroBatcherOptions {
  /** Most items in one call of `run`. */
  maxBatch: number;
  /**
   * Most calls of `run` under way at once. While that many are, new items wait and go together in
   * the next call (group commit): the slower the store, the larger the batches, and no delay is
   * added when it keeps up. Default: no limit (one call per tick).
   */
  maxInFlight?: number;
}

/**
 * Coalesces calls made in the same tick into one call of `run` with all their items, so that
 * many concurrent single writes become one multi-row statement. `run` returns one result per item,
 * in order. If `run` throws, every caller of that batch gets the error.
 */
export function createMicroBatcher<I, O>(run: (items: I[]) => Promise<O[]>, options: MicroBatcherOptions): (item: I) => Promise<O> {
  const maxInFlight = options.maxInFlight ?? Number.POSITIVE_INFINITY;
  let queue: { item: I; resolve: (value: O) => void; reject: (error: unknown) => void }[] = [];
  let scheduled = false;
  let inFlight = 0;

  function flush(): void {
    scheduled = false;
    while (queue.length > 0 && inFlight < maxInFlight) {
      const batch = queue.slice(0, options.maxBatch);
      queue = queue.slice(options.maxBatch);
      inFlight += 1;
      Promise.resolve()
        .then(() => run(batch.map((entry) => entry.item)))
        .then(
          (results) => batch.forEach((entry, i) => entry.resolve(results[i] as O)),
          (error: unknown) => batch.forEach((entry) => entry.reject(error)),
        )
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

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      schedule();
    });
}
