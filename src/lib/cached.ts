/**
 * `load`, called at most once per `ttlMs`: callers within that time share its last answer (or the
 * call under way). A failed call is not kept.
 */
export function cached<T>(load: () => Promise<T>, ttlMs: number, now: () => number = Date.now): () => Promise<T> {
  let value: Promise<T> | null = null;
  let loadedAt = 0;
  return () => {
    if (value && now() - loadedAt < ttlMs) return value;
    loadedAt = now();
    const current = load();
    value = current;
    current.catch(() => {
      if (value === current) value = null;
    });
    return current;
  };
}
