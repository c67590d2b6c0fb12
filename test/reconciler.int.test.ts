import assert from 'node:assert/strict';
import { it } from 'node:test';
import { alwaysHealthy, type Dispatcher } from '../src/dispatch/dispatcher.js';
import { createReconciler, RECONCILE_CAUSE } from '../src/dispatch/reconciler.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import type { DispatchTarget } from '../src/store/findClaimableHeads.js';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { measuringPages } from './support/pagesRead.js';
import { testLogger, uniqueId } from './support/helpers.js';

/** A dispatcher that only remembers what it was asked to wake, and with which cause. */
function recordingDispatcher() {
  const calls: { targets: DispatchTarget[]; cause: string | undefined }[] = [];
  const dispatcher: Dispatcher = {
    kind: 'in-process',
    async dispatch(targets, cause) {
      calls.push({ targets: [...targets], cause });
    },
    health: alwaysHealthy,
    async close() {},
  };
  return { dispatcher, calls, ids: () => new Set(calls.flatMap((c) => c.targets.map((t) => t.id))) };
}

describeEachBackend('reconciler', (db) => {
  it('pages past any number of operations scheduled for later and wakes every due one', async () => {
    const type = uniqueId('type');
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const scheduled = await acceptOperations(
      db(),
      Array.from({ length: 25 }, () => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1, runAt: later })),
      new Date(),
    );
    const due = await acceptOperations(
      db(),
      Array.from({ length: 12 }, () => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1 })),
      new Date(),
    );
    const { dispatcher, calls, ids } = recordingDispatcher();
    const reconciler = createReconciler({ db: db(), dispatcher, logger: testLogger(), staleMs: 0, batchSize: 5 });
    await reconciler.runOnce();
    const woken = ids();
    for (const { operation } of due) assert.ok(woken.has(operation.id), `due operation ${operation.id} not woken`);
    for (const { operation } of scheduled) assert.ok(!woken.has(operation.id), 'an operation scheduled for later was woken early');
    assert.ok(calls.every((c) => c.cause === RECONCILE_CAUSE), 'wake-ups carry a cause, so an old job with the same id cannot swallow them');
  });

  it('visits keys, never the operations queued behind a head that waits, and wakes the forgotten head past them', async () => {
    const type = uniqueId('type');
    const held = uniqueId('key');
    const behind = await acceptMany(db(), 2_000, () => ({ type, orderingKey: held }));
    await db().query(`UPDATE operations SET run_at = now() + interval '1 hour' WHERE id = $1`, [behind[0]]);
    const [forgotten] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key') }));
    await db().query('ANALYZE operations');
    const { dispatcher, ids } = recordingDispatcher();
    const { db: measured, pages } = measuringPages(db());
    await createReconciler({ db: measured, dispatcher, logger: testLogger(), staleMs: 0 }).runOnce();
    assert.ok(ids().has(forgotten!), 'the forgotten head was woken');
    for (const id of behind) assert.ok(!ids().has(id), 'nothing held back by the waiting head was woken');
    // A pass that tested each of the 1,999 behind the waiting head read four pages for each.
    assert.ok(pages() <= 1_000, `the pass read ${pages()} pages`);
  });
});
