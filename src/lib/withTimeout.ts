/** `'timeout'` if `promise` has not settled within `ms`; its own value or rejection otherwise. */
export async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `promise`, or a rejection with `onTimeout()` after `ms`. A late rejection of `promise` is
 * swallowed (it would otherwise be unhandled and end the process).
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  promise.catch(() => {});
  const result = await raceTimeout(promise, ms);
  if (result === 'timeout') throw onTimeout();
  return result;
}

