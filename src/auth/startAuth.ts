import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { hasLiveApiKeys } from '../store/apiKeys.js';
import type { Db } from '../store/db.js';
import { createAuthenticator, type Authenticator } from './authenticator.js';
import { authModeOf } from './scopes.js';

/** The authenticator of a role, as its configuration asks. */
export function authenticatorFor(config: Config, role: 'start' | 'api' | 'worker' | 'intake', db: Db, logger: Logger): Authenticator {
  return createAuthenticator({
    db,
    mode: authModeOf(config.auth, role),
    metricsOpen: !config.metricsAuth,
    logger,
    failures: { max: config.authMaxFailures, windowMs: 60_000 },
  });
}

/** What the start-up log line says about who may come in. */
export async function describeAuth(authenticator: Authenticator, db: Db): Promise<string> {
  if (authenticator.mode === 'off') return 'off: every route is open (OPSD_AUTH=off)';
  if (authenticator.mode === 'required') return 'required: every route but /health, /metrics and /v1/webhooks needs an API key';
  return (await hasLiveApiKeys(db))
    ? 'required: API keys exist in the store'
    : 'open: no API key exists yet; `opsd keys create` makes one, and from then on every route needs a key';
}
