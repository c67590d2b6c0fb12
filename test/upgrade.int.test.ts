import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { decide } from '../src/domain/decide.js';
import type { OperationCommand } from '../src/domain/commands.js';
import type { OperationEvent } from '../src/domain/events.js';
import { evolve } from '../src/domain/evolve.js';
import type { OperationState } from '../src/domain/operation.js';
import { payloadHash } from '../src/domain/payloadHash.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import type { Db } from '../src/store/db.js';
import { loadMigrations, migrate } from '../src/store/migrate.js';
import { eventToRecord } from '../src/store/operationRow.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { rescueExpiredLeases } from '../src/store/rescueExpiredLeases.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { BACKENDS } from './support/backends.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';
import { assertProjectionIsFold } from './support/projectionFold.js';

const TYPE = 'legacy.step';
const MIGRATIONS = loadMigrations();
const LATEST = MIGRATIONS.at(-1)!.version;
/** Where `priority` arrived: in the `operations` table and in the `received` event. */
const PRIORITY_VERSION = 4;
/** Where the mark of each key's head arrived (`operations.head`); it marks the heads already there. */
const HEAD_MARK_VERSION = 14;

/** What an operation had been through when the store was upgraded. */
type History = 'pending' | 'running' | 'completed' | 'retrying' | 'later';

interface Seeded {
  id: string;
  key: string;
  history: History;
}

/**
 * Writes one operation as the release at `version` wrote it: its row with the columns of migration
 * 001 only (the later ones have defaults), its events as the domain decides them, and before
 * priorities a `received` event without one. Ids are version 4 UUIDs, as those releases made them.
 */
async function writeAsBefore(db: Db, version: number, key: string, history: History, at: number): Promise<Seeded> {
  const time = (offsetMs: number) => new Date(at + offsetMs).toISOString();
  const payload = { key, history };
  const commands: OperationCommand[] = [{
    kind: 'accept',
    now: time(0),
    operationId: randomUUID(),
    externalId: uniqueId('before'),
    operationType: TYPE,
    payload,
    payloadHash: payloadHash(payload),
    orderingKey: key,
    maxAttempts: 3,
    runAt: history === 'later' ? time(3_600_000) : time(0),
    priority: 0,
  }];
  // Started by a worker of the release before. A running one's lease ran out while the store was
  // upgraded: that worker stopped mid-attempt.
  const start = { kind: 'start', now: time(1_000), leaseOwner: 'a-worker-of-the-release-before', leaseExpiresAt: time(31_000) } as const;
  if (history === 'running' || history === 'completed' || history === 'retrying') commands.push(start);
  if (history === 'completed') commands.push({ kind: 'complete', now: time(2_000), fencingToken: 1, result: 'done before' });
  if (history === 'retrying') commands.push({ kind: 'fail', now: time(2_000), fencingToken: 1, error: { code: 'E', message: 'once' }, retryAt: time(3_000) });

  let state: OperationState | null = null;
  const events: OperationEvent[] = [];
  for (const command of commands) {
    for (const event of decide(command, state)) {
      state = evolve(state, event);
      if (event.type === 'received' && version < PRIORITY_VERSION) {
        const { priority: _none, ...withoutPriority } = event;
        events.push(withoutPriority);
      } else {
        events.push(event);
      }
    }
  }
  const op = state as OperationState;
  await db.query(
    `INSERT INTO operations (id, external_id, type, payload, payload_hash, ordering_key, state, attempts, max_attempts, run_at,
       fencing_token, lease_owner, lease_expires_at, result, last_error, version, created_at, updated_at)
     VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15::jsonb, $16, $17, $18)`,
    [op.id, op.externalId, op.type, JSON.stringify(op.payload), op.payloadHash, op.orderingKey, op.status, op.attempts, op.maxAttempts, op.runAt,
      op.fencingToken, op.leaseOwner, op.leaseExpiresAt, op.result === null ? null : JSON.stringify(op.result),
      op.lastError === null ? null : JSON.stringify(op.lastError), op.version, op.createdAt, op.updatedAt],
  );
  for (const [index, event] of events.entries()) {
    const record = eventToRecord(op.id, index + 1, event);
    await db.query(
      `INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
       VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)`,
      [record.operation_id, record.seq, record.type, JSON.stringify(record.data), record.external_id, record.payload_hash, record.occurred_at],
    );
  }
  return { id: op.id, key, history };
}

/**
 * The operations a release that marks heads has marked: on each key, the first one not done, if it
 * waits (accepted first on its key, or come back after a failed attempt, or next once the one before
 * ended). A start clears the mark.
 */
