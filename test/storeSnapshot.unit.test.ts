import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { createStoreSnapshot } from '../src/observe/storeSnapshot.js';
import type { Db, QueryResult } from '../src/store/db.js';

/** A store whose counts of active operations take `countMs`; every other read answers at once. */
function slowToCount(countMs: number) {
  const reads = { counts: 0, others: 0 };
  let pending = 7;
  const db = {
    kind: 'postgres',
    async query<R>(sql: string): Promise<QueryResult<R>> {
      if (sql.includes('FROM operations')) {
        reads.counts += 1;
        if (countMs > 0) await new Promise((resolve) => setTimeout(resolve, countMs));
        const rows = sql.includes('count(*)') ? [{ type: 'demo.echo', state: 'PENDING', n: pending, due: pending }] : [{ type: 'demo.echo', age: 3 }];
        return { rows: rows as R[], rowCount: rows.length };
      }
      reads.others += 1;
      const rows = sql.includes('pg_locks') ? [{ workers: 2, leaders: 1 }] : [];
      return { rows: rows as R[], rowCount: rows.length };
    },
  } as unknown as Db;
  return { db, reads, setPending: (n: number) => (pending = n) };
}

describe('the store snapshot', () => {
  it('reads the counts of active operations less often when they take long, and the rest at every interval', async () => {
    const store = slowToCount(30);
    // 30 ms of counting at a share of 10%: at most one count every 300 ms, against a reading every 10 ms.
    const snapshot = createStoreSnapshot({ db: store.db, logger: pino({ level: 'silent' }), intervalMs: 10, countTimeShare: 0.1 });
    await snapshot.start();
    assert.deepEqual(snapshot.current.active, [{ type: 'demo.echo', state: 'PENDING', count: 7 }]);
    store.setPending(9);
    await new Promise((resolve) => setTimeout(resolve, 800));
    snapshot.stop();
    // Two queries per count: the start's, then at most one every 300 ms.
    const counts = store.reads.counts / 2;
    assert.ok(counts >= 2 && counts <= 4, `${counts} counts in 0.8 s`);
    // Resources and locks: two queries per reading, one reading about every 10 ms (longer while a count runs).
    const readings = store.reads.others / 2;
    assert.ok(readings >= 3 * counts, `${readings} readings against ${counts} counts in 0.8 s`);
    assert.deepEqual(snapshot.current.active, [{ type: 'demo.echo', state: 'PENDING', count: 9 }], 'a later count replaced the first');
    assert.equal(snapshot.current.due, 9);
    assert.equal(snapshot.current.workersAlive, 2);
  });

  it('reads them at every interval while they are quick', async () => {
    const store = slowToCount(0);
    // A share of 100%: a count is due again as soon as a time as long as it took has passed, well within an interval.
    const snapshot = createStoreSnapshot({ db: store.db, logger: pino({ level: 'silent' }), intervalMs: 10, countTimeShare: 1 });
    await snapshot.start();
    await new Promise((resolve) => setTimeout(resolve, 300));
    snapshot.stop();
    assert.ok(store.reads.others >= 4, 'a few readings');
    assert.equal(store.reads.counts, store.reads.others, 'every reading counted');
  });
});
