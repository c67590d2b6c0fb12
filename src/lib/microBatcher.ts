/**
 * Coalesces calls made in the same tick into one call of `run` with all their items, so that
 * many concurrent single writes become one multi-row statement. `run` returns one result per item,
 * in order. If `run` throws, every caller of that batch gets the error.
 */
export function createMicroBatcher<I, O>(
  run: (items: I[]) => Promise<O[]>,
  options: { maxBatch: number },
): (item: I) => Promise<O> {
  let queue: { item: I; resolve: (value: O) => void; reject: (error: unknown) => void }[] = [];
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    while (queue.length > 0) {
      const batch = queue.slice(0, options.maxBatch);
      queue = queue.slice(options.maxBatch);
      run(batch.map((entry) => entry.item)).then(
        (results) => batch.forEach((entry, i) => entry.resolve(results[i] as O)),
        (error: unknown) => batch.forEach((entry) => entry.reject(error)),
      );
    }
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}
