import assert from 'node:assert/strict';
import { it } from 'node:test';
import { claimOperations, type ClaimedOperation } from '../src/store/claimOperations.js';
import type { Db } from '../src/store/db.js';
import { isHeadOfKey } from '../src/store/headOfKey.js';
import { NEXT_ON_KEY } from '../src/store/saveTransitions.js';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { claimCall } from './support/claimCall.js';
import { completeAttempts, isFinishAndStart } from './support/completeAttempts.js';
import { untilOlderTransactionsEnd } from './support/olderTransactions.js';
import { measuringPages, pagesRead } from './support/pagesRead.js';
import { uniqueId } from './support/helpers.js';

/** Operations waiting on one key: enough that a check walking them reads thousands of pages. */
const BACKLOG = 2_000;
/**
 * Operations waiting on other keys, so that reading the whole table costs more than walking the
 * backlog; of the lowest priority, so that a claim comes to them last.
 */
const ELSEWHERE = 8_000;
/** Pages a check of the head may read, whatever waits behind it (it reads a few dozen). */
const PAGES = 150;
/** What a check leaves out, as `isHeadOfKey` takes it: the seq of the operation whose id is $2. */
const SEQ_OF_SECOND = 'SELECT seq FROM operations WHERE id = $2::uuid';

/**
 * The per-key order check looks at what is ahead of an operation and at what runs on its key: its
 * cost must not grow with the backlog behind it, or a busy key's every start slows down as work
 * piles up on it (a check that walked the key's whole backlog read one page per waiting operation).
 */
