import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { campaignForLeadership } from '../src/cluster/leaderElection.js';
import { findOwnersWithoutLiveness, holdWorkerLiveness, LIVENESS_LOCK_NAMESPACE } from '../src/cluster/workerLiveness.js';
import { runPeriodically } from '../src/lib/periodic.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { claimOperations } from '../src/store/claimOperations.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { createLeaseRescuer } from '../src/worker/leaseRescuer.js';
import { postgresBackend, type TestDb } from './support/backends.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { startTcpProxy, throughProxy } from './support/tcpProxy.js';

describe('worker liveness and leader sessions [postgres]', { skip: postgresBackend.skip }, () => {
  let handle: TestDb;
  before(async () => {
    handle = await postgresBackend.open();
  });
  after(() => handle.cleanup());

  it('the leases of a worker whose liveness session is gone are rescued long before they expire', async () => {
    const db = handle.db;
    const type = uniqueId('type');
    const workerId = uniqueId('worker');
    const [accepted] = await acceptOperations(db, [{ externalId: uniqueId(), type, payload: null, maxAttempts: 3 }], new Date());
    const liveness = holdWorkerLiveness({ databaseUrl: handle.url as string, workerId, logger: testLogger(), intervalMs: 100 });
    let stopped = false;
    try {
      const [claimed] = await claimOperations(db, { limit: 1, types: [type], now: () => new Date(), leaseOwner: workerId, leaseMs: 600_000 });
      assert.equal(claimed?.id, accepted!.operation.id);
      await waitFor('the liveness lock to be held', async () => !(await findOwnersWithoutLiveness(db)).includes(workerId));
      const rescuer = createLeaseRescuer({ db, logger: testLogger(), ownersWithoutLiveness: () => findOwnersWithoutLiveness(db), ownerGoneAfterMs: 300 });
      await rescuer.runOnce();
      assert.equal((await getOperation(db, accepted!.operation.id))?.status, 'PROCESSING', 'a live holder keeps its lease');

      await liveness.stop(); // the process is gone: its session, and the lock with it
      stopped = true;
      const rescued = await waitFor('the lease to be rescued', async () => {
        await rescuer.runOnce();
        const op = await getOperation(db, accepted!.operation.id);
        return op?.status === 'PENDING' ? op : null;
      });
      // Rescued within the wait although its lease had 600 s left: the holder's lock decided.
      assert.equal(rescued.attempts, 1);
      assert.deepEqual((await listEvents(db, accepted!.operation.id)).map((e) => e.event.type), ['received', 'started', 'lease_expired']);
    } finally {
      if (!stopped) await liveness.stop();
    }
  });

  it('a worker whose liveness session is terminated takes its lock back before the leader would rescue it', async () => {
    const db = handle.db;
    const type = uniqueId('type');
    const workerId = uniqueId('worker');
    const [accepted] = await acceptOperations(db, [{ externalId: uniqueId(), type, payload: null, maxAttempts: 3 }], new Date());
    // A long check interval: only reacting to the session's end can bring the lock back in time.
    const liveness = holdWorkerLiveness({ databaseUrl: handle.url as string, workerId, logger: testLogger(), intervalMs: 10_000 });
    const stopRescuer = runPeriodically(
      createLeaseRescuer({ db, logger: testLogger(), ownersWithoutLiveness: () => findOwnersWithoutLiveness(db), ownerGoneAfterMs: 1500 }),
      100,
      testLogger(),
    );
    try {
      await claimOperations(db, { limit: 1, types: [type], now: () => new Date(), leaseOwner: workerId, leaseMs: 600_000 });
      await waitFor('the liveness lock to be held', async () => !(await findOwnersWithoutLiveness(db)).includes(workerId));
      const holder = async () =>
        (
          await db.query<{ pid: number }>(
            `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid
               AND objid = (hashtext($2)::bigint & 4294967295)::oid AND objsubid = 2`,
            [LIVENESS_LOCK_NAMESPACE, workerId],
          )
        ).rows[0]?.pid;
      const before = await holder();
      await db.query('SELECT pg_terminate_backend($1)', [before]);
      await waitFor('the lock to be held again, by a new session', async () => {
        const now = await holder();
        return now !== undefined && now !== before;
      });
      assert.equal((await getOperation(db, accepted!.operation.id))?.status, 'PROCESSING', 'a live worker was rescued');
    } finally {
      await stopRescuer();
      await liveness.stop();
    }
  });

  it('a leader whose session goes silent steps down, the server frees its lock, and there are never two leaders', async () => {
    const database = await createServerDatabase(process.env.DATABASE_URL as string);
    const real = new URL(database.url);
    const proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
    const deposed: string[] = [];
    const campaign = (name: string, url: string) =>
      campaignForLeadership({
        databaseUrl: url,
        logger: testLogger(),
        intervalMs: 100,
        checkTimeoutMs: 400,
        idleSessionTimeoutS: 2,
        onElected: () => {},
        onDeposed: () => {
          deposed.push(name);
        },
      });
    const first = campaign('first', throughProxy(database.url, proxy.port));
    let second: ReturnType<typeof campaign> | null = null;
    let bothAtOnce = 0;
    const sampler = setInterval(() => {
      if (first.isLeader() && second?.isLeader()) bothAtOnce += 1;
    }, 10);
    try {
      await waitFor('the first campaigner to lead', () => first.isLeader());
      second = campaign('second', database.url);
      proxy.freeze();
      await waitFor('the silent leader to step down', () => !first.isLeader(), { timeoutMs: 10_000 });
      assert.deepEqual(deposed, ['first']);
      await waitFor('the server to free the lock for the other campaigner', () => second?.isLeader(), { timeoutMs: 30_000 });
      assert.equal(bothAtOnce, 0, 'two processes believed they led at the same time');
    } finally {
      clearInterval(sampler);
      proxy.restore();
      await Promise.all([first.stop(), second?.stop()]);
      await proxy.close();
      await database.drop();
    }
  });
});
