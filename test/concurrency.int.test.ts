import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { claimOperations } from '../src/store/claimOperations.js';
import type { Db } from '../src/store/db.js';
import { getOperation } from '../src/store/readOperations.js';
import { buildApp } from '../src/api/app.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import { raceTimeout } from '../src/lib/withTimeout.js';
import { createPgDb } from '../src/store/pgDb.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { postgresBackend, type TestDb } from './support/backends.js';
import { gate, LOOP_DELAY_UNCHECKED, testLogger, uniqueId, waitFor } from './support/helpers.js';

/**
 * `db` whose transactions, once their work is done, wait for `release` before they commit. Work
 * given a session of its own (a claim: one statement, its own transaction) runs in such a
 * transaction too, so its locks and its writes stay uncommitted until then.
 */
function lateCommitting(db: Db, release: Promise<void>, onReady: () => void): Db {
  const late: Db['transaction'] = (fn) =>
    db.transaction(async (tx) => {
      const value = await fn(tx);
      onReady();
      await release;
      return value;
    });
  return { ...db, transaction: late, withSession: late };
}

// Concurrent sessions are the point: PGlite has one session, so this runs on PostgreSQL only.
describe('concurrent sessions [postgres]', { skip: postgresBackend.skip }, () => {
  let handle: TestDb;
  before(async () => {
    handle = await postgresBackend.open();
  });
  after(() => handle.cleanup());

  it('an earlier operation whose insert commits late is not claimed while a later one is being claimed', async () => {
    const db = handle.db;
    const key = uniqueId('key');
    const type = uniqueId('type');
    const claim = (on: Db, owner: string) =>
      claimOperations(on, { limit: 10, types: [type], now: () => new Date(), leaseOwner: owner, leaseMs: 30_000 });

    // X takes the earlier seq but its insert stays uncommitted while Y is accepted and committed.
    const xInserted = gate();
    const xCommit = gate();
    const xAccepted = lateCommitting(db, xCommit.opened, xInserted.open).transaction((tx) =>
      acceptOperations(tx as Db, [{ externalId: uniqueId('x'), type, orderingKey: key, payload: null, maxAttempts: 1 }], new Date()),
    );
    await xInserted.opened;
    const [y] = await acceptOperations(db, [{ externalId: uniqueId('y'), type, orderingKey: key, payload: null, maxAttempts: 1 }], new Date());

    // Worker 1 claims Y (X is invisible to it) and commits late.
    const firstReady = gate();
    const firstCommit = gate();
    const first = claim(lateCommitting(db, firstCommit.opened, firstReady.open), 'worker-1');
    await firstReady.opened;

    // X commits; worker 2 claims while worker 1's claim of Y is still uncommitted.
    xCommit.open();
    const [x] = await xAccepted;
    const second = await claim(db, 'worker-2');
    firstCommit.open();
    const firstClaimed = await first;

    assert.deepEqual(firstClaimed.map((op) => op.id), [y!.operation.id], 'worker 1 claimed Y');
    assert.deepEqual(second, [], 'worker 2 claimed nothing on the key while Y was being claimed');
    const processing = await Promise.all([x!.operation.id, y!.operation.id].map((id) => getOperation(db, id)));
    assert.equal(processing.filter((op) => op?.status === 'PROCESSING').length, 1, 'one operation of the key at a time');
  });

  it('a capped claim that counted an attempt which ended meanwhile does not hold the type back until the next poll', async () => {
    const type = uniqueId('test.capped-once');
    const registry = new HandlerRegistry().register(defineOperation({ type, concurrency: 1, handle: () => null }) as never);
    // The race, forced: the second claim counts the first attempt as in flight; the first attempt's
    // outcome is written only after that count; the second claim commits only after the attempt ended.
    const counted = gate();
    const claimCommit = gate();
    let claims = 0;
    const db: Db = {
      ...handle.db,
      query: (async (sql: Parameters<Db['query']>[0], params?: readonly unknown[]) => {
        await counted.opened;
        return handle.db.query(sql, params);
      }) as Db['query'],
      transaction: (fn) =>
        handle.db.transaction(async (tx) => {
          claims += 1;
          const claim = claims;
          const value = await fn({
            ...tx,
            query: (async (sql: Parameters<Db['query']>[0], params?: readonly unknown[]) => {
              const result = await tx.query(sql, params);
              if (claim === 2 && (typeof sql === 'string' ? sql : sql.text).includes(`state = 'PROCESSING'`)) counted.open();
              return result;
            }) as Db['query'],
          });
          if (claim === 2) await claimCommit.opened;
          return value;
        }),
    };
    const worker = new Worker({ db, registry, logger: testLogger(), concurrency: 2, typeConcurrency: { [type]: 1 }, pollIntervalMs: 60_000 });
    const [first, second] = await acceptOperations(handle.db, [1, 2].map(() => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1 })), new Date());
    worker.start();
    try {
      await waitFor('the first to complete once the second claim has counted it', async () => (await getOperation(handle.db, first!.operation.id))?.status === 'COMPLETED');
      assert.equal(claims, 2);
      claimCommit.open();
      await waitFor('the second to complete without waiting for a poll', async () => (await getOperation(handle.db, second!.operation.id))?.status === 'COMPLETED', { timeoutMs: 5000 });
    } finally {
      counted.open();
      claimCommit.open();
      await worker.stop(1000);
    }
  });

  it('claimers racing on many keys never hold two operations of one key', async () => {
    const db = handle.db;
    const type = uniqueId('type');
    const keys = Array.from({ length: 20 }, () => uniqueId('key'));
    await acceptOperations(
      db,
      Array.from({ length: 200 }, (_, i) => ({ externalId: uniqueId(), type, orderingKey: keys[i % keys.length] as string, payload: null, maxAttempts: 1 })),
      new Date(),
    );
    const claims = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        claimOperations(db, { limit: 50, types: [type], now: () => new Date(), leaseOwner: `w${i}`, leaseMs: 30_000 }),
      ),
    );
    const claimedKeys = claims.flat().map((op) => op.orderingKey);
    assert.ok(claimedKeys.length >= keys.length / 2, `only ${claimedKeys.length} claims`);
    assert.equal(new Set(claimedKeys).size, claimedKeys.length, 'a key claimed twice');
  });

  it('overlapping batches submitted in opposite orders never deadlock, and keep submission order', async () => {
    const db = handle.db;
    const type = uniqueId('type');
    for (let round = 0; round < 10; round += 1) {
      const ids = Array.from({ length: 50 }, () => uniqueId('ext'));
      const items = ids.map((externalId) => ({ externalId, type, payload: null, maxAttempts: 1 }));
      const [forward, backward] = await Promise.all([
        acceptOperations(db, items, new Date()),
        acceptOperations(db, [...items].reverse(), new Date()),
      ]);
      const accepted = [...forward!, ...backward!].filter((r) => r.outcome === 'accepted');
      assert.equal(accepted.length, ids.length, 'each operation accepted exactly once');
      const seqOf = new Map(accepted.map((r) => [r.operation.externalId, r.operation.seq]));
      const fromForward = forward!.filter((r) => r.outcome === 'accepted').map((r) => r.operation.seq);
      assert.deepEqual(fromForward, [...fromForward].sort((a, b) => a - b), 'a batch keeps its submission order');
      assert.equal(seqOf.size, ids.length);
    }
  });

  it('with every pooled connection taken, a request gets 503 with Retry-After instead of waiting forever', async () => {
    const small = createPgDb({ connectionString: handle.url as string, max: 1, connectTimeoutMs: 300 });
    const app = buildApp({ db: small, registry: await loadHandlers(undefined), dispatcher: createInProcessDispatcher(null), logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    const release = gate();
    const held = gate();
    const holder = small.transaction(async () => {
      held.open();
      await release.opened;
    });
    try {
      await held.opened;
      const answer = await raceTimeout(
        app.inject({ method: 'POST', url: '/v1/operations', payload: { type: 'demo.echo', external_id: uniqueId(), payload: null } }),
        10_000,
      );
      assert.notEqual(answer, 'timeout', 'the request waited for a connection without bound');
      if (answer === 'timeout') return;
      assert.equal(answer.statusCode, 503);
      assert.equal(answer.json().error.code, 'OPSD_ERR_UNAVAILABLE');
      assert.ok(Number(answer.headers['retry-after']) > 0);
    } finally {
      release.open();
      await holder;
      await app.close();
      await small.close();
    }
  });
});
