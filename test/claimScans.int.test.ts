import assert from 'node:assert/strict';
import { it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import type { Db } from '../src/store/db.js';
import { getOperation } from '../src/store/readOperations.js';
import { registerWebhookDeliveries } from '../src/webhooks/deliveryDestinations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { claimCall } from './support/claimCall.js';
import { pagesRead } from './support/pagesRead.js';
import { rolledBack } from './support/rolledBack.js';
import { countingStatements } from './support/countingDb.js';
import { gate, testLogger, uniqueId, waitFor } from './support/helpers.js';

/**
 * A scan of the claimable work tests every PENDING row queued behind busy keys, so a worker scans
 * again only when something may have changed. The look at a group with limits of its own (webhook
 * deliveries, in every worker) comes back every 100 ms while nothing of it is due: that look must
 * not bring a scan of everything else with it.
 */
describeEachBackend('claim scans', (db) => {
  it('a worker busy on one key with work queued behind it does not scan again at each look at the webhook deliveries', async () => {
    const registry = new HandlerRegistry();
    const type = uniqueId('blocked');
    const release = gate();
    const started: string[] = [];
    registry.register(
      defineOperation({
        type,
        handle: async ({ operation }) => {
          started.push(operation.id);
          await release.opened;
          return null;
        },
      }),
    );
    registerWebhookDeliveries(registry, db(), {});
    // Each call of the claim function scans the PENDING rows.
    const { db: store, count: claims } = countingStatements(db(), (sql) => sql.includes('opsd_claim('));
    const worker = new Worker({ db: store, registry, logger: testLogger(), pollIntervalMs: 10_000, concurrency: 10 });
    const key = uniqueId('key');
    const accepted = await acceptOperations(
      db(),
      Array.from({ length: 5 }, () => ({ externalId: uniqueId(), type, payload: {}, orderingKey: key, maxAttempts: 1 })),
      new Date(Date.now() - 1000),
    );
    worker.start();
    try {
      await waitFor('the first operation to start', async () => started.length === 1 || null);
      const before = claims();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const scans = claims() - before;
      assert.ok(scans <= 1, `${scans} scans in a second with nothing new to find`);
      release.open();
      for (const { operation } of accepted) {
        await waitFor(`operation ${operation.id} to complete`, async () => ((await getOperation(db(), operation.id))?.status === 'COMPLETED') || null);
      }
      assert.deepEqual(started, accepted.map((a) => a.operation.id), 'the key ran in order');
    } finally {
      release.open();
      await worker.stop(1000);
    }
  });
});

/**
 * `count` keys of `type` (1,100 unless told), each a head deferred for an hour with one due behind
 * it: more active keys than a claim of one or of five visits (1,000).
 */
async function deferredKeys(db: Db, type: string, count = 1_100): Promise<void> {
  const keys = Array.from({ length: count }, () => uniqueId('key'));
  for (const round of [0, 1]) {
    for (let from = 0; from < keys.length; from += 500) {
      const items = keys.slice(from, from + 500).map((key) => ({ externalId: uniqueId(), type, payload: {}, orderingKey: key, maxAttempts: 1 }));
      await acceptOperations(db, items, new Date(Date.now() - 1000 + round));
    }
  }
  await deferHeads(db, type);
}

/**
 * Twenty keys of `type` with three due on each, then four claims of five at once: each operation
 * taken once, one per key, and each the first of its key; what runs is what they returned.
 */
async function raceClaims(db: Db, type: string): Promise<void> {
  const firsts = new Set<string>();
  for (let k = 0; k < 20; k += 1) {
    const key = uniqueId('key');
    const [first] = await acceptMany(db, 3, () => ({ type, orderingKey: key }));
    firsts.add(first!);
  }
  const claims = await Promise.all(Array.from({ length: 4 }, () => db.query<{ id: string; ordering_key: string }>(...claimCall({ types: [type], limit: 5, columns: 'id, ordering_key' }))));
  const claimed = claims.flatMap((c) => c.rows);
  assert.ok(claimed.length > 0, 'the claims took something');
  assert.equal(new Set(claimed.map((r) => r.id)).size, claimed.length, 'no operation was claimed twice');
  assert.equal(new Set(claimed.map((r) => r.ordering_key)).size, claimed.length, 'no key had two claimed');
  for (const { id } of claimed) assert.ok(firsts.has(id), `${id} is the first of its key`);
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type]);
  assert.equal(rows[0]?.n, claimed.length, 'what runs is what the claims returned');
}