function markedHeads(seeded: readonly Seeded[]): string[] {
  const keys = new Set<string>();
  const heads: string[] = [];
  for (const op of seeded) {
    if (op.history === 'completed' || keys.has(op.key)) continue;
    keys.add(op.key);
    if (op.history !== 'running') heads.push(op.id);
  }
  return heads;
}

/** Every key's operations, in acceptance order: each kind of history at a head and behind one. */
const SEED: readonly (readonly [key: string, history: History])[] = [
  ['a', 'pending'], ['b', 'running'], ['c', 'completed'], ['d', 'retrying'], ['e', 'later'],
  ['a', 'pending'], ['b', 'pending'], ['c', 'pending'], ['d', 'pending'],
  ['a', 'pending'], ['e', 'pending'],
];

const STARTING_VERSIONS = MIGRATIONS.map((migration) => migration.version).filter((version) => version < LATEST);

for (const backend of BACKENDS) {
  describe(`a store of every earlier version, upgraded in place [${backend.name}]`, { skip: backend.skip }, () => {
    for (const version of STARTING_VERSIONS) {
      it(`from migration ${version}: its waiting heads are marked, what it held runs once after the upgrade, in order per key, and every projection is the fold of its events`, async () => {
        // A store at `version`, migrated as a release of that version migrated it.
        const store = await backend.open({ migrations: MIGRATIONS.filter((migration) => migration.version <= version) });
        const { db } = store;
        const runs: string[] = [];
        const registry = new HandlerRegistry();
        registry.register(defineOperation({ type: TYPE, handle: ({ operation }) => { runs.push(operation.id); return 'done after'; } }) as never);
        const worker = new Worker({ db, registry, logger: testLogger(), pollIntervalMs: 50 });
        try {
          const at = Date.now() - 600_000;
          const seeded: Seeded[] = [];
          for (const [index, [key, history]] of SEED.entries()) seeded.push(await writeAsBefore(db, version, key, history, at + index));
          const heads = markedHeads(seeded);
          if (version >= HEAD_MARK_VERSION) await db.query('UPDATE operations SET head = true WHERE id = ANY($1::uuid[])', [heads]);

          const applied = await migrate(db);
          assert.deepEqual(applied, MIGRATIONS.filter((migration) => migration.version > version).map((migration) => migration.name));
          const { rows: marked } = await db.query<{ id: string }>('SELECT id FROM operations WHERE head ORDER BY seq');
          assert.deepEqual(marked.map((row) => row.id), heads, 'the heads there before the upgrade are marked');

          // Accepted after the upgrade, behind what was there: a key's order spans the two releases.
          const [after] = await acceptOperations(db, [{ externalId: uniqueId('after'), type: TYPE, payload: null, orderingKey: 'a', maxAttempts: 3 }], new Date());
          const rescued = await rescueExpiredLeases(db, { now: new Date(), limit: 10 });
          assert.deepEqual(rescued.map((op) => op.id), seeded.filter((op) => op.history === 'running').map((op) => op.id));

          worker.start();
          const due = [...seeded.filter((op) => op.history !== 'completed' && op.key !== 'e').map((op) => op.id), after!.operation.id];
          for (const id of due) {
            await waitFor(`operation ${id} completed`, async () => (await getOperation(db, id))?.status === 'COMPLETED');
          }
          await worker.stop(1000);

          assert.deepEqual([...runs].sort(), [...due].sort(), 'each due operation ran once, and nothing else ran');
          for (const key of ['a', 'b', 'c', 'd']) {
            const accepted = [...seeded.filter((op) => op.key === key && op.history !== 'completed').map((op) => op.id), ...(key === 'a' ? [after!.operation.id] : [])];
            assert.deepEqual(runs.filter((id) => accepted.includes(id)), accepted, `key ${key} ran in acceptance order`);
          }
          for (const op of seeded.filter((seed) => seed.key === 'e')) assert.equal((await getOperation(db, op.id))?.status, 'PENDING', `${op.history} on key e`);

          const running = seeded.find((op) => op.history === 'running')!;
          assert.deepEqual((await listEvents(db, running.id)).map((e) => e.event.type), ['received', 'started', 'lease_expired', 'started', 'completed']);
          const retried = await getOperation(db, seeded.find((op) => op.history === 'retrying')!.id);
          assert.equal(retried?.attempts, 2);
          assert.equal((await getOperation(db, seeded.find((op) => op.history === 'completed')!.id))?.result, 'done before');

          const states = await assertProjectionIsFold(db);
          assert.equal(states.length, SEED.length + 1);
        } finally {
          await worker.stop(1000);
          await store.cleanup();
        }
      });
    }
  });
}
