/**
 * Loads the PostgreSQL driver. pg decides at load time whether it runs on Cloudflare Workers: when
 * `navigator` is missing (Node 20 has none; Node 21 and later do) it builds a `Response` to find
 * out, which loads Node's whole fetch implementation, about 4 MB of memory in every process for
 * nothing. For the duration of the load, a `navigator` says what Node 21 would say.
 */
export async function importPgDb(): Promise<typeof import('./pgDb.js')> {
  const global = globalThis as { navigator?: unknown };
  if (global.navigator !== undefined) return import('./pgDb.js');
  Object.defineProperty(global, 'navigator', { value: { userAgent: `Node.js/${process.versions.node}` }, configurable: true });
  try {
    return await import('./pgDb.js');
  } finally {
    delete global.navigator;
  }
}