/** Sets `change` on the first operation of every key with operations of `type`: the head of each. */
async function changeHeads(db: Db, type: string, change: string): Promise<void> {
  await db.query(
    `UPDATE operations SET ${change}
     WHERE id IN (SELECT DISTINCT ON (ordering_key) id FROM operations WHERE type = $1 ORDER BY ordering_key, seq)`,
    [type],
  );
}

/** Puts the head of every key with operations of `type` out of reach for an hour, as a retry's backoff does. */
const deferHeads = (db: Db, type: string) => changeHeads(db, type, `run_at = now() + interval '1 hour'`);

/** Operations queued behind each blocked head: a scan that tests them all reads four pages each. */
const BEHIND = 500;
/** Pages a claim may read past 10 blocked keys with BEHIND each: about 770 with a bounded scan, 20,000 when it tests every row. */
const CLAIM_PAGES = 2_500;

/**
 * A claim's scan walks the PENDING rows in claim order; every row queued behind a head it cannot
 * start now (a retry's backoff, a paused type) fails the head check at the cost of a probe. The scan
 * tests a bounded number of rows, then looks key by key, so that a deep backlog behind such heads
 * does not make every claim walk it (0.8 s a claim with 100,000 behind 10 keys). Past too many keys
 * to visit, it reads the marked due heads of its types (migration 014).
 */