describeEachBackend('the head-of-key check', (db) => {
  let elsewhere: Promise<unknown> | null = null;
  /** `priority`: 10 puts the key ahead of every other test's in claim order. */
  async function keyWithBacklog(type: string, priority = 0): Promise<{ key: string; ids: string[] }> {
    elsewhere ??= acceptMany(db(), ELSEWHERE, () => ({ type: 'elsewhere', orderingKey: uniqueId('other'), priority: -10 }));
    await elsewhere;
    const key = uniqueId('key');
    const ids = await acceptMany(db(), BACKLOG, () => ({ type, orderingKey: key, priority }));
    await db().query('ANALYZE operations');
    return { key, ids };
  }

  it('reads a bounded number of pages for a key with thousands waiting, at its head and behind it', async () => {
    const type = uniqueId('type');
    const { ids } = await keyWithBacklog(type);
    const head = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [ids[0]]);
    assert.ok(head <= PAGES, `the check of a head with ${BACKLOG} behind it read ${head} pages`);
    const behind = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [ids[1]]);
    assert.ok(behind <= PAGES, `the check of the second operation read ${behind} pages`);
  });

  it('a claim of the head of a key with thousands waiting behind it reads a bounded number of pages', async () => {
    const type = uniqueId('type');
    const { ids } = await keyWithBacklog(type, 10);
    const warmUp = uniqueId('type');
    await acceptMany(db(), 1, () => ({ type: warmUp, orderingKey: uniqueId('key'), priority: 10 }));
    const claim = (types: string[]) => claimCall({ types, limit: 1 });
    const read = await db().withSession(async (session) => {
      // The session's first call reads the catalog to plan the function's statements.
      await session.query(...claim([warmUp]));
      return pagesRead(session, ...claim([type]));
    });
    const { rows } = await db().query<{ state: string }>('SELECT state FROM operations WHERE id = $1', [ids[0]]);
    assert.equal(rows[0]?.state, 'PROCESSING', 'the claim started the head');
    assert.ok(read <= PAGES, `the claim read ${read} pages`);
  });

  it('a claim pays no more for the rows waiting behind a running head than for rows it passes over unchecked', async () => {
    const type = uniqueId('type');
    const { key, ids } = await keyWithBacklog(type, 10);
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [ids[0]]);
    const idle = uniqueId('type');
    const { baseline, read } = await db().withSession(async (session) => {
      await session.query(...claimCall({ types: [idle] }));
      // Past more active keys than it visits (ELSEWHERE), a claim walks the rows of its type. The
      // same walk with the key among the worker's busy keys passes them over unchecked: what any
      // walk of them pays.
      const baseline = await pagesRead(session, ...claimCall({ types: [type], busyKeys: [key] }));
      return { baseline, read: await pagesRead(session, ...claimCall({ types: [type] })) };
    });
    const { rows } = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE type = $1 AND state = 'PENDING'`, [type]);
    assert.equal(rows[0]?.n, BACKLOG - 1, 'nothing behind the running head was claimed');
    assert.ok(read - baseline <= PAGES, `the ${BACKLOG - 1} behind the running head cost the claim ${read - baseline} pages more than passing them over as a busy key's (${baseline})`);
    const headsOf = `SELECT o.id FROM operations o WHERE o.state = 'PENDING' AND o.type = $1 AND ${isHeadOfKey()}`;
    const found = await db().query(headsOf, [type]);
    assert.equal(found.rows.length, 0, 'no head of the key is found while its head runs');
    const scanned = (await pagesRead(db(), headsOf, [type])) - (await pagesRead(db(), headsOf, [idle]));
    assert.ok(scanned <= PAGES, `a look for heads among the ${BACKLOG - 1} cost ${scanned} pages more than among none`);
  });

  it('the start of a successor, the running one left out, reads a bounded number of pages', async () => {
    const type = uniqueId('type');
    const { ids } = await keyWithBacklog(type);
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [ids[0]]);
    const read = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey(SEQ_OF_SECOND)}`, [ids[1], ids[0]]);
    assert.ok(read <= PAGES, `the successor's check read ${read} pages`);
    const { rows } = await db().query(`SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey(SEQ_OF_SECOND)}`, [ids[1], ids[0]]);
    assert.equal(rows.length, 1, 'the successor is the head once the running one is left out');
    const blocked = await db().query(`SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [ids[1]]);
    assert.equal(blocked.rows.length, 0, 'nothing starts beside the running one');
    const behind = await db().query(`SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey(SEQ_OF_SECOND)}`, [ids[2], ids[0]]);
    assert.equal(behind.rows.length, 0, 'the one behind the successor is no head');
  });

  it('an operation still active ahead of the one left out keeps the one behind from starting', async () => {
    const type = uniqueId('type');
    const key = uniqueId('key');
    const [ahead, running, next] = await acceptMany(db(), 3, () => ({ type, orderingKey: key }));
    // As an insert that committed late behind a running operation leaves a key.
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [running]);
    const check = `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey(SEQ_OF_SECOND)}`;
    assert.equal((await db().query(check, [next, running])).rows.length, 0, 'the one ahead still comes first');
    await db().query(`UPDATE operations SET state = 'COMPLETED' WHERE id = $1`, [ahead]);
    assert.equal((await db().query(check, [next, running])).rows.length, 1, 'with the one ahead done, the next is the head');
  });
});

/** Keys in the second suite, and operations on each: statistics that expect hundreds of rows per key. */
const FEW_KEYS = 10;
const ON_EACH = 500;

/**
 * On statistics that expect many operations per key, the planner once answered "the key's first
 * active operation" by walking every operation in acceptance order until one of the key's came up:
 * thousands of pages for each row checked, 10 million for one claim past 5,000 waiting. The probe
 * asks for the first entry at or after the key in the active-key index, an order no other index has.
 */
describeEachBackend('the head-of-key check on a few keys with many waiting on each', (db) => {
  async function fewKeys(type: string): Promise<string[][]> {
    const keys: string[][] = [];
    for (let k = 0; k < FEW_KEYS; k += 1) {
      const key = uniqueId('key');
      keys.push(await acceptMany(db(), ON_EACH, () => ({ type, orderingKey: key })));
    }
    await db().query('ANALYZE operations');
    return keys;
  }

  it('reads a bounded number of pages for an operation behind the head of the last key accepted', async () => {
    const keys = await fewKeys(uniqueId('type'));
    const last = keys[FEW_KEYS - 1]!;
    const read = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [last[1]]);
    assert.ok(read <= PAGES, `the check read ${read} pages`);
    const { rows } = await db().query(`SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [last[0]]);
    assert.equal(rows.length, 1, 'the first of the key is its head');
  });

  it('a claim past keys whose heads wait out a backoff reads a few pages for each operation behind them', async () => {
    const type = uniqueId('type');
    const keys = await fewKeys(type);
    await db().query(`UPDATE operations SET run_at = now() + interval '1 hour' WHERE id = ANY($1::uuid[])`, [keys.map((ids) => ids[0])]);
    const claim = (types: string[]) => claimCall({ types, limit: 100 });
    const idle = uniqueId('type');
    const { baseline, read, claimed } = await db().withSession(async (session) => {
      await session.query(...claim([idle]));
      const baseline = await pagesRead(session, ...claim([idle]));
      const read = await pagesRead(session, ...claim([type]));
      const { rows } = await session.query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type]);
      return { baseline, read, claimed: rows[0]?.n };
    });
    assert.equal(claimed, 0, 'nothing behind a waiting head was claimed');
    const behind = FEW_KEYS * (ON_EACH - 1);
    assert.ok(read - baseline <= 8 * behind, `the claim read ${read - baseline} pages more than one that passes every row over, for ${behind} behind waiting heads`);
  });

  it('looks up the next operation on a key in a bounded number of pages, when many keys came after the last ANALYZE', async () => {
    await fewKeys(uniqueId('type'));
    const type = uniqueId('type');
    // Of a higher priority, so that a claim comes to them first.
    const burst = await acceptMany(db(), 20_000, () => ({ type, orderingKey: uniqueId('key'), priority: 10 }));
    const read = await pagesRead(db(), `SELECT ${NEXT_ON_KEY} FROM operations o WHERE o.id = $1`, [burst[0]]);
    assert.ok(read <= PAGES, `the look-up of the next on a key with nothing behind read ${read} pages`);
    const claim = (types: string[]) => claimCall({ types, limit: 100, columns: 'id, next' });
    const claimed = await db().withSession(async (session) => {
      await session.query(...claim([uniqueId('type')]));
      return pagesRead(session, ...claim([type]));
    });
    // About 36 pages for each operation started (its row's new version in each index, its event,
    // the probes); a look-up of the next that walked to the end of the table read 18,000 for each.
    assert.ok(claimed <= 100 * 100, `a claim of 100 read ${claimed} pages`);
  });
});

