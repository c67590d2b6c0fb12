import assert from 'node:assert/strict';
import { it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { applyCommands } from '../src/store/applyCommands.js';
import { claimOperations } from '../src/store/claimOperations.js';
import { listEvents } from '../src/store/readOperations.js';
import { rescueExpiredLeases } from '../src/store/rescueExpiredLeases.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { describeEachBackend } from './support/backends.js';
import { completeAttempts } from './support/completeAttempts.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';
import { assertProjectionIsFold } from './support/projectionFold.js';

/** Every event on the key's operations, in the order the store appended them. */
async function keyHistory(db: Parameters<typeof listEvents>[0], ids: readonly string[]) {
  const events = (await Promise.all(ids.map((id) => listEvents(db, id)))).flat();
  return events.sort((a, b) => a.position - b.position).map((e) => ({ id: e.operationId, type: e.event.type, at: e.event.at }));
}

function assertTimesFollowPositions(history: { id: string; type: string; at: string }[]): void {
  for (let i = 1; i < history.length; i += 1) {
    const [before, after] = [history[i - 1]!, history[i]!];
    assert.ok(after.at >= before.at, `${after.type} of ${after.id} at ${after.at}, appended after ${before.type} of ${before.id} at ${before.at}`);
  }
}

describeEachBackend('event times on a key', (db) => {
  const acceptedAMinuteAgo = (type: string, key: string, count: number) =>
    acceptOperations(db(), Array.from({ length: count }, () => ({ externalId: uniqueId('t'), type, payload: null, orderingKey: key, maxAttempts: 3 })), new Date(Date.now() - 60_000));

  it('a claim stamped before the end that made its operation the head starts it at that end', async () => {
    const type = uniqueId('claimed');
    const accepted = await acceptedAMinuteAgo(type, uniqueId('key'), 2);
    const [first] = await claimOperations(db(), { limit: 10, types: [type], now: () => new Date(), leaseOwner: 'w', leaseMs: 60_000 });
    await completeAttempts(db(), [first!]);
    // As a claim that took its time 30 s before it reached the store, while the end committed.
    const [second] = await claimOperations(db(), { limit: 10, types: [type], now: () => new Date(Date.now() - 30_000), leaseOwner: 'w', leaseMs: 60_000 });
    assert.equal(second?.id, accepted[1]!.operation.id);
    const history = await keyHistory(db(), accepted.map((a) => a.operation.id));
    assert.deepEqual(history.map((e) => e.type), ['received', 'received', 'started', 'completed', 'started']);
    assertTimesFollowPositions(history);
    assert.equal(second!.updatedAt, history.at(-1)!.at, 'the claimed state carries the time of its start');
    await assertProjectionIsFold(db());
  });

  it('after a cancel, the next on the key starts no earlier than the cancel', async () => {
    const type = uniqueId('cancelled');
    const accepted = await acceptedAMinuteAgo(type, uniqueId('key'), 2);
    await applyCommands(db(), [{ operationId: accepted[0]!.operation.id, command: { kind: 'cancel', now: new Date().toISOString() } }]);
    await claimOperations(db(), { limit: 10, types: [type], now: () => new Date(Date.now() - 30_000), leaseOwner: 'w', leaseMs: 60_000 });
    const history = await keyHistory(db(), accepted.map((a) => a.operation.id));
    assert.deepEqual(history.map((e) => e.type), ['received', 'received', 'cancelled', 'started']);
    assertTimesFollowPositions(history);
  });

  it('a lease rescued by a process whose clock is behind the start expires no earlier than it', async () => {
    const type = uniqueId('rescued');
    const [accepted] = await acceptedAMinuteAgo(type, uniqueId('key'), 1);
    // Started by a worker 30 s ahead, which is then gone; a rescuer on time takes its lease back.
    await claimOperations(db(), { limit: 1, types: [type], now: () => new Date(Date.now() + 30_000), leaseOwner: 'ahead', leaseMs: 60_000 });
    const [rescued] = await rescueExpiredLeases(db(), { now: new Date(), limit: 10, goneOwners: ['ahead'] });
    assert.equal(rescued?.id, accepted!.operation.id);
    assert.ok(rescued!.runAt >= rescued!.updatedAt, 'due again no earlier than the rescue');
    const history = await keyHistory(db(), [accepted!.operation.id]);
    assert.deepEqual(history.map((e) => e.type), ['received', 'started', 'lease_expired']);
    assertTimesFollowPositions(history);
  });

  it("a worker whose clock is behind starts, ends and hands over the key no earlier than the end before", async () => {
    const type = uniqueId('behind');
    const accepted = await acceptedAMinuteAgo(type, uniqueId('key'), 3);
    const [first] = await claimOperations(db(), { limit: 1, types: [type], now: () => new Date(), leaseOwner: 'on-time', leaseMs: 60_000 });
    await completeAttempts(db(), [first!]);
    const registry = new HandlerRegistry();
    registry.register(defineOperation({ type, handle: () => null }) as never);
    // 30 s behind the worker that ended the first: it claims the second, and its finish starts the third.
    const worker = new Worker({ db: db(), registry, logger: testLogger(), pollIntervalMs: 50, now: () => new Date(Date.now() - 30_000) });
    worker.start();
    try {
      await waitFor('the last one completed', async () => {
        const history = await keyHistory(db(), [accepted[2]!.operation.id]);
        return history.some((e) => e.type === 'completed');
      });
    } finally {
      await worker.stop(1000);
    }
    const history = await keyHistory(db(), accepted.map((a) => a.operation.id));
    assert.deepEqual(history.filter((e) => e.type !== 'received').map((e) => e.type), ['started', 'completed', 'started', 'completed', 'started', 'completed']);
    assertTimesFollowPositions(history);
    await assertProjectionIsFold(db());
  });
});
