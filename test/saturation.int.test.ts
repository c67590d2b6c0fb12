import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import { RETRY_AFTER_S } from '../src/domain/errors.js';
import type { Db } from '../src/store/db.js';
import { migrate } from '../src/store/migrate.js';
import { createPgliteDb } from '../src/store/pgliteDb.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { testLogger, waitFor } from './support/helpers.js';

/** Longer than the 1 s over which the api takes the event loop's mean delay. */
const BLOCK_MS = 1_500;

/** Holds the event loop `times` times for BLOCK_MS, letting it turn once between. */
async function blockEventLoop(times: number): Promise<void> {
  for (let i = 0; i < times; i += 1) {
    const until = Date.now() + BLOCK_MS;
    while (Date.now() < until) {
      // Busy: what a long synchronous task (a large WASM statement, a huge JSON) does to the loop.
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('an api whose event loop is saturated', () => {
  let db: Db;
  let app: FastifyInstance;
  before(async () => {
    db = await createPgliteDb(undefined);
    await migrate(db);
    app = buildApp({ db, registry: await loadHandlers(undefined), dispatcher: createInProcessDispatcher(null), logger: testLogger() });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await db.close();
  });

  it('answers 503 OPSD_ERR_SATURATED with Retry-After, writes nothing, keeps health answering, and recovers', async () => {
    // Three blocks cover at least one whole window of the mean, wherever its edges fall.
    await blockEventLoop(3);
    const refused = await app.inject({ method: 'POST', url: '/v1/operations', payload: { type: 'demo.echo', external_id: 'saturated', payload: {} } });
    assert.equal(refused.statusCode, 503, refused.body);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, 'OPSD_ERR_SATURATED');
    assert.equal(refused.headers['retry-after'], String(RETRY_AFTER_S.OPSD_ERR_SATURATED));
    assert.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200, 'health is never refused');
    const back = await waitFor('a request served again', async () => {
      const response = await app.inject({ method: 'GET', url: '/v1/operations?external_id=saturated' });
      return response.statusCode === 200 ? response : null;
    }, { timeoutMs: 5_000, intervalMs: 100 });
    assert.deepEqual(back.json<{ operations: unknown[] }>().operations, [], 'the refused submission wrote nothing');
  });
});
