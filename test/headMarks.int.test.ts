import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { applyCommands } from '../src/store/applyCommands.js';
import { claimOperations } from '../src/store/claimOperations.js';
import type { Db } from '../src/store/db.js';
import { finishAttempts } from '../src/store/finishAttempts.js';
import { getOperation } from '../src/store/readOperations.js';
import { rescueExpiredLeases } from '../src/store/rescueExpiredLeases.js';
import { saveTransitions } from '../src/store/saveTransitions.js';
import { decide } from '../src/domain/decide.js';
import { createHeadMarker } from '../src/worker/headMarker.js';
import { databaseSkip, describeEachBackend, postgresBackend, type TestDb } from './support/backends.js';
import { testLogger, uniqueId } from './support/helpers.js';
import { completeAttempts } from './support/completeAttempts.js';

/**
 * The `head` mark (src/store/headMarks.ts) is what a claim past more active keys than it visits
 * reads instead of every due row. A mark that is missing delays a head until the head marker comes
 * by, so every write that makes an operation its key's head marks it, and the marker finds the one
 * case no single write can see.
 */
describeEachBackend('head marks', (db) => {
  it('an accepted operation is marked when nothing on its key is active and it is the first of its key in the batch', async () => {
    const type = uniqueId('type');
    const [k1, k2] = [uniqueId('key'), uniqueId('key')];
    const [a1, a2, b1] = await accept(db(), type, [k1, k1, k2]);
    const [a3] = await accept(db(), type, [k1]);
    assert.deepEqual(await marks(db(), [a1!, a2!, b1!, a3!]), [true, false, true, false]);
  });

  it('when an operation ends, by a finish or a cancel, the next on its key is marked, and only that one', async () => {
    const type = uniqueId('type');
    const key = uniqueId('key');
    const [a, b, c] = await accept(db(), type, [key, key, key]);
    const [claimed] = await claimOperations(db(), { limit: 1, now: () => new Date(), leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    assert.equal(claimed?.id, a);
    const { results } = await completeAttempts(db(), [claimed!]);
    assert.ok(results[0]?.ok, 'completed');
    assert.deepEqual(await marks(db(), [b!, c!]), [true, false], 'after the first completed');
    const [cancelled] = await applyCommands(db(), [{ operationId: b!, command: { kind: 'cancel', now: new Date().toISOString() } }]);
    assert.ok(cancelled?.ok, 'cancelled');
    assert.deepEqual(await marks(db(), [c!]), [true], 'after the second was cancelled');
  });

  it('an operation back in PENDING from PROCESSING (a retry, a rescued lease) is its key\'s head', async () => {
    const type = uniqueId('type');
    const [retried, rescued] = await accept(db(), type, [uniqueId('key'), uniqueId('key')]);
    // As a head whose mark went missing: the way back must mark it all the same.
    await db().query(`UPDATE operations SET head = NULL WHERE id = ANY($1::uuid[])`, [[retried, rescued]]);
    const claimed = await claimOperations(db(), { limit: 2, now: () => new Date(), leaseOwner: uniqueId('w'), leaseMs: 30_000, types: [type] });
    assert.equal(claimed.length, 2);
    const first = claimed.find((op) => op.id === retried)!;
    await finishAttempts(db(), [{ operationId: retried!, claimed: first, command: { kind: 'fail', now: new Date().toISOString(), fencingToken: first.fencingToken, error: { code: 'E', message: 'again' }, retryAt: new Date().toISOString() } }]);
    const back = await rescueExpiredLeases(db(), { now: new Date(Date.now() + 60_000), limit: 10, goneOwners: [] });
    assert.ok(back.some((op) => op.id === rescued && op.status === 'PENDING'), 'the lease was rescued');
    assert.deepEqual(await marks(db(), [retried!, rescued!]), [true, true]);
  });

  it('an operation redriven after it failed is its key\'s head', async () => {
    const type = uniqueId('type');
    const [accepted] = await acceptOperations(db(), [{ externalId: uniqueId(), type, payload: {}, orderingKey: uniqueId('key'), maxAttempts: 1 }], new Date(Date.now() - 1000));
    const id = accepted!.operation.id;
    const [claimed] = await claimOperations(db(), { limit: 1, now: () => new Date(), leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    await finishAttempts(db(), [{ operationId: id, claimed: claimed!, command: { kind: 'fail', now: new Date().toISOString(), fencingToken: claimed!.fencingToken, error: { code: 'E', message: 'last' }, retryAt: new Date().toISOString() } }]);
    await db().query(`UPDATE operations SET head = NULL WHERE id = $1`, [id]);
    const [redriven] = await applyCommands(db(), [{ operationId: id, command: { kind: 'redrive', now: new Date().toISOString() } }]);
    assert.equal(redriven?.ok && redriven.operation.status, 'PENDING');
    assert.deepEqual(await marks(db(), [id]), [true]);
  });

  it('a finish that starts the next on the key marks nothing behind it', async () => {
    const type = uniqueId('type');
    const key = uniqueId('key');
    const [a, b, c] = await accept(db(), type, [key, key, key]);
    const now = () => new Date();
    const [claimed] = await claimOperations(db(), { limit: 1, now, leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    assert.equal(claimed?.next?.id, b, 'the claim read the next on the key');
    const { successors } = await completeAttempts(db(), [claimed!], { leaseOwner: 'w', leaseMs: 30_000, now, types: [type], busyKeys: [] });
    assert.deepEqual(successors.map((op) => op.id), [b], 'the finish started the next');
    assert.deepEqual(await marks(db(), [c!]), [false], 'the one behind the started one is no head');
  });

  it('a claim refuses a row falsely marked as its key\'s head, clears the mark, and takes the head behind it instead', async () => {
    const type = uniqueId('type');
    const key = uniqueId('key');
    const [first] = await accept(db(), type, [key]);
    // Marked as a head while the first on its key waits, and ahead of it in claim order.
    const [ahead] = await acceptOperations(db(), [{ externalId: uniqueId(), type, payload: {}, orderingKey: key, maxAttempts: 3, priority: 5 }], new Date(Date.now() - 1000));
    const marked = ahead!.operation.id;
    await db().query(`UPDATE operations SET head = true WHERE id = $1`, [marked]);
    const claimed = await claimOperations(db(), { limit: 1, now: () => new Date(), leaseOwner: uniqueId('w'), leaseMs: 30_000, types: [type] });
    assert.deepEqual(claimed.map((op) => op.id), [first], 'the claim of one took the head, not the falsely marked row');
    assert.deepEqual(await marks(db(), [marked]), [false], 'the false mark was cleared');
    assert.equal((await getOperation(db(), marked))?.status, 'PENDING');
  });

  it('the head marker marks the heads no write marked, a page at a time, and starts over past the last key', async () => {
    const type = uniqueId('type');
    const ids = await accept(db(), type, Array.from({ length: 5 }, () => uniqueId('key')));
    await db().query(`UPDATE operations SET head = NULL WHERE id = ANY($1::uuid[])`, [ids]);
    const marker = createHeadMarker({ db: db(), logger: testLogger(), keysPerPage: 2, pagesPerPass: 1 });
    const { rows } = await db().query<{ n: number }>(`SELECT count(DISTINCT ordering_key)::int AS n FROM operations WHERE state IN ('PENDING', 'PROCESSING')`);
    // One full turn over every active key, and the start of the next.
    const passes = Math.ceil(rows[0]!.n / 2) + 1;
    let marked = 0;
    for (let pass = 0; pass < passes; pass += 1) marked += await marker.runOnce();
    assert.ok(marked >= ids.length, `marked ${marked}`);
    assert.deepEqual(await marks(db(), ids), ids.map(() => true));
    assert.equal(await marker.runOnce(), 0, 'nothing is left to mark');
  });
});

/**
 * Marks written in a race, each statement in a snapshot without the other's row. Two connections, so
 * PostgreSQL only.
 */
describe('heads accepted in a race', { skip: databaseSkip }, () => {
  let handle: TestDb | undefined;
  before(async () => {
    handle = await postgresBackend.open();
  });
  after(async () => {
    await handle?.cleanup();
  });

  // The one case no write sees: an operation accepted while the end of the one before it is written.
  it('a head accepted while the operation before it ends is left unmarked by both writes, and the head marker marks it', async () => {
    const db = handle!.db;
    const type = uniqueId('type');
    const key = uniqueId('key');
    const [a] = await accept(db, type, [key]);
    const [claimed] = await claimOperations(db, { limit: 1, now: () => new Date(), leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    assert.equal(claimed?.id, a);
    const b = await db.transaction(async (tx) => {
      const at = new Date().toISOString();
      await saveTransitions(tx, [{ before: claimed!, events: decide({ kind: 'complete', now: at, fencingToken: claimed!.fencingToken, result: null }, claimed!) }]);
      // On another connection, before the end commits: the accept still sees the first one active.
      const [accepted] = await accept(db, type, [key]);
      return accepted!;
    });
    assert.deepEqual(await marks(db, [b]), [false], 'the race left the head unmarked');
    const marker = createHeadMarker({ db, logger: testLogger() });
    assert.ok((await marker.runOnce()) >= 1);
    assert.deepEqual(await marks(db, [b]), [true]);
  });

  // The other race: two operations on one key accepted at once are both marked. A claim's first pass
  // takes a marked row at its mark's word, so the false mark must cost no more than one refusal by
  // the start: not an empty claim while a head waits behind it.
  it('two operations on one key accepted at once are both marked; a claim of one past the second, while the first runs, takes the next head', async () => {
    const db = handle!.db;
    const type = uniqueId('type');
    const key = uniqueId('key');
    const [first, second] = await db.transaction(async (tx) => {
      const [a] = await accept({ ...db, query: (sql, params) => tx.query(sql, params) }, type, [key]);
      // On another connection, before the first commits.
      const [b] = await accept(db, type, [key]);
      return [a!, b!];
    });
    assert.deepEqual(await marks(db, [first, second]), [true, true], 'the race marked both');
    const claim = () => claimOperations(db, { limit: 1, now: () => new Date(), leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    assert.deepEqual((await claim()).map((op) => op.id), [first]);
    const [other] = await accept(db, type, [uniqueId('key')]);
    assert.deepEqual((await claim()).map((op) => op.id), [other], 'the falsely marked one did not leave the claim empty');
    assert.deepEqual(await marks(db, [second]), [false], 'its mark was cleared');
    assert.deepEqual((await claim()).map((op) => op.id), [], 'nothing else may start while the first runs');
    assert.equal((await getOperation(db, second))?.status, 'PENDING');
  });
});

async function accept(db: Db, type: string, keys: string[]): Promise<string[]> {
  const results = await acceptOperations(
    db,
    keys.map((orderingKey) => ({ externalId: uniqueId(), type, payload: {}, orderingKey, maxAttempts: 3 })),
    new Date(Date.now() - 1000),
  );
  return results.map((r) => r.operation.id);
}

/** Whether each operation is marked as its key's head, in the order given. */
async function marks(db: Db, ids: string[]): Promise<boolean[]> {
  const { rows } = await db.query<{ id: string; head: boolean | null }>(`SELECT id, head FROM operations WHERE id = ANY($1::uuid[])`, [ids]);
  const byId = new Map(rows.map((r) => [r.id, r.head === true]));
  return ids.map((id) => byId.get(id) ?? false);
}
