import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Db } from '../src/store/db.js';
import { readStateEstimates, type StateEstimate } from '../src/store/stateEstimates.js';
import { createEstimateKeeper, estimateLags, LAG_FLOOR, MIN_ANALYZE_INTERVAL_MS, tableUnknown, UNKNOWN_TABLE_PAGES } from '../src/worker/estimateKeeper.js';
import { acceptMany } from './support/acceptMany.js';
import { databaseSkip, postgresBackend, type TestDb } from './support/backends.js';
import { catchUp } from './support/caughtUp.js';
import { claimCall } from './support/claimCall.js';
import { pagesRead } from './support/pagesRead.js';
import { rolledBack } from './support/rolledBack.js';
import { testLogger, uniqueId } from './support/helpers.js';

describe('when the planner\'s estimate of a state lags', () => {
  const of = (estimated: number | null, counted: number): StateEstimate => ({ state: 'PENDING', estimated, counted });

  it('lags when thousands are there and the estimate is under a quarter of them', () => {
    assert.equal(estimateLags(of(0, 5_000)), true);
    assert.equal(estimateLags(of(2_000, 10_000)), true);
    assert.equal(estimateLags(of(0.5, LAG_FLOOR)), true);
  });

  it('does not lag for a few rows, within four times, above the count, or before anything was counted', () => {
    assert.equal(estimateLags(of(0, LAG_FLOOR - 1)), false);
    assert.equal(estimateLags(of(2_000, 8_000)), false);
    assert.equal(estimateLags(of(50_000, 10_000)), false);
    assert.equal(estimateLags(of(null, 10_000)), false);
  });
});

describe('when a table never analyzed has outgrown what the planner assumes of it', () => {
  it('has once it holds more pages than the planner assumed, and never once analyzed', () => {
    assert.equal(tableUnknown({ known: false, pages: UNKNOWN_TABLE_PAGES }), true);
    assert.equal(tableUnknown({ known: false, pages: UNKNOWN_TABLE_PAGES - 1 }), false);
    assert.equal(tableUnknown({ known: true, pages: 100 * UNKNOWN_TABLE_PAGES }), false);
  });
});

/**
 * Autovacuum analyzes a table once a tenth of it has changed: on a large table, a burst of PENDING
 * operations or thousands of long attempts running stay unknown to the planner meanwhile, and its
 * plans read every such row for each row they look up. The leader's estimate keeper analyzes
 * `operations` when its estimates lag what is there.
 */
