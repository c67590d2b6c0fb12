import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { createPgDb } from '../src/store/pgDb.js';
import { getOperation } from '../src/store/readOperations.js';
import { postgresBackend } from './support/backends.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { runOpsd, spawnOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { startTcpProxy, throughProxy } from './support/tcpProxy.js';

/** The worker's health URL, from its log, as soon as its health server listens. */
function healthUrlOf(output: string): string | null {
  for (const line of output.split('\n')) {
    if (line.includes('"health server listening"')) return (JSON.parse(line) as { health_url: string }).health_url;
  }
  return null;
}

describe('a worker outlives the store [postgres]', { skip: postgresBackend.skip }, () => {
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let worker: OpsdProcess | null = null;
  before(async () => {
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    assert.equal((await runOpsd(['migrate'], { DATABASE_URL: database.url })).code, 0);
    const real = new URL(database.url);
    proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
  });
  after(async () => {
    if (worker && worker.child.exitCode === null) {
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    await proxy.close();
    await database.drop();
  });

  it('starts while the store is down, waits not ready, then runs work; a store outage later does not end it', async () => {
    const db = createPgDb({ connectionString: database.url, max: 2 });
    try {
      proxy.cut();
      worker = await spawnOpsd(['worker', '--health-port', '0'], { DATABASE_URL: throughProxy(database.url, proxy.port), REDIS_URL: '', DB_POOL_MAX: '3' }, { waitFor: null });
      const started = worker;
      const healthUrl = await waitFor('the health server', () => healthUrlOf(started.output()));
      await waitFor('the worker to say it waits for the store', () => started.output().includes('store unreachable: waiting for it'));
      assert.equal((await fetch(`${healthUrl}/health/ready`)).status, 503, 'not ready while the store is down');
      assert.equal(started.child.exitCode, null, 'still running');

      proxy.restore();
      await waitFor('ready once the store is back', async () => (await fetch(`${healthUrl}/health/ready`)).status === 200, { timeoutMs: 30_000 });
      const [first] = await acceptOperations(db, [{ externalId: uniqueId(), type: 'demo.echo', payload: 1, maxAttempts: 3 }], new Date());
      await waitFor('the first operation to complete', async () => (await getOperation(db, first!.operation.id))?.status === 'COMPLETED');

      // Every session of the worker is cut, and new ones refused for a while.
      proxy.cut();
      await waitFor('the worker to notice the outage', () => proxy.refused >= 3, { timeoutMs: 30_000 });
      assert.equal(started.child.exitCode, null, `the worker exited on a lost connection:\n${started.output().slice(-2000)}`);
      proxy.restore();
      const [second] = await acceptOperations(db, [{ externalId: uniqueId(), type: 'demo.echo', payload: 2, maxAttempts: 3 }], new Date());
      await waitFor('work to resume after the outage', async () => (await getOperation(db, second!.operation.id))?.status === 'COMPLETED', { timeoutMs: 30_000 });
      assert.equal(started.child.exitCode, null);
    } finally {
      await db.close();
    }
  });
});
