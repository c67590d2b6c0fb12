/**
 * Connection-level failures (server down or restarting, a session terminated, a pool that could
 * not hand out a connection in time) as opposed to a statement the server refused.
 */
export function isStoreUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return /connect|terminat|timeout/i.test(String((error as Error | null)?.message ?? ''));
  return (
    code.startsWith('08') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    // statement_timeout: the store is too slow to answer right now.
    code === '57014' ||
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    code === 'EPIPE'
  );
}

/** A deadlock or serialization failure: the same transaction run again will most likely pass. */
export function isTransientConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}
