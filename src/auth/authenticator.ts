import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { OpsdError } from '../domain/errors.js';
import { findLiveApiKey, hasLiveApiKeys } from '../store/apiKeys.js';
import type { Db } from '../store/db.js';
import { bearerToken, parseApiKey, secretMatches, type ApiKeyToken } from './apiKey.js';
import { FailureWindow } from './failureWindow.js';
import { requiredScope, type AuthMode, type Scope } from './scopes.js';

/** A refusal: the error to answer with and the headers that go with it. */
export interface AuthRefusal {
  error: OpsdError;
  headers: Record<string, string>;
}

export interface Authenticator {
  readonly mode: AuthMode;
  /**
   * Null when the request may go on; otherwise what to answer. Answers at once (no promise) when
   * what it needs is cached, which is every request but the first of a key in `cacheMs`.
   */
  check(request: { method: string; path: string; authorization: string | string[] | undefined; address: string }): AuthRefusal | null | Promise<AuthRefusal | null>;
}

export interface AuthenticatorOptions {
  db: Db;
  mode: AuthMode;
  /** Whether `/metrics` is served without a key (`OPSD_METRICS_AUTH=off`, the default). */
  metricsOpen: boolean;
  logger: Logger;
  /** How long a key looked up (or found missing or revoked) is believed, in ms. Default 5000. */
  cacheMs?: number;
  /** Bad keys an address may send per window before it gets 429. Default 20 per 60 s. */
  failures?: { max: number; windowMs: number };
  now?: () => number;
}

const KEY_CACHE_ENTRIES = 10_000;

type StoredKey = { secretSha256: Buffer; scopes: Scope[] };

/**
 * Checks `Authorization: Bearer <key>` against the stored keys and the scope the route needs.
 * Keys are cached for a few seconds, so a revocation takes effect within `cacheMs` on every
 * process; the secret is compared in constant time against its stored digest.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { db, mode, logger } = options;
  const now = options.now ?? Date.now;
  const cacheMs = options.cacheMs ?? 5000;
  const failures = new FailureWindow({ ...(options.failures ?? { max: 20, windowMs: 60_000 }), maxAddresses: 10_000 });
  let keysExist: { value: boolean; at: number } | null = null;
  const keyCache = new Map<string, { at: number; key: StoredKey | null }>();

  /** The cached answer when it is fresh, else a promise of a fresh one. */
  function anyKeys(): boolean | Promise<boolean> {
    if (keysExist && now() - keysExist.at < cacheMs) return keysExist.value;
    return hasLiveApiKeys(db).then((value) => {
      keysExist = { value, at: now() };
      return value;
    });
  }

  function lookup(id: string): StoredKey | null | Promise<StoredKey | null> {
    const hit = keyCache.get(id);
    if (hit && now() - hit.at < cacheMs) return hit.key;
    return findLiveApiKey(db, id).then((key) => {
      keyCache.delete(id);
      keyCache.set(id, { at: now(), key });
      if (keyCache.size > KEY_CACHE_ENTRIES) keyCache.delete(keyCache.keys().next().value as string);
      return key;
    });
  }

  const unauthenticated = (message: string): AuthRefusal => ({
    error: new OpsdError('OPSD_ERR_UNAUTHENTICATED', message),
    headers: { 'www-authenticate': 'Bearer realm="opsd"' },
  });

  function judge(request: { method: string; path: string; address: string }, scope: Scope, token: string | null, parsed: ApiKeyToken | null, key: StoredKey | null): AuthRefusal | null {
    if (token === null) return unauthenticated('this route needs an API key: send Authorization: Bearer <key>');
    if (!parsed || !key || !secretMatches(parsed.secret, key.secretSha256)) {
      failures.fail(request.address, now());
      // Never the key itself: only where it came from and what it tried.
      logger.warn({ address: request.address, method: request.method, path: request.path, reason: !parsed ? 'malformed' : !key ? 'unknown or revoked' : 'wrong secret' }, 'request with a bad API key refused');
      return unauthenticated('the API key is not valid (unknown, revoked or mistyped)');
    }
    if (!key.scopes.includes(scope)) {
      return { error: new OpsdError('OPSD_ERR_FORBIDDEN', `this route needs the "${scope}" scope; the key has ${key.scopes.join(', ')}`, { required_scope: scope }), headers: {} };
    }
    return null;
  }

  function checkKey(request: { method: string; path: string; authorization: string | string[] | undefined; address: string }, scope: Scope) {
    const waitMs = failures.blockedForMs(request.address, now());
    if (waitMs > 0) {
      return {
        error: new OpsdError('OPSD_ERR_TOO_MANY_AUTH_FAILURES', `too many bad API keys from this address; retry in ${Math.ceil(waitMs / 1000)} s`),
        headers: { 'retry-after': String(Math.ceil(waitMs / 1000)) },
      };
    }
    const token = bearerToken(request.authorization);
    const parsed = token === null ? null : parseApiKey(token);
    const key = parsed ? lookup(parsed.id) : null;
    return key instanceof Promise ? key.then((found) => judge(request, scope, token, parsed, found)) : judge(request, scope, token, parsed, key);
  }

  return {
    mode,
    check(request) {
      const scope = requiredScope(request.method, request.path, { metricsOpen: options.metricsOpen });
      if (scope === null || mode === 'off') return null;
      if (mode === 'required') return checkKey(request, scope);
      const keys = anyKeys();
      if (keys instanceof Promise) return keys.then((exist) => (exist ? checkKey(request, scope) : null));
      return keys ? checkKey(request, scope) : null;
    },
  };
}

/** Calls `allow` or `refuse` with what `check` answered, at once when it answered at once. */
export function settleCheck(
  outcome: ReturnType<Authenticator['check']>,
  allow: () => void,
  refuse: (refusal: AuthRefusal) => void,
  fail: (error: unknown) => void,
): void {
  if (outcome === null) return allow();
  if (!(outcome instanceof Promise)) return refuse(outcome);
  outcome.then((refusal) => (refusal ? refuse(refusal) : allow()), fail);
}

/**
 * The gate of a node:http server (the intake, a worker's health server): `serve` at once when
 * there is no authenticator or it is off, else once `check` lets the request through.
 */
export function gateNodeRequest(
  authenticator: Authenticator | undefined,
  request: IncomingMessage,
  path: string,
  serve: () => void,
  refuse: (refusal: AuthRefusal) => void,
  fail: (error: unknown) => void,
): void {
  if (!authenticator || authenticator.mode === 'off') return serve();
  const check = authenticator.check({ method: request.method ?? 'GET', path, authorization: request.headers.authorization, address: request.socket.remoteAddress ?? '' });
  settleCheck(check, serve, refuse, fail);
}
