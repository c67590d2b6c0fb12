import assert from 'node:assert/strict';
import { it } from 'node:test';
import { acceptOperations, type NewOperation } from '../src/store/acceptOperations.js';
import { applyCommands } from '../src/store/applyCommands.js';
import { claimOperations } from '../src/store/claimOperations.js';
import type { Json } from '../src/domain/operation.js';
import { MAX_JSON_DEPTH } from '../src/domain/storableJson.js';
import type { Db } from '../src/store/db.js';
import { extendLeases } from '../src/store/extendLeases.js';
import { finishAttempts } from '../src/store/finishAttempts.js';
import { migrate } from '../src/store/migrate.js';
import { getOperation, listEvents, listOperations } from '../src/store/readOperations.js';
import { rescueExpiredLeases } from '../src/store/rescueExpiredLeases.js';
import { describeEachBackend } from './support/backends.js';
import { manualClock, uniqueId } from './support/helpers.js';

function echo(externalId: string, extra: Partial<NewOperation> = {}): NewOperation {
  return { externalId, type: 'demo.echo', payload: { n: 1 }, maxAttempts: 3, ...extra };
}

async function eventTypes(db: Db, id: string): Promise<string[]> {
  return (await listEvents(db, id)).map((e) => e.event.type);
}

describeEachBackend('store', (db) => {
  it('values that mean something in array and JSON syntax round-trip unchanged through accept, claim and finish', async () => {
    const type = uniqueId('type');
    const awkward = ['NULL', 'null', '', '{"a",b}', 'a\\"b', '\\', '"', ' ', 'é\u{1F600}', '{}', '[]', ','];
    const items = awkward.map((text, i) =>
      echo(`${uniqueId()}-${text}`, { type, orderingKey: `${text}-${i}`, payload: { text, nested: [text, { [text || 'empty']: text }] } }),
    );
    const accepted = await acceptOperations(db(), items, new Date(Date.now() - 1000));
    for (const [i, result] of accepted.entries()) {
      const stored = await getOperation(db(), result.operation.id);
      assert.equal(stored?.externalId, items[i]!.externalId);
      assert.equal(stored?.orderingKey, items[i]!.orderingKey);
      assert.deepEqual(stored?.payload, items[i]!.payload);
      const [received] = await listEvents(db(), result.operation.id);
      assert.deepEqual((received?.event as { payload?: unknown }).payload, items[i]!.payload);
    }
    const ids = accepted.map((r) => r.operation.id);
    const claimed = await claimOperations(db(), { limit: 100, now: () => new Date(), leaseOwner: 'w"\\{NULL}', leaseMs: 30_000, types: [type] });
    assert.equal(claimed.length, ids.length);
    const { results } = await finishAttempts(
      db(),
      claimed.map((op, i) => ({ operationId: op.id, claimed: op, command: { kind: 'complete' as const, now: new Date().toISOString(), fencingToken: op.fencingToken, result: { echo: awkward[i % awkward.length] ?? null } } })),
    );
    assert.ok(results.every((r) => r.ok));
    for (const op of claimed) {
      const stored = await getOperation(db(), op.id);
      assert.equal(stored?.status, 'COMPLETED');
      assert.deepEqual(stored?.result, { echo: awkward[claimed.indexOf(op) % awkward.length] ?? null });
      const events = await listEvents(db(), op.id);
      assert.equal((events[1]?.event as { leaseOwner?: string }).leaseOwner, 'w"\\{NULL}');
    }
  });

  it('a claimed operation is the operation as read back, times included, whichever way the driver hands them over', async () => {
    const type = uniqueId('type');
    // A run_at with milliseconds: the claim must hand it back exactly as the read does.
    const runAt = '2026-01-02T03:04:05.678Z';
    const [accepted] = await acceptOperations(db(), [echo(uniqueId(), { type, runAt })], new Date(Date.now() - 1000));
    const [claimed] = await claimOperations(db(), { limit: 1, now: () => new Date(), leaseOwner: 'w', leaseMs: 30_000, types: [type] });
    assert.ok(claimed, 'claimed');
    // What a read adds, the latest progress reported, is no part of the operation's state.
    const { progress, ...stored } = (await getOperation(db(), accepted!.operation.id))!;
    const { next, ...operation } = claimed;
    assert.deepEqual(operation, stored);
    assert.equal(next, null);
    assert.equal(progress, null);
    assert.equal(claimed.runAt, runAt);
    for (const time of [claimed.createdAt, claimed.updatedAt, claimed.leaseExpiresAt]) assert.match(time ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it('the received event holds the payload as submitted, whatever JSON it is', async () => {
    // Nested as deep as a request body may go: the store gets it two levels deeper, inside its event in an array.
    let deepest: Json = [];
    for (let depth = 1; depth < MAX_JSON_DEPTH; depth += 1) deepest = depth % 2 === 0 ? [deepest] : { d: deepest };
    const payloads: Json[] = [null, 0, -1.5, true, '', 'null', [], {}, [null, { a: [] }], { payload: 'inner', operationId: 'x' }, deepest];
    const accepted = await acceptOperations(db(), payloads.map((payload) => echo(uniqueId(), { payload })), new Date());
    for (const [i, result] of accepted.entries()) {
      const [received] = await listEvents(db(), result.operation.id);
      const event = received?.event as { type: string; payload?: unknown; externalId?: string };
      assert.equal(event.type, 'received');
      assert.deepEqual(event.payload, payloads[i]);
      assert.equal(event.externalId, result.operation.externalId);
      assert.deepEqual((await getOperation(db(), result.operation.id))?.payload, payloads[i]);
    }
  });

  it('operations accepted later have ids that sort after, in the store too: new entries of the id indexes land together', async () => {
    const ids: string[] = [];
    for (let batch = 0; batch < 3; batch += 1) {
      ids.push(...(await acceptOperations(db(), [echo(uniqueId()), echo(uniqueId())], new Date())).map((r) => r.operation.id));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const { rows } = await db().query<{ id: string }>('SELECT id FROM operations WHERE id = ANY($1::uuid[]) ORDER BY id', [ids]);
    const batches = (list: string[]) => [0, 2, 4].map((i) => new Set(list.slice(i, i + 2)));
    assert.deepEqual(batches(rows.map((r) => r.id)), batches(ids), 'each batch sorts after the one before');
  });

  it('migrating again is a no-op', async () => {
    assert.deepEqual(await migrate(db()), []);
  });

  it('accepts new, replays identical, refuses a different payload or type for the same external_id', async () => {
    const id = uniqueId();
    const now = new Date();
    const [first] = await acceptOperations(db(), [echo(id)], now);
    assert.equal(first?.outcome, 'accepted');
    const results = await acceptOperations(
      db(),
      [echo(id), echo(id, { payload: { n: 2 } }), echo(id, { type: 'demo.sleep' }), echo(id, { payload: JSON.parse('{"n":1}') })],
      now,
    );
    assert.deepEqual(results.map((r) => r.outcome), ['replayed', 'conflict', 'conflict', 'replayed']);
    for (const r of results) assert.equal(r.operation.id, first?.operation.id);
    assert.deepEqual(await eventTypes(db(), first!.operation.id), ['received']);
  });

  it('a duplicate inside one batch is accepted once and replayed after', async () => {
    const id = uniqueId();
    const results = await acceptOperations(db(), [echo(id), echo(id), echo(id, { payload: 'other' })], new Date());
    assert.deepEqual(results.map((r) => r.outcome), ['accepted', 'replayed', 'conflict']);
    const page = await listOperations(db(), { externalId: id, limit: 10 });
    assert.equal(page.operations.length, 1);
  });

  it('50 concurrent identical submissions create one operation and one received event', async () => {
    const id = uniqueId();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => acceptOperations(db(), [echo(id, { payload: { amount: 100 } })], new Date())),
    );
    const outcomes = results.map(([r]) => r?.outcome);
    assert.equal(outcomes.filter((o) => o === 'accepted').length, 1);
    assert.equal(outcomes.filter((o) => o === 'replayed').length, 49);
    assert.equal(new Set(results.map(([r]) => r?.operation.id)).size, 1);
    const { rows } = await db().query<{ n: number }>(
      `SELECT count(*)::int AS n FROM operation_events WHERE external_id = $1 AND type = 'received'`,
      [id],
    );
    assert.equal(rows[0]?.n, 1);
  });

  it('claims only the head of each ordering key, in acceptance order', async () => {
    const clock = manualClock(new Date(Date.now() + 3_600_000));
    const key = uniqueId('k');
    const other = uniqueId('k');
    const [a1, a2, b1] = await acceptOperations(
      db(),
      [echo(uniqueId(), { orderingKey: key }), echo(uniqueId(), { orderingKey: key }), echo(uniqueId(), { orderingKey: other })],
      clock.now(),
    );
    const type = uniqueId('type');
    await db().query(`UPDATE operations SET type = $1 WHERE id IN ($2, $3, $4)`, [type, a1!.operation.id, a2!.operation.id, b1!.operation.id]);
    const claim = () => claimOperations(db(), { limit: 10, now: clock.now, leaseOwner: 'w', leaseMs: 1000, types: [type] });

    const first = await claim();
    assert.deepEqual(first.map((o) => o.id).sort(), [a1!.operation.id, b1!.operation.id].sort());
    assert.deepEqual(await claim(), [], 'nothing else is claimable while the heads run');

    const head = first.find((o) => o.id === a1!.operation.id)!;
    await applyCommands(db(), [{ operationId: head.id, command: { kind: 'complete', now: clock.now().toISOString(), fencingToken: head.fencingToken, result: null } }]);
    assert.deepEqual((await claim()).map((o) => o.id), [a2!.operation.id]);
  });

  it('an operation behind a retrying one on its key waits for it', async () => {
    const clock = manualClock(new Date(Date.now() + 7_200_000));
    const key = uniqueId('k');
    const type = uniqueId('type');
    const [r1, r2] = await acceptOperations(db(), [echo(uniqueId(), { orderingKey: key, type }), echo(uniqueId(), { orderingKey: key, type })], clock.now());
    const claim = () => claimOperations(db(), { limit: 10, now: clock.now, leaseOwner: 'w', leaseMs: 1000, types: [type] });
    const [head] = await claim();
    assert.equal(head?.id, r1!.operation.id);
    const retryAt = new Date(clock.now().getTime() + 60_000).toISOString();
    await applyCommands(db(), [{ operationId: head!.id, command: { kind: 'fail', now: clock.now().toISOString(), fencingToken: head!.fencingToken, error: { code: 'E', message: 'e' }, retryAt } }]);
    assert.deepEqual(await claim(), [], 'the head is not due and the second must not overtake it');
    clock.advance(60_000);
    assert.deepEqual((await claim()).map((o) => o.id), [r1!.operation.id]);
    assert.notEqual(r2, undefined);
  });

  it('does not claim before run_at', async () => {
    const clock = manualClock(new Date(Date.now() + 10_800_000));
    const type = uniqueId('type');
    const runAt = new Date(clock.now().getTime() + 5000).toISOString();
    await acceptOperations(db(), [echo(uniqueId(), { type, runAt })], clock.now());
    const claim = () => claimOperations(db(), { limit: 10, now: clock.now, leaseOwner: 'w', leaseMs: 1000, types: [type] });
    assert.equal((await claim()).length, 0);
    clock.advance(5000);
    assert.equal((await claim()).length, 1);
  });

  it('concurrent claimers never hold two operations of one key, nor one operation twice', async () => {
    const type = uniqueId('type');
    const keys = Array.from({ length: 5 }, () => uniqueId('k'));
    await acceptOperations(db(), Array.from({ length: 50 }, (_, i) => echo(uniqueId(), { type, orderingKey: keys[i % 5] })), new Date());
    const claims = await Promise.all(
      Array.from({ length: 4 }, (_, i) => claimOperations(db(), { limit: 50, now: () => new Date(), leaseOwner: `w${i}`, leaseMs: 60_000, types: [type] })),
    );
    const claimed = claims.flat();
    assert.equal(new Set(claimed.map((o) => o.id)).size, claimed.length);
    assert.equal(new Set(claimed.map((o) => o.orderingKey)).size, claimed.length);
    assert.equal(claimed.length, 5);
  });

  it('a stale worker whose lease was taken over cannot record its outcome', async () => {
    const clock = manualClock(new Date(Date.now() + 14_400_000));
    const type = uniqueId('type');
    const [accepted] = await acceptOperations(db(), [echo(uniqueId(), { type })], clock.now());
    const id = accepted!.operation.id;
    const claim = (owner: string) => claimOperations(db(), { limit: 1, now: clock.now, leaseOwner: owner, leaseMs: 1000, types: [type] });

    const [stale] = await claim('w-stale');
    assert.equal(stale?.fencingToken, 1);
    clock.advance(1001);
    const rescued = await rescueExpiredLeases(db(), { now: clock.now(), limit: 100 });
    assert.ok(rescued.some((o) => o.id === id && o.status === 'PENDING'));
    const [fresh] = await claim('w-fresh');
    assert.equal(fresh?.fencingToken, 2);

    const lost = await extendLeases(db(), [{ operationId: id, fencingToken: 1 }], new Date(clock.now().getTime() + 1000));
    assert.deepEqual([...lost], [id], 'the stale worker learns it lost the lease');

    // Each worker records against the state it claimed; the stale one's row has moved on since.
    const complete = async (claimed: typeof stale, result: string) =>
      (await finishAttempts(db(), [{ operationId: id, claimed: claimed!, command: { kind: 'complete', now: clock.now().toISOString(), fencingToken: claimed!.fencingToken, result } }])).results;
    const [staleResult] = await complete(stale, 'stale');
    assert.equal(staleResult?.ok, false);
    assert.equal(!staleResult?.ok && staleResult?.error.code, 'OPSD_ERR_LEASE_LOST');
    const [freshResult] = await complete(fresh, 'fresh');
    assert.equal(freshResult?.ok, true);

    const final = await getOperation(db(), id);
    assert.equal(final?.status, 'COMPLETED');
    assert.equal(final?.result, 'fresh');
    assert.deepEqual(await eventTypes(db(), id), ['received', 'started', 'lease_expired', 'started', 'completed']);
  });

  it('operation_events is append-only', async () => {
    const [accepted] = await acceptOperations(db(), [echo(uniqueId())], new Date());
    const id = accepted!.operation.id;
    await assert.rejects(db().query(`UPDATE operation_events SET type = 'x' WHERE operation_id = $1`, [id]), /append-only/);
    await assert.rejects(db().query(`DELETE FROM operation_events WHERE operation_id = $1`, [id]), /append-only/);
    assert.deepEqual(await eventTypes(db(), id), ['received']);
  });

  it('lists newest first with keyset pagination and filters', async () => {
    const type = uniqueId('type');
    const accepted = await acceptOperations(db(), Array.from({ length: 5 }, () => echo(uniqueId(), { type })), new Date());
    const ids = accepted.map((r) => r.operation.id).reverse();
    const first = await listOperations(db(), { type, limit: 2 });
    assert.equal(first.hasMore, true);
    const second = await listOperations(db(), { type, limit: 2, beforeSeq: first.operations.at(-1)!.seq });
    const third = await listOperations(db(), { type, limit: 2, beforeSeq: second.operations.at(-1)!.seq });
    assert.equal(third.hasMore, false);
    assert.deepEqual([...first.operations, ...second.operations, ...third.operations].map((o) => o.id), ids);
    assert.equal((await listOperations(db(), { type, state: 'COMPLETED', limit: 10 })).operations.length, 0);
  });
});