describe('the estimate keeper', { skip: databaseSkip }, () => {
  let handle: TestDb | undefined;
  const db = (): Db => {
    if (!handle) throw new Error('database not open yet');
    return handle.db;
  };
  before(async () => {
    handle = await postgresBackend.open();
    // Its own database: autovacuum must not analyze under the test.
    await db().query('ALTER TABLE operations SET (autovacuum_enabled = off)');
  });
  after(async () => {
    await handle?.cleanup();
  });

  const estimateOf = async (state: StateEstimate['state']) => (await readStateEstimates(db(), 10_000)).find((e) => e.state === state) as StateEstimate;

  /** Pages a claim of 100 of `type` reads, rolled back so that it starts nothing. */
  const claimPages = (type: string) =>
    db().withSession(async (session) => {
      await session.query(...claimCall({ types: [uniqueId('idle')], limit: 100 }));
      return rolledBack(session, () => pagesRead(session, ...claimCall({ types: [type], limit: 100 })));
    });

  it('analyzes once a burst of PENDING outgrows the estimate of a queue that had caught up, and leaves fresh statistics alone', async () => {
    await catchUp(db(), 2_000);
    let clock = 0;
    const keeper = createEstimateKeeper({ db: db(), logger: testLogger(), now: () => clock });
    assert.equal(await keeper.runOnce(), 0, 'nothing lags with nothing PENDING');
    await acceptMany(db(), 5_000, () => ({ type: uniqueId('burst'), orderingKey: uniqueId('key') }));
    assert.equal((await estimateOf('PENDING')).estimated, 0, 'the planner still expects no PENDING operation');
    assert.equal(await keeper.runOnce(), 1, 'the keeper analyzed');
    const after = await estimateOf('PENDING');
    assert.ok((after.estimated ?? 0) >= 4_000, `the planner expects ${after.estimated} PENDING of ${after.counted}`);
    clock += MIN_ANALYZE_INTERVAL_MS;
    assert.equal(await keeper.runOnce(), 0, 'fresh statistics are left alone');
  });

  it('analyzes once thousands run that the planner expects few of, after which a claim reads a fraction of the pages', async () => {
    const type = uniqueId('type');
    await acceptMany(db(), 100, () => ({ type, orderingKey: uniqueId('key'), priority: 10 }));
    // As heads whose marks went missing: the first pass probes their keys (a marked head it takes at
    // its mark's word, and only the start probes it, one key at a time).
    await db().query(`UPDATE operations SET head = NULL WHERE type = $1`, [type]);
    await db().query('ANALYZE operations');
    const running = await acceptMany(db(), 8_000, () => ({ type: 'long', orderingKey: uniqueId('key'), priority: -10 }));
    await db().query(`UPDATE operations SET state = 'PROCESSING', head = NULL WHERE id = ANY($1::uuid[])`, [running]);
    // Expecting a few running, the claim hashes the keys of all of them at each call.
    const hashing = await claimPages(type);
    const keeper = createEstimateKeeper({ db: db(), logger: testLogger() });
    assert.equal(await keeper.runOnce(), 1, 'the keeper analyzed');
    const probing = await claimPages(type);
    assert.ok(probing * 2 <= hashing, `a claim of 100 with 8,000 running read ${probing} pages once analyzed, against ${hashing} before`);
  });

  it('does not wait for a vacuum under way: it skips, and analyzes a minute later', async () => {
    await catchUp(db());
    await acceptMany(db(), 2 * LAG_FLOOR, () => ({ type: uniqueId('burst'), orderingKey: uniqueId('key') }));
    let clock = 0;
    const keeper = createEstimateKeeper({ db: db(), logger: testLogger(), now: () => clock });
    const vacuum = await db().withSession((session) =>
      rolledBack(session, async () => {
        // The lock a vacuum holds.
        await session.query('LOCK TABLE operations IN SHARE UPDATE EXCLUSIVE MODE');
        return keeper.runOnce();
      }),
    );
    assert.equal(vacuum, 0, 'nothing analyzed while the table was locked');
    assert.ok(estimateLags(await estimateOf('PENDING')), 'the estimate still lags');
    clock += MIN_ANALYZE_INTERVAL_MS;
    assert.equal(await keeper.runOnce(), 1, 'analyzed once the lock was gone');
  });

  it('analyzes a new store\'s table once it outgrows what the planner assumes of a table never analyzed, and only then', async () => {
    const fresh = await postgresBackend.open();
    try {
      await fresh.db.query('ALTER TABLE operations SET (autovacuum_enabled = off)');
      let clock = 0;
      const keeper = createEstimateKeeper({ db: fresh.db, logger: testLogger(), now: () => clock });
      const type = uniqueId('type');
      const payload = { text: 'x'.repeat(300) };
      await acceptMany(fresh.db, 50, () => ({ type, orderingKey: uniqueId('key'), payload }));
      assert.equal(await keeper.runOnce(), 0, 'a table of a few pages is left to autovacuum');
      // Done as fast as they came, as in a store that keeps up: no state's estimate lags.
      await acceptMany(fresh.db, 1_000, () => ({ type, orderingKey: uniqueId('key'), payload }));
      await fresh.db.query(`UPDATE operations SET state = 'COMPLETED', head = NULL`);
      assert.equal((await readStateEstimates(fresh.db, 10_000)).some(estimateLags), false, 'no estimate lags');
      assert.equal(await keeper.runOnce(), 1, 'the keeper analyzed');
      const { rows } = await fresh.db.query<{ reltuples: number }>(`SELECT reltuples::float8 AS reltuples FROM pg_class WHERE oid = 'operations'::regclass`);
      assert.ok(Number(rows[0]?.reltuples) >= 1_000, `the planner knows ${rows[0]?.reltuples} rows`);
      clock += MIN_ANALYZE_INTERVAL_MS;
      assert.equal(await keeper.runOnce(), 0, 'a table analyzed once is left to autovacuum and to the estimates');
    } finally {
      await fresh.cleanup();
    }
  });

  it('analyzes at most once a minute', async () => {
    let clock = 0;
    const keeper = createEstimateKeeper({ db: db(), logger: testLogger(), now: () => clock });
    const burst = async () => {
      await catchUp(db());
      await acceptMany(db(), 2 * LAG_FLOOR, () => ({ type: uniqueId('burst'), orderingKey: uniqueId('key') }));
    };
    await burst();
    assert.equal(await keeper.runOnce(), 1);
    await burst();
    clock += MIN_ANALYZE_INTERVAL_MS - 1;
    assert.equal(await keeper.runOnce(), 0, 'a minute has not passed');
    clock += 1;
    assert.equal(await keeper.runOnce(), 1, 'a minute has passed');
  });
});
