import assert from 'node:assert/strict';
import { it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { sqlText, type Db, type Queryable } from '../src/store/db.js';
import { getOperation } from '../src/store/readOperations.js';
import { registerWebhookDeliveries } from '../src/webhooks/deliveryDestinations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { describeEachBackend } from './support/backends.js';
import { gate, testLogger, uniqueId, waitFor } from './support/helpers.js';

/** The store as it is, counting the calls of the claim function (each one scans the PENDING rows). */
function countingClaims(db: Db): { db: Db; claims: () => number } {
  let claims = 0;
  const counted = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      if (sqlText(sql).includes('opsd_claim(')) claims += 1;
      return q.query(sql, params);
    },
    exec: (sql) => q.exec(sql),
  });
  const wrapped: Db = {
    ...counted(db),
    kind: db.kind,
    poolStats: () => db.poolStats(),
    transaction: (fn) => db.transaction((tx) => fn(counted(tx))),
    withSession: (fn) => db.withSession((session) => fn(counted(session))),
    close: () => db.close(),
  };
  return { db: wrapped, claims: () => claims };
}

/**
 * A scan of the claimable work tests every PENDING row queued behind busy keys, so a worker scans
 * again only when something may have changed. The look at a group with limits of its own (webhook
 * deliveries, in every worker) comes back every 100 ms while nothing of it is due: that look must
 * not bring a scan of everything else with it.
 */
describeEachBackend('claim scans', (db) => {
  it('a worker busy on one key with work queued behind it does not scan again at each look at the webhook deliveries', async () => {
    const registry = new HandlerRegistry();
    const type = uniqueId('blocked');
    const release = gate();
    const started: string[] = [];
    registry.register(
      defineOperation({
        type,
        handle: async ({ operation }) => {
          started.push(operation.id);
          await release.opened;
          return null;
        },
      }),
    );
    registerWebhookDeliveries(registry, db(), {});
    const { db: store, claims } = countingClaims(db());
    const worker = new Worker({ db: store, registry, logger: testLogger(), pollIntervalMs: 10_000, concurrency: 10 });
    const key = uniqueId('key');
    const accepted = await acceptOperations(
      db(),
      Array.from({ length: 5 }, () => ({ externalId: uniqueId(), type, payload: {}, orderingKey: key, maxAttempts: 1 })),
      new Date(Date.now() - 1000),
    );
    worker.start();
    try {
      await waitFor('the first operation to start', async () => started.length === 1 || null);
      const before = claims();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const scans = claims() - before;
      assert.ok(scans <= 1, `${scans} scans in a second with nothing new to find`);
      release.open();
      for (const { operation } of accepted) {
        await waitFor(`operation ${operation.id} to complete`, async () => ((await getOperation(db(), operation.id))?.status === 'COMPLETED') || null);
      }
      assert.deepEqual(started, accepted.map((a) => a.operation.id), 'the key ran in order');
    } finally {
      release.open();
      await worker.stop(1000);
    }
  });
});
