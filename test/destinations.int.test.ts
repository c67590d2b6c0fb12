import assert from 'node:assert/strict';
import { it } from 'node:test';
import { claimGroups } from '../src/protect/claimGroups.js';
import { destinationStateName } from '../src/protect/destinations.js';
import { defineResource } from '../src/protect/resourcePolicy.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { claimLimited } from '../src/store/claimLimited.js';
import type { DestinationSource } from '../src/store/claimOnDestinations.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { readResourceStates } from '../src/store/resourceState.js';
import { pruneProtectionState } from '../src/store/typeCounts.js';
import { describeEachBackend } from './support/backends.js';
import { uniqueId } from './support/helpers.js';

describeEachBackend('claims through per-destination limits', (db) => {
  const setUp = async (keys: string[]) => {
    const type = uniqueId('test.dest');
    const resource = defineResource({ name: uniqueId('dest'), types: [type], perDestination: { rate: { limit: 10, perMs: 1000 } } });
    const [group] = claimGroups([type], () => resource, {});
    const accepted = await acceptOperations(db(), keys.map((orderingKey) => ({ externalId: uniqueId(), type, payload: null, orderingKey, maxAttempts: 3 })), new Date());
    const claim = (source: DestinationSource) =>
      claimLimited(db(), group as Extract<typeof group, { kind: 'limited' }>, { limit: 10, types: [type], now: () => new Date(), leaseOwner: 'test', leaseMs: 30_000 }, { source, pausedHere: new Map() });
    return { resource, ids: accepted.map((a) => a.operation.id), claim };
  };
  const everyKey = (keys: string[], destination: string): DestinationSource => ({
    dueKeys: async () => keys,
    destinationsOf: async (_session, asked) => new Map(asked.map((key) => [key, destination])),
  });

  it('a key that came due after the look is never started past its destination: the claim is rolled back', async () => {
    const [older, newer] = [uniqueId('k'), uniqueId('k')];
    const { resource, ids, claim } = await setUp([older, newer]);
    // The look saw only the newer key (as if the older one committed in between); the claim takes the older first.
    const result = await claim(everyKey([newer], 'h'));
    assert.deepEqual(result.claimed, [], 'nothing started');
    for (const id of ids) {
      assert.equal((await getOperation(db(), id))?.status, 'PENDING');
      assert.deepEqual((await listEvents(db(), id)).map((e) => e.event.type), ['received'], 'no start was written, then undone');
    }
    assert.equal((await readResourceStates(db())).get(destinationStateName(resource.name, 'h'))?.starts.length ?? 0, 0);
  });

  it('each destination gets what its own rate allows, the others are held, and starts are written to each', async () => {
    const keys = [uniqueId('k'), uniqueId('k'), uniqueId('k'), uniqueId('k')];
    const { resource, ids, claim } = await setUp(keys);
    const source: DestinationSource = {
      dueKeys: async () => keys,
      destinationsOf: async () => new Map([[keys[0] as string, 'a'], [keys[1] as string, 'a'], [keys[2] as string, 'b']]),
    };
    // A rate of 10 per second lets one start at once per destination; the key without one passes.
    const result = await claim(source);
    assert.deepEqual(result.claimed.map((op) => op.orderingKey).sort(), [keys[0], keys[2], keys[3]].sort());
    assert.deepEqual([...result.destinations.values()].map((d) => d.name).sort(), [destinationStateName(resource.name, 'a'), destinationStateName(resource.name, 'b')]);
    const states = await readResourceStates(db());
    assert.equal(states.get(destinationStateName(resource.name, 'a'))?.starts.length, 1);
    assert.equal(states.get(destinationStateName(resource.name, 'b'))?.starts.length, 1);
    assert.equal((await getOperation(db(), ids[1] as string))?.status, 'PENDING', 'the second key of a waits');
    const again = await claim({ ...source, dueKeys: async () => [keys[1] as string] });
    assert.deepEqual(again.claimed, [], 'a is spent for this interval');
    assert.equal(again.reason, 'rate');
    assert.ok(again.retryAt !== null && again.retryAt > Date.now() - 1000);
  });

  it('forgets a destination idle for the hour with its breaker closed, and keeps one whose breaker is open', async () => {
    const [idle, open, recent] = [uniqueId('idle'), uniqueId('open'), uniqueId('recent')].map((d) => destinationStateName('hooks', d)) as [string, string, string];
    const state = (phase: string) => JSON.stringify({ starts: [1], breaker: { phase, since: 1, failures: [], probe: null } });
    await db().query(
      `INSERT INTO opsd_resources (name, state, updated_at) VALUES ($1, $4::jsonb, now() - interval '2 hours'), ($2, $5::jsonb, now() - interval '2 hours'), ($3, $4::jsonb, now())`,
      [idle, open, recent, state('closed'), state('open')],
    );
    await pruneProtectionState(db(), new Date(Date.now() - 3_600_000));
    const kept = await readResourceStates(db());
    assert.equal(kept.has(idle), false);
    assert.equal(kept.has(open), true);
    assert.equal(kept.has(recent), true);
  });
});
