import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createStoreSnapshot } from '../src/observe/storeSnapshot.js';
import { postgresBackend, type TestDb } from './support/backends.js';
import { holdTransaction } from './support/heldTransaction.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { waitFor } from './support/helpers.js';

/** How long each transaction below is held before the reading is checked. */
const HELD_MS = 1_500;

describe('the store snapshot on a PostgreSQL server', { skip: postgresBackend.skip }, () => {
  let store: TestDb;
  before(async () => {
    store = await postgresBackend.open();
  });
  after(async () => {
    await store.cleanup();
  });

  async function heldFor(open: () => Promise<{ release: () => Promise<void> }>): Promise<number> {
    const snapshot = createStoreSnapshot({ db: store.db, logger: pino({ level: 'silent' }), intervalMs: 50 });
    const held = await open();
    try {
      const since = Date.now();
      await snapshot.start();
      // A reading taken once the transaction is HELD_MS old.
      await waitFor('a reading after the hold', () => snapshot.current.readAt >= since + HELD_MS, { timeoutMs: 10_000 });
      return snapshot.current.cleanupHeldSeconds ?? 0;
    } finally {
      snapshot.stop();
      await held.release();
    }
  }

  it('reads the age of a transaction that holds back the cleanup of its tables: a read in its database', async () => {
    const age = await heldFor(() => holdTransaction(store.url as string, { writes: false }));
    assert.ok(age >= (HELD_MS - 50) / 1000, `the oldest transaction holding back cleanup is ${age} s old`);
  });

  it('and a writing one in another database of the server', async () => {
    const other = await createServerDatabase(process.env.DATABASE_URL as string);
    try {
      const age = await heldFor(() => holdTransaction(other.url, { writes: true }));
      assert.ok(age >= (HELD_MS - 50) / 1000, `the oldest transaction holding back cleanup is ${age} s old`);
    } finally {
      await other.drop();
    }
  });
});
