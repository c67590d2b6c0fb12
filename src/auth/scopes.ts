/** What an API key may do: submit operations, read them, or operate the service. */
export type Scope = 'submit' | 'read' | 'admin';

export const SCOPES: readonly Scope[] = ['submit', 'read', 'admin'];

/** `submit,read` → ['submit', 'read']; throws naming any word that is not a scope. */
export function parseScopes(text: string): Scope[] {
  const words = text.split(',').map((w) => w.trim()).filter(Boolean);
  const unknown = words.filter((w) => !SCOPES.includes(w as Scope));
  if (unknown.length > 0 || words.length === 0) {
    throw new Error(`scopes must be a comma-separated list of ${SCOPES.join(', ')} (got "${text}")`);
  }
  return [...new Set(words as Scope[])];
}

/** Routes every process serves without a key: probes, and webhooks (they prove themselves by signature). */
function isOpenPath(path: string, metricsOpen: boolean): boolean {
  if (path === '/health' || path.startsWith('/health/')) return true;
  if (path.startsWith('/v1/webhooks/')) return true;
  return metricsOpen && path === '/metrics';
}

/**
 * The scope a request needs, or null when the route is open. Submitting (POST of operations)
 * needs `submit`; cancel, retry, the admin routes and subscriptions need `admin`; any other read
 * needs `read`, and any other write `admin`.
 */
export function requiredScope(method: string, path: string, options: { metricsOpen: boolean }): Scope | null {
  if (isOpenPath(path, options.metricsOpen)) return null;
  if (path.startsWith('/v1/admin/') || path === '/v1/subscriptions' || path.startsWith('/v1/subscriptions/')) return 'admin';
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'POST' && (path === '/v1/operations' || path === '/v1/operations/batch')) return 'submit';
  return 'admin';
}

/** Who must show a key: everyone, nobody, or everyone once the store holds a key. */
export type AuthMode = 'required' | 'auto' | 'off';

/**
 * `OPSD_AUTH` when set; otherwise `required` for the processes of a deployment (api, intake,
 * worker) and `auto` for `opsd start`, whose two-command quick start stays open until a key exists.
 */
export function authModeOf(setting: AuthMode | undefined, role: 'start' | 'api' | 'worker' | 'intake'): AuthMode {
  return setting ?? (role === 'start' ? 'auto' : 'required');
}