/** Keys of the third suite, and the turns each runs before the finish that is measured. */
const BUSY_KEYS = 10;
const TURNS = 150;

/**
 * Each operation that ran on a key leaves two entries in the active-key index (its PENDING and its
 * PROCESSING row versions) until a vacuum, or a scan that found their rows dead marks them. The
 * start of a successor checks the key from its first entry: past every one of those. A plain index
 * scan may mark an entry only if the index page has not changed since it read it, and a busy key's
 * page changes with every start, its own too: each start then visited every row its key had run.
 */
describeEachBackend('the start of a successor on a key that ran many operations since its last vacuum', (db) => {
  it('reads a few pages for each key, not one for each operation the key ran', async () => {
    await db().query('ALTER TABLE operations SET (autovacuum_enabled = off)');
    const type = uniqueId('type');
    const keys = Array.from({ length: BUSY_KEYS }, () => uniqueId('key'));
    let next = 0;
    await acceptMany(db(), BUSY_KEYS * (TURNS + 2), () => ({ type, orderingKey: keys[(next += 1) % BUSY_KEYS] as string }));
    const now = () => new Date();
    const options = { leaseOwner: 'w', leaseMs: 30_000, now, types: [type] };
    // As the worker does with a key's turns: each finish starts the next on every key.
    const turn = (target: Db, running: ClaimedOperation[]) => completeAttempts(target, running, { ...options, busyKeys: [] });
    let running = await claimOperations(db(), { ...options, limit: BUSY_KEYS });
    assert.equal(running.length, BUSY_KEYS, 'the heads of every key were claimed');
    for (let t = 0; t < TURNS; t += 1) {
      // While a transaction in another test file runs, no start can mark what it passed (720 pages
      // a key with one held open in another database): the last turn before the measured one marks
      // what such a transaction kept alive.
      if (t === TURNS - 1) await untilOlderTransactionsEnd(db());
      running = (await turn(db(), running)).successors;
      assert.equal(running.length, BUSY_KEYS, `turn ${t} started the next on every key`);
    }
    const measured = measuringPages(db(), isFinishAndStart);
    const { successors } = await turn(measured.db, running);
    assert.equal(successors.length, BUSY_KEYS, 'the measured finish started the next on every key');
    const perKey = measured.pages() / BUSY_KEYS;
    // 51-56 pages a key, most of them the end, the start and their events; 196-206 when each start
    // visited the rows of the 150 operations its key had run.
    assert.ok(perKey <= 100, `a finish and start read ${perKey} pages for each key, after ${TURNS} turns on it`);
  });
});