describeEachBackend('a claim past heads it cannot start', (db) => {
  it('reads a bounded number of pages past its own busy keys, however many wait behind them', async () => {
    const type = uniqueId('busy');
    const keys = Array.from({ length: 10 }, () => uniqueId('key'));
    // Of a low priority, so that the other tests' claims, which walk the PENDING rows in claim
    // order, come to these last.
    for (const key of keys) await acceptMany(db(), BEHIND, () => ({ type, orderingKey: key, priority: -5 }));
    await changeHeads(db(), type, `state = 'PROCESSING'`);
    const [target] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key'), priority: -5 }));
    await db().query('ANALYZE operations');
    const claim = (types: string[]) => claimCall({ types, busyKeys: keys });
    const { read, claimed } = await db().withSession(async (session) => {
      await session.query(...claim([uniqueId('busy')]));
      const read = await pagesRead(session, ...claim([type]));
      const { rows } = await session.query<{ id: string }>(`SELECT id FROM operations WHERE type = $1 AND state = 'PROCESSING' AND NOT (ordering_key = ANY($2))`, [type, keys]);
      return { read, claimed: rows.map((r) => r.id) };
    });
    assert.deepEqual(claimed, [target], 'the claim took the head past the busy keys');
    assert.ok(read <= CLAIM_PAGES, `the claim read ${read} pages past ${10 * (BEHIND - 1)} queued behind its 10 busy keys`);
  });

  it('reads a bounded number of pages however many wait behind them, and still takes the best head past them', async () => {
    const type = uniqueId('deferred');
    for (let k = 0; k < 10; k += 1) {
      const key = uniqueId('key');
      await acceptMany(db(), BEHIND, () => ({ type, orderingKey: key }));
    }
    await deferHeads(db(), type);
    const [lower] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key'), priority: -1 }));
    const [higher] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key') }));
    // The same path on a smaller backlog first: a session's first call reads the catalog to plan each statement.
    const warmUp = uniqueId('deferred');
    const warmUpKey = uniqueId('key');
    await acceptMany(db(), 150, () => ({ type: warmUp, orderingKey: warmUpKey }));
    await deferHeads(db(), warmUp);
    await db().query('ANALYZE operations');
    const { read, first, second } = await db().withSession(async (session) => {
      await session.query(...claimCall({ types: [warmUp] }));
      const read = await pagesRead(session, ...claimCall({ types: [type] }));
      const { rows } = await session.query<{ id: string }>(
        `SELECT id FROM operations WHERE type = $1 AND state = 'PROCESSING' ORDER BY updated_at, seq`,
        [type],
      );
      const next = await session.query<{ id: string }>(...claimCall({ types: [type] }));
      return { read, first: rows.map((r) => r.id), second: next.rows.map((r) => r.id) };
    });
    assert.deepEqual(first, [higher], 'the claim took the head of higher priority, accepted after the other');
    assert.deepEqual(second, [lower], 'the next claim took the other');
    assert.ok(read <= CLAIM_PAGES, `the claim read ${read} pages past ${10 * (BEHIND - 1)} queued behind 10 deferred heads`);
  });

  it('with more active keys than it visits, still finds a head past them all', async () => {
    const type = uniqueId('deferred');
    await deferredKeys(db(), type);
    const [target] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key') }));
    const { rows } = await db().query<{ id: string }>(...claimCall({ types: [type] }));
    assert.deepEqual(rows.map((r) => r.id), [target]);
  });

  it('claimers racing past blocked heads take each operation once, one per key, each its key\'s first', async () => {
    const type = uniqueId('deferred');
    for (let k = 0; k < 10; k += 1) {
      const key = uniqueId('key');
      await acceptMany(db(), 150, () => ({ type, orderingKey: key }));
    }
    await deferHeads(db(), type);
    await raceClaims(db(), type);
  });

  it('reads a bounded number of pages past operations scheduled for later and of types it does not run', async () => {
    const type = uniqueId('due');
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    // Of a higher priority than the rest of this file's, so that the claim comes to them first.
    await acceptMany(db(), AHEAD, () => ({ type, orderingKey: uniqueId('key'), priority: 5, runAt: tomorrow }));
    await acceptMany(db(), AHEAD, () => ({ type: uniqueId('other'), orderingKey: uniqueId('key'), priority: 5 }));
    const [target] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key'), priority: 5 }));
    await db().query('ANALYZE operations');
    const { read, claimed } = await db().withSession(async (session) => {
      await session.query(...claimCall({ types: [uniqueId('due')] }));
      const read = await pagesRead(session, ...claimCall({ types: [type] }));
      const { rows } = await session.query<{ id: string }>(`SELECT id FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type]);
      return { read, claimed: rows.map((r) => r.id) };
    });
    assert.deepEqual(claimed, [target], 'the claim took the one due operation of its type');
    assert.ok(read <= SCHEDULED_PAGES, `the claim read ${read} pages past ${2 * AHEAD} operations scheduled for later or of another type`);
  });
});

/** Operations scheduled for later, and of another type, ahead of a due one in claim order. */
const AHEAD = 3_000;
/** Pages a claim may read past them: about 490 with a first pass bounded by the rows it passes, 5,900 when it walks them all. */
const SCHEDULED_PAGES = 1_500;

/** Operations of another type ahead in claim order, each on a key of its own: more active keys than a claim of one visits. */
const OTHERS = 5_000;
/** Operations due behind a running head. */
const QUEUED = 300;
/**
 * Pages the claim may read: about 3,700 when its last pass walked the due rows of its type (most of
 * it the visit of 1,000 keys before it gives up; less since it reads the marked heads), 8,700 when
 * it walked every PENDING row, and growing with the other types' backlog.
 */
const FALLBACK_PAGES = 5_500;

describeEachBackend('a claim past more active keys than it visits', (db) => {
  it('reads the due rows of its types, not every PENDING row, and takes the head past those it cannot start', async () => {
    const type = uniqueId('queued');
    // Ahead in claim order (higher priority, accepted first), of a type the claim does not run.
    await acceptMany(db(), OTHERS, () => ({ type: uniqueId('other'), orderingKey: uniqueId('key'), priority: 1 }));
    const key = uniqueId('key');
    const [head] = await acceptMany(db(), QUEUED + 1, () => ({ type, orderingKey: key }));
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [head]);
    const [target] = await acceptMany(db(), 1, () => ({ type, orderingKey: uniqueId('key') }));
    await db().query('ANALYZE operations');
    const { read, claimed } = await db().withSession(async (session) => {
      // A first call, on a type with nothing due: a session's first call reads the catalog to plan the function's statements.
      await session.query(...claimCall({ types: [uniqueId('queued')] }));
      const read = await pagesRead(session, ...claimCall({ types: [type] }));
      const { rows } = await session.query<{ id: string }>(`SELECT id FROM operations WHERE type = $1 AND state = 'PROCESSING' AND id <> $2`, [type, head]);
      return { read, claimed: rows.map((r) => r.id) };
    });
    assert.deepEqual(claimed, [target], 'the claim took the one head it could start');
    assert.ok(read <= FALLBACK_PAGES, `the claim read ${read} pages past ${OTHERS} operations of another type and ${QUEUED} behind a running head`);
  });

  it('claimers racing through that pass take each operation once, one per key, each its key\'s first', async () => {
    const type = uniqueId('deferred');
    await deferredKeys(db(), type);
    await raceClaims(db(), type);
  });

  it('reads the marked heads of its types, not the operations queued behind heads it cannot start', async () => {
    const type = uniqueId('deferred');
    await deferredKeys(db(), type, BLOCKED_KEYS);
    const targets = await acceptMany(db(), 2, () => ({ type, orderingKey: uniqueId('key') }));
    await db().query('ANALYZE operations');
    const { first, second, claimed } = await db().withSession(async (session) => {
      await session.query(...claimCall({ types: [uniqueId('deferred')] }));
      const first = await pagesRead(session, ...claimCall({ types: [type] }));
      const second = await pagesRead(session, ...claimCall({ types: [type] }));
      const { rows } = await session.query<{ id: string }>(`SELECT id FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type]);
      return { first, second, claimed: rows.map((r) => r.id) };
    });
    assert.deepEqual(claimed.toSorted(), targets.toSorted(), 'the two claims took the two heads past the blocked keys');
    assert.ok(first <= MARKED_FIRST_PAGES, `the first claim read ${first} pages past ${BLOCKED_KEYS} keys with one queued behind each head`);
    assert.ok(second <= MARKED_AGAIN_PAGES, `the next claim in the session read ${second} pages`);
  });
});

