import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { resolveConfig } from '../src/config.js';
import { startService } from '../src/service.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { claimOperations } from '../src/store/claimOperations.js';
import type { Db } from '../src/store/db.js';
import { createPgliteDb } from '../src/store/pgliteDb.js';
import { migrate } from '../src/store/migrate.js';
import { keepUpTable, tablesDueForUpkeep } from '../src/store/tableUpkeep.js';
import { pagesRead } from './support/pagesRead.js';
import { claimCall } from './support/claimCall.js';
import { completeAttempts } from './support/completeAttempts.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';

/**
 * The embedded store (PGlite) runs no autovacuum. Without upkeep of its own, every transition left
 * a dead row version for as long as the store lived, and the planner never learned a table's size:
 * with accepts outpacing the worker, a claim of 10 grew from 2 to 18 ms over 1,500 rounds (20,065
 * pages; 532 once vacuumed), and the embedded accept benchmark ran at 1,005 requests a second, its
 * p99 at 2,000 a second 2.2 s. Most of the claim's pages came from the plan it kept for the empty
 * table, which migration 016 took out of it: the claim below read 3,582-3,675 pages before the
 * upkeep without it, and 435-619 with it, vacuumed or not.
 */
describe('the embedded store\'s table upkeep', () => {
  it('vacuums and analyzes a table past autovacuum\'s thresholds, and claims read a bounded number of pages before and after', async () => {
    const db = await createPgliteDb(undefined);
    try {
      await migrate(db);
      const type = uniqueId('type');
      // As under load: accepts outpace the worker, which claims 10 at a time and completes them.
      for (let round = 0; round < 600; round += 1) {
        await acceptOperations(db, Array.from({ length: 20 }, () => ({ externalId: uniqueId(), type, payload: {}, maxAttempts: 1 })), new Date(Date.now() - 1000));
        await completeAttempts(db, await claimOperations(db, { limit: 10, now: () => new Date(), leaseOwner: 'w', leaseMs: 30_000, types: [type] }));
      }
      const before = await pagesRead(db, ...claimCall({ types: [type], limit: 10 }));
      await flushStatistics(db);
      const deadBefore = await deadVersions(db);
      assert.ok(deadBefore >= 6_000, `${deadBefore} dead versions after 6,000 completed`);
      const due = await tablesDueForUpkeep(db);
      const operations = due.find((u) => u.table === 'operations');
      assert.ok(operations?.vacuum, `operations is due for a vacuum: ${JSON.stringify(due)}`);
      for (const upkeep of due) await keepUpTable(db, upkeep);
      await flushStatistics(db);
      assert.deepEqual(await tablesDueForUpkeep(db), [], 'nothing is due once kept up');
      assert.ok((await deadVersions(db)) <= 50, 'the dead versions are gone');
      const { rows } = await db.query<{ reltuples: number }>(`SELECT reltuples::float8 AS reltuples FROM pg_class WHERE oid = 'operations'::regclass`);
      assert.ok(Number(rows[0]?.reltuples) >= 10_000, `the planner knows ${rows[0]?.reltuples} rows`);
      const after = await pagesRead(db, ...claimCall({ types: [type], limit: 10 }));
      // 435 and 619 pages for the 10 in one run; with the plan kept for the empty table, 3,600.
      for (const read of [before, after]) assert.ok(read <= 10 * 120, `a claim of 10 read ${before} pages past 6,000 completed and 6,000 waiting, ${after} once kept up`);
    } finally {
      await db.close();
    }
  });

  it('runs in an embedded service, as its leader\'s duty', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'opsd-upkeep-'));
    const service = await startService(resolveConfig({ DATABASE_URL: '', REDIS_URL: '', OPSD_DATA_DIR: dataDir, PORT: '0', OPSD_AUTH: 'off' }), testLogger());
    try {
      const type = uniqueId('type');
      await churn(service.db, type, 1_500);
      await waitFor('the operations table to be vacuumed', async () => (await vacuums(service.db)) >= 1 || null, { timeoutMs: 20_000 });
      await flushStatistics(service.db);
      const { rows } = await service.db.query<{ dead: number; live: number }>(`SELECT n_dead_tup::int AS dead, n_live_tup::int AS live FROM pg_stat_user_tables WHERE relname = 'operations'`);
      assert.ok(rows[0]!.dead <= 50 + 0.2 * rows[0]!.live, `${rows[0]!.dead} dead versions left beside ${rows[0]!.live} live rows`);
    } finally {
      await service.stop(1000);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** Accepts `count` operations of `type` on keys of their own, then claims and completes them all: two dead versions each. */
async function churn(db: Db, type: string, count: number): Promise<void> {
  for (let from = 0; from < count; from += 500) {
    await acceptOperations(db, Array.from({ length: Math.min(500, count - from) }, () => ({ externalId: uniqueId(), type, payload: {}, maxAttempts: 1 })), new Date(Date.now() - 1000));
  }
  for (;;) {
    const claimed = await claimOperations(db, { limit: 500, now: () => new Date(), leaseOwner: 'churn', leaseMs: 30_000, types: [type] });
    if (claimed.length === 0) break;
    await completeAttempts(db, claimed);
  }
}

/** Dead row versions in `operations`, as the statistics count them. */
async function deadVersions(db: Db): Promise<number> {
  const { rows } = await db.query<{ dead: number }>(`SELECT n_dead_tup::int AS dead FROM pg_stat_user_tables WHERE relname = 'operations'`);
  return rows[0]?.dead ?? 0;
}

/** Vacuums of `operations` so far: by hand, since PGlite has no autovacuum. */
async function vacuums(db: Db): Promise<number> {
  await flushStatistics(db);
  const { rows } = await db.query<{ n: number }>(`SELECT vacuum_count::int AS n FROM pg_stat_user_tables WHERE relname = 'operations'`);
  return rows[0]?.n ?? 0;
}

/** The session's pending statistics, flushed now rather than at most once a second, and read afresh. */
async function flushStatistics(db: Db): Promise<void> {
  await db.query('SELECT pg_stat_force_next_flush()');
  await db.query('SELECT 1');
  await db.query('SELECT pg_stat_clear_snapshot()');
}
