import assert from 'node:assert/strict';
import { it } from 'node:test';
import { alwaysHealthy, type Dispatcher } from '../src/dispatch/dispatcher.js';
import { createReconciler, RECONCILE_CAUSE } from '../src/dispatch/reconciler.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import type { DispatchTarget } from '../src/store/findClaimableHeads.js';
import { describeEachBackend } from './support/backends.js';
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
});
