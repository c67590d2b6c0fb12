import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, before, it } from 'node:test';
import type { Db } from '../src/store/db.js';
import { dueDeliveryKeys } from '../src/store/dueDeliveryKeys.js';
import { deliveryOrderingKey } from '../src/store/subscriptions.js';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { untilOlderTransactionsEnd } from './support/olderTransactions.js';
import { measuringPages } from './support/pagesRead.js';

/** Deliveries waiting behind one subscriber's head: a look that tests each of them reads thousands of pages. */
const WAITING = 2_000;
/** Pages a look may read past them: about 410 with the look bounded, 7,900 when it tests every one. */
const LOOK_PAGES = 1_000;
/** Subscribers whose deliveries have all ended (deleted subscriptions among them). */
const ENDED_KEYS = 3_000;

/**
 * Every worker looks for due webhook deliveries every 100 ms while none is due. A subscriber that
 * fails keeps all of its deliveries waiting behind a head in backoff, so the look must not cost
 * what waits: 85 ms a look with 20,000 behind one subscriber, when it tested each of them.
 */
describeEachBackend('the look for due webhook deliveries', (db) => {
  const subscriberKey = () => deliveryOrderingKey(randomUUID());
  const deliveries = (orderingKey: string, count: number) => acceptMany(db(), count, () => ({ type: 'webhook.deliver', orderingKey }));
  const deferHead = (id: string | undefined) => db().query(`UPDATE operations SET run_at = now() + interval '1 hour' WHERE id = $1`, [id]);
  const look = (target: Db, limit: number, busyKeys: string[] = []) => dueDeliveryKeys(target, { now: new Date(), busyKeys, limit });

  // The last test counts on its first look marking the ended deliveries' index entries dead. A
  // snapshot held meanwhile in the database forbids that, and an autoanalyze of either table the
  // suite fills takes one: its second look then read 3,329 pages in a CI run with only `operations`
  // left out (6,278 in another), and 6,331 with a transaction held open by hand.
  before(async () => {
    for (const table of ['operations', 'operation_events']) await db().query(`ALTER TABLE ${table} SET (autovacuum_enabled = off)`);
  });

  // Each test starts with no delivery active.
  afterEach(() => db().query(`UPDATE operations SET state = 'COMPLETED' WHERE type = 'webhook.deliver' AND state IN ('PENDING', 'PROCESSING')`));

  it('reads a bounded number of pages past a subscriber whose deliveries wait behind a head in backoff', async () => {
    const failing = subscriberKey();
    const [head] = await deliveries(failing, WAITING);
    await deferHead(head);
    await db().query('ANALYZE operations');
    const idle = measuringPages(db());
    assert.deepEqual(await look(idle.db, 1), [], 'nothing is due');
    const other = subscriberKey();
    await deliveries(other, 1);
    const due = measuringPages(db());
    assert.deepEqual(await look(due.db, 1), [other], "the other subscriber's delivery is due");
    assert.ok(idle.pages() <= LOOK_PAGES, `a look with nothing due read ${idle.pages()} pages past ${WAITING - 1} waiting`);
    assert.ok(due.pages() <= LOOK_PAGES, `a look that found one read ${due.pages()} pages past ${WAITING - 1} waiting`);
  });

  it('past more waiting deliveries than it tests in order, still finds the oldest due heads, and only those', async () => {
    const deferred = subscriberKey();
    const [deferredHead] = await deliveries(deferred, 150);
    await deferHead(deferredHead);
    const running = subscriberKey();
    const [runningHead] = await deliveries(running, 2);
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [runningHead]);
    // An earlier delivery whose insert committed after a later one started: the key is running.
    const lateCommit = subscriberKey();
    const [, started] = await deliveries(lateCommit, 2);
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [started]);
    const busy = subscriberKey();
    await deliveries(busy, 1);
    const first = subscriberKey();
    await deliveries(first, 2);
    const second = subscriberKey();
    await deliveries(second, 1);
    assert.deepEqual(await look(db(), 1, [busy]), [first]);
    assert.deepEqual(await look(db(), 2, [busy]), [first, second]);
    assert.deepEqual(await look(db(), 10, [busy]), [first, second]);
    assert.deepEqual(await look(db(), 10), [busy, first, second], 'a key busy elsewhere is due here');
  });

  it('visits the keys with deliveries still active, not every subscriber that ever had one', async () => {
    await acceptMany(db(), ENDED_KEYS, () => ({ type: 'webhook.deliver', orderingKey: subscriberKey() }));
    await db().query(`UPDATE operations SET state = 'COMPLETED' WHERE type = 'webhook.deliver' AND state = 'PENDING'`);
    // More waiting behind a head in backoff than the first pass tests: the look goes on to visit keys.
    const failing = subscriberKey();
    const [head] = await deliveries(failing, 150);
    await deferHead(head);
    const other = subscriberKey();
    await deliveries(other, 1);
    await db().query('ANALYZE operations');
    // A transaction in another test file that began before the update would keep their old
    // entries alive (10,400 pages with one held open in another database).
    await untilOlderTransactionsEnd(db());
    // The first look past the ended deliveries finds their old entries dead and marks them so.
    assert.deepEqual(await look(db(), 1), [other]);
    const measured = measuringPages(db());
    assert.deepEqual(await look(measured.db, 1), [other]);
    assert.ok(measured.pages() <= LOOK_PAGES, `a look past ${ENDED_KEYS} subscribers with nothing active read ${measured.pages()} pages`);
  });
});
