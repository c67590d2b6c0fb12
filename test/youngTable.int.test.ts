import assert from 'node:assert/strict';
import { it } from 'node:test';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { claimCall } from './support/claimCall.js';
import { untilOlderTransactionsEnd } from './support/olderTransactions.js';
import { pagesRead } from './support/pagesRead.js';
import { uniqueId } from './support/helpers.js';

/** Operations done after the worker's session planned its claim on the nearly empty table. */
const DONE = 3_000;
const CLAIM = 45;
/** As large as the benchmark's, so that the done operations fill a few hundred pages. */
const payload = { text: 'x'.repeat(300) };

/**
 * A new store starts with an empty `operations` table, and a worker's session plans its claim
 * then: after five calls PostgreSQL keeps one plan per statement for the session, made for a table
 * it takes to be ten pages, until the table is first analyzed. That plan found each picked row by
 * reading the table from its start: past every operation done, for each one started (migration 016).
 */
describeEachBackend('claims on a table that has never been analyzed', (db) => {
  it('a session that planned its claim on the nearly empty table reads pages for what it starts, not for what is done', async () => {
    await db().query('ALTER TABLE operations SET (autovacuum_enabled = off)');
    // Nor the events' table: an analyze of it by autovacuum holds a snapshot in this database that
    // keeps the done operations' old versions alive, so the first claim below cannot mark their
    // index entries dead, and the measured one walks them again (6,148 pages with a snapshot held
    // across the update by hand, against 3,600).
    await db().query('ALTER TABLE operation_events SET (autovacuum_enabled = off)');
    const type = uniqueId('type');
    const read = await db().withSession(async (session) => {
      // More calls than PostgreSQL plans afresh before it keeps one plan for the session.
      for (let call = 0; call < 8; call += 1) {
        await acceptMany(db(), 5, () => ({ type, orderingKey: uniqueId('key'), payload }));
        await session.query(...claimCall({ types: [type], limit: CLAIM }));
      }
      await acceptMany(db(), DONE, () => ({ type, orderingKey: uniqueId('key'), payload }));
      await db().query(`UPDATE operations SET state = 'COMPLETED', head = NULL WHERE type = $1`, [type]);
      await acceptMany(db(), 2 * CLAIM, () => ({ type, orderingKey: uniqueId('key'), payload }));
      // A transaction in another test file that began before the update would keep the versions it
      // left alive (6,063 pages with one held open in another database).
      await untilOlderTransactionsEnd(db());
      // The first claim walks past the index entries of the versions the update left, once.
      await session.query(...claimCall({ types: [type], limit: CLAIM }));
      return pagesRead(session, ...claimCall({ types: [type], limit: CLAIM }));
    });
    const { rows } = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type]);
    assert.equal(rows[0]?.n, 2 * CLAIM, `the two claims started ${CLAIM} each`);
    // 3,300-3,900 pages, about 80 for each operation started; reading past the done ones for each
    // read 23,000-26,000.
    assert.ok(read <= CLAIM * 120, `a claim of ${CLAIM} read ${read} pages`);
  });
});
