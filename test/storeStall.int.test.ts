import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import type { IntakeServer } from '../src/intake/intakeServer.js';
import type { Db } from '../src/store/db.js';
import { createPgDb } from '../src/store/pgDb.js';
import { migrate } from '../src/store/migrate.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { postgresBackend } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId, waitFor } from './support/helpers.js';
import { startTestIntake } from './support/intakeServer.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { startTcpProxy, throughProxy } from './support/tcpProxy.js';

/** How long a submission may wait for the store in these tests. */
const ACCEPT_TIMEOUT_MS = 300;
/** Far above the deadline, far below a hang: answers past this would be waits without a bound. */
const ANSWERED_WITHIN_MS = 3000;

/**
 * A store that stops answering without closing anything (a partition, a frozen server): every
 * connection of the pool stays open and nothing comes back. Submissions must still be answered,
 * at their deadline, with 503 and Retry-After; and once the store answers again, the same
 * submission is safe to send again.
 */
describe('submissions to a store that stops answering [postgres]', { skip: postgresBackend.skip }, () => {
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let db: Db;
  let direct: Db;
  let app: FastifyInstance;
  let intake: IntakeServer;

  before(async () => {
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    direct = createPgDb({ connectionString: database.url, max: 2 });
    await migrate(direct);
    const real = new URL(database.url);
    proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
    db = createPgDb({ connectionString: throughProxy(database.url, proxy.port), max: 2, connectTimeoutMs: 1000, statementTimeoutMs: 2000 });
    const registry = await loadHandlers(undefined);
    app = buildApp({ db, registry, dispatcher: createInProcessDispatcher(null), logger: testLogger(), acceptTimeoutMs: ACCEPT_TIMEOUT_MS, pressure: LOOP_DELAY_UNCHECKED });
    await app.ready();
    intake = await startTestIntake(db, registry, { bodyLimit: 1024 * 1024, acceptTimeoutMs: ACCEPT_TIMEOUT_MS });
  });
  after(async () => {
    await app.close();
    await intake.close();
    proxy.restore();
    await db.close();
    await direct.close();
    await proxy.close();
    await database.drop();
  });

  const single = (externalId: string) => ({ type: 'demo.echo', external_id: externalId, payload: { n: 1 } });

  /** Sends one request through the api (in-process) or the intake (a socket), and times the answer. */
  async function timed(server: 'api' | 'intake', url: string, body: unknown) {
    const started = Date.now();
    if (server === 'api') {
      const response = await app.inject({ method: 'POST', url, payload: body as object });
      return { ms: Date.now() - started, status: response.statusCode, retryAfter: response.headers['retry-after'], body: response.json() as Record<string, unknown> };
    }
    const response = await fetch(`${intake.url}${url}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { ms: Date.now() - started, status: response.status, retryAfter: response.headers.get('retry-after') ?? undefined, body: (await response.json()) as Record<string, unknown> };
  }

  for (const server of ['api', 'intake'] as const) {
    it(`${server}: single and batch submissions get 503 with Retry-After at their deadline, and a resubmission succeeds once the store is back`, async () => {
      // Warm connections first: the stall must catch statements on sessions that are already open.
      const warm = await timed(server, '/v1/operations', single(uniqueId('warm')));
      assert.equal(warm.status, 202);

      proxy.freeze();
      const singleId = uniqueId('stalled');
      const batchIds = [uniqueId('stalled-batch'), uniqueId('stalled-batch')];
      const answers = await Promise.all([
        timed(server, '/v1/operations', single(singleId)),
        timed(server, '/v1/operations', single(uniqueId('stalled'))),
        timed(server, '/v1/operations/batch', { operations: batchIds.map(single) }),
      ]);
      proxy.restore();

      for (const answer of answers) {
        assert.ok(answer.ms < ANSWERED_WITHIN_MS, `answered after ${answer.ms} ms`);
        assert.equal(answer.status, 503, JSON.stringify(answer.body));
        assert.equal((answer.body.error as { code: string }).code, 'OPSD_ERR_UNAVAILABLE');
        assert.ok(Number(answer.retryAfter) > 0, 'Retry-After is set');
      }

      // The store answers again: the same submissions go through, whether or not the stalled
      // statements ever reached it (a replay answers 200, a first write 202).
      const again = await waitFor('the store to answer again', async () => {
        const answer = await timed(server, '/v1/operations', single(singleId));
        return answer.status === 202 || answer.status === 200 ? answer : null;
      }, { timeoutMs: 15_000 });
      assert.ok([200, 202].includes(again.status));
      const batch = await timed(server, '/v1/operations/batch', { operations: batchIds.map(single) });
      assert.equal(batch.status, 200);
      for (const item of batch.body.results as { status: number }[]) assert.ok([200, 202].includes(item.status));
      const { rows } = await direct.query<{ n: string }>('SELECT count(*) AS n FROM operations WHERE external_id = ANY($1::text[])', [[singleId, ...batchIds]]);
      assert.equal(Number(rows[0]?.n), 3, 'each submission stored once');
    });
  }
});