/** Keys whose heads wait out a backoff, each with one operation behind it. */
const BLOCKED_KEYS = 3_000;
/**
 * Pages a claim of one may read past them: about 5,700 when its last pass reads the marked heads,
 * most of it the visit of 1,000 keys before it gives up; 17,000 when that pass walks every due row.
 */
const MARKED_FIRST_PAGES = 9_000;
/** The next claim in the session, which skips the visit that gave up: about 850-1,100 pages, against 15,000. */
const MARKED_AGAIN_PAGES = 2_500;

/**
 * A claim probes the active-key index once for each unmarked candidate it tests (a marked head it
 * takes at its mark's word, migration 017), and once for each operation it starts: that probe is
 * both the start's own head check (in the snapshot taken after the key's lock is held) and the
 * look-up of what follows the operation on its key. Two probes there cost a claim of 100 a tenth of
 * its time (migration 013).
 */
describeEachBackend('the start of a claim', (db) => {
  it('reads each started key once after picking it: the head check and the successor share one probe', async () => {
    const type = uniqueId('probes');
    const keys = Array.from({ length: 100 }, () => uniqueId('key'));
    // Ahead of every other test's work in claim order, and each with one waiting behind it.
    for (const round of [0, 1]) {
      await acceptOperations(db(), keys.map((key) => ({ externalId: uniqueId(), type, payload: {}, orderingKey: key, maxAttempts: 1, priority: 10 })), new Date(Date.now() - 1000 + round));
    }
    await db().query('ANALYZE operations');
    const { rows, active: scans } = await claimCountingProbes<{ ordering_key: string; next: { ordering_key: string } | null }>(
      db(),
      claimCall({ types: [type], limit: 100, columns: 'id, ordering_key, next' }),
    );
    const started = rows.length;
    const successors = rows.filter((r) => r.next?.ordering_key === r.ordering_key).length;
    assert.equal(started, 100);
    assert.equal(successors, 100, 'each started operation comes with the one waiting behind it on its key');
    assert.ok(scans <= 2 * started + 10, `${scans} probes of the active-key index to start ${started}`);
  });

  it('takes a marked head at its mark\'s word: its key is probed once, by the start\'s own check', async () => {
    const type = uniqueId('marked');
    const keys = Array.from({ length: 100 }, () => uniqueId('key'));
    await acceptOperations(db(), keys.map((key) => ({ externalId: uniqueId(), type, payload: {}, orderingKey: key, maxAttempts: 1, priority: 10 })), new Date(Date.now() - 1000));
    const { rows: marked } = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE type = $1 AND head`, [type]);
    assert.equal(marked[0]!.n, 100, 'each was marked on accept');
    await db().query('ANALYZE operations');
    const { rows, active, running } = await claimCountingProbes(db(), claimCall({ types: [type], limit: 100 }));
    const started = rows.length;
    assert.equal(started, 100);
    // Probing each key in the first pass too made it two of each per started operation.
    assert.ok(active <= started + 10, `${active} probes of the active-key index to start ${started}`);
    assert.ok(running <= started + 10, `${running} probes of the running-key index to start ${started}`);
  });
});

/**
 * The claim `call` run on a session of its own and rolled back, with the probes it made of the
 * active-key and the running-key indexes (scans counted by the statistics of its transaction).
 */
async function claimCountingProbes<R = Record<string, unknown>>(db: Db, call: [string, unknown[]]): Promise<{ rows: R[]; active: number; running: number }> {
  const probes = `SELECT pg_stat_get_xact_numscans('operations_active_key_idx'::regclass)::int AS active,
                         pg_stat_get_xact_numscans('operations_running_key_idx'::regclass)::int AS running`;
  return db.withSession((session) =>
    rolledBack(session, async () => {
      const before = (await session.query<{ active: number; running: number }>(probes)).rows[0]!;
      const { rows } = await session.query<R>(...call);
      const after = (await session.query<{ active: number; running: number }>(probes)).rows[0]!;
      return { rows, active: after.active - before.active, running: after.running - before.running };
    }),
  );
}
