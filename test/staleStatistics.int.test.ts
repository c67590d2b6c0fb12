import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Db } from '../src/store/db.js';
import { claimOperations } from '../src/store/claimOperations.js';
import { forgottenHeadsQuery } from '../src/store/findForgottenHeads.js';
import { markHeadsOnKeys } from '../src/store/headMarks.js';
import { NEXT_ON_KEY } from '../src/store/saveTransitions.js';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { catchUp } from './support/caughtUp.js';
import { claimCall } from './support/claimCall.js';
import { completeAttempts, isFinishAndStart } from './support/completeAttempts.js';
import { measuringPages, pagesRead } from './support/pagesRead.js';
import { rolledBack } from './support/rolledBack.js';
import { uniqueId } from './support/helpers.js';

/** Operations done before the queue went idle. */
const HISTORY = 3_000;
/** Each burst accepted after the table was vacuumed and analyzed with nothing PENDING. */
const BURST = 5_000;
/** Keys of the burst that queues several on each. */
const KEYS = 100;

/**
 * A queue that has caught up is vacuumed and analyzed with nothing PENDING: its statistics then
 * say that the partial indexes of PENDING rows are empty, and say so however large they grow until
 * the next vacuum, which on a large table a burst does not bring. On such statistics the store once
 * found "the row with this key, if PENDING" by walking every PENDING row, for each row it looked up
 * (src/store/pendingByKey.ts): a claim of 100 out of 20,000 read 61,470 pages and took 165 ms, and a
 * drain of them ran at a tenth of its speed.
 */
describeEachBackend('the store on statistics taken while nothing was PENDING', (db) => {
  let idle: Promise<void> | null = null;
  /** The statistics of a queue that caught up, with HISTORY done: once for the suite. */
  function caughtUp(): Promise<void> {
    idle ??= catchUp(db(), HISTORY);
    return idle;
  }

  /** Pages `sql` reads, in a transaction rolled back after (it may write). */
  function pagesReadRolledBack(store: Db, sql: string, params: unknown[]): Promise<number> {
    return store.withSession((session) => rolledBack(session, () => pagesRead(session, sql, params)));
  }

  it('a claim reads pages for the operations it starts, not for the burst waiting behind them', async () => {
    await caughtUp();
    const type = uniqueId('type');
    await acceptMany(db(), BURST, () => ({ type, orderingKey: uniqueId('key') }));
    const claim = (types: string[]) => claimCall({ types, limit: 100, columns: 'id, next' });
    const read = await db().withSession(async (session) => {
      // The session's first call reads the catalog to plan the function's statements.
      await session.query(...claim([uniqueId('idle')]));
      return pagesRead(session, ...claim([type]));
    });
    const { rows } = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type]);
    assert.equal(rows[0]?.n, 100, 'the claim started 100');
    // About 40 pages for each operation started; a walk of the burst for each read 2,500.
    assert.ok(read <= 100 * 60, `a claim of 100 out of ${BURST} read ${read} pages`);
  });

  it('marking the next heads of 100 keys, as a finish does, reads a few pages for each key', async () => {
    await caughtUp();
    const keys = Array.from({ length: KEYS }, () => uniqueId('key'));
    let next = 0;
    await acceptMany(db(), BURST, () => ({ type: 'queued', orderingKey: keys[(next += 1) % KEYS] as string }));
    // Returning what it marked, so that the statement's pages count the write's.
    const mark = `WITH marked AS (${markHeadsOnKeys('SELECT k, 0::bigint, now() FROM unnest($1::text[]) AS k', 'SELECT id FROM operations WHERE false')} RETURNING marked.id)
      SELECT count(*) FROM marked`;
    const read = await pagesReadRolledBack(db(), mark, [keys]);
    // About 10 pages a key; a walk of the PENDING rows for each key read 20,000.
    assert.ok(read <= KEYS * 30, `marking the heads of ${KEYS} keys with ${BURST} queued on them read ${read} pages`);
  });

  it('a finish that starts the next operation on each of 100 keys reads a few pages for each, not the burst behind them', async () => {
    await caughtUp();
    const type = uniqueId('type');
    const keys = Array.from({ length: KEYS }, () => uniqueId('key'));
    let next = 0;
    await acceptMany(db(), BURST, () => ({ type, orderingKey: keys[(next += 1) % KEYS] as string }));
    const now = () => new Date();
    const claimed = await claimOperations(db(), { limit: KEYS, now, leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    assert.equal(claimed.length, KEYS, 'the heads of every key were claimed');
    const measured = measuringPages(db(), isFinishAndStart);
    const { successors } = await completeAttempts(measured.db, claimed, { leaseOwner: 'w', leaseMs: 30_000, now, types: [type], busyKeys: [] });
    assert.equal(successors.length, KEYS, 'the finish started the next on every key');
    // About 50 pages for each key's end and start (4,930-4,964 for the 100).
    assert.ok(measured.pages() <= KEYS * 60, `a finish and start on ${KEYS} keys with ${BURST} queued read ${measured.pages()} pages`);
  });

  it('the look-ups of a successor and of a forgotten head read a few pages for each', async () => {
    await caughtUp();
    const keys = Array.from({ length: KEYS }, () => uniqueId('key'));
    let next = 0;
    const ids = await acceptMany(db(), BURST, () => ({ type: 'queued', orderingKey: keys[(next += 1) % KEYS] as string }));
    const firsts = ids.slice(0, KEYS);
    const successors = await pagesRead(db(), `SELECT ${NEXT_ON_KEY} FROM operations o WHERE o.id = ANY($1::uuid[])`, [firsts]);
    assert.ok(successors <= KEYS * 30, `the successors of ${KEYS} read ${successors} pages`);
    const later = new Date(Date.now() + 60_000);
    const page = forgottenHeadsQuery({ unchangedSince: later, dueBy: later, keys: 1_000 });
    const forgotten = await pagesRead(db(), page.sql, page.params);
    assert.ok(forgotten <= 1_000 * 30, `a page of forgotten heads read ${forgotten} pages`);
  });
});
