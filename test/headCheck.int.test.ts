import assert from 'node:assert/strict';
import { it } from 'node:test';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { CLAIM_LOCK_NAMESPACE } from '../src/store/claimOperations.js';
import type { Queryable } from '../src/store/db.js';
import { isHeadOfKey } from '../src/store/headOfKey.js';
import { describeEachBackend } from './support/backends.js';
import { uniqueId } from './support/helpers.js';

/** Operations waiting on one key: enough that a check walking them reads thousands of pages. */
const BACKLOG = 2_000;
/**
 * Operations waiting on other keys, so that reading the whole table costs more than walking the
 * backlog; of the lowest priority, so that a claim comes to them last.
 */
const ELSEWHERE = 8_000;
/** Pages a check of the head may read, whatever waits behind it (it reads a few dozen). */
const PAGES = 150;

async function accept(db: Parameters<typeof acceptOperations>[0], count: number, item: () => { type: string; orderingKey: string; priority?: number }): Promise<string[]> {
  const ids: string[] = [];
  for (let from = 0; from < count; from += 500) {
    const items = Array.from({ length: Math.min(500, count - from) }, () => ({ externalId: uniqueId(), payload: {}, maxAttempts: 1, ...item() }));
    ids.push(...(await acceptOperations(db, items, new Date(Date.now() - 1000))).map((r) => r.operation.id));
  }
  return ids;
}

/** Shared pages the statement read, found in the buffer or not, from its plan's root. */
async function pagesRead(db: Queryable, sql: string, params: readonly unknown[]): Promise<number> {
  const { rows } = await db.query<{ 'QUERY PLAN': [{ Plan: Record<string, number> }] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params);
  const plan = rows[0]!['QUERY PLAN'][0].Plan;
  return (plan['Shared Hit Blocks'] ?? 0) + (plan['Shared Read Blocks'] ?? 0);
}

/**
 * The per-key order check looks at what is ahead of an operation and at what runs on its key: its
 * cost must not grow with the backlog behind it, or a busy key's every start slows down as work
 * piles up on it (a check that walked the key's whole backlog read one page per waiting operation).
 */
describeEachBackend('the head-of-key check', (db) => {
  let elsewhere: Promise<unknown> | null = null;
  /** `priority`: 10 puts the key ahead of every other test's in claim order. */
  async function keyWithBacklog(type: string, priority = 0): Promise<{ key: string; ids: string[] }> {
    elsewhere ??= accept(db(), ELSEWHERE, () => ({ type: 'elsewhere', orderingKey: uniqueId('other'), priority: -10 }));
    await elsewhere;
    const key = uniqueId('key');
    const ids = await accept(db(), BACKLOG, () => ({ type, orderingKey: key, priority }));
    await db().query('ANALYZE operations');
    return { key, ids };
  }

  it('reads a bounded number of pages for a key with thousands waiting, at its head and behind it', async () => {
    const type = uniqueId('type');
    const { ids } = await keyWithBacklog(type);
    const head = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [ids[0]]);
    assert.ok(head <= PAGES, `the check of a head with ${BACKLOG} behind it read ${head} pages`);
    const behind = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [ids[1]]);
    assert.ok(behind <= PAGES, `the check of the second operation read ${behind} pages`);
  });

  it('a claim of the head of a key with thousands waiting behind it reads a bounded number of pages', async () => {
    const type = uniqueId('type');
    const { ids } = await keyWithBacklog(type, 10);
    const warmUp = uniqueId('type');
    await accept(db(), 1, () => ({ type: warmUp, orderingKey: uniqueId('key'), priority: 10 }));
    const now = new Date();
    const leaseEnds = new Date(now.getTime() + 30_000);
    const claimSql = 'SELECT id FROM opsd_claim($1, 1, $2, $3, $4, $5, $6, $7)';
    const claimParams = (types: string[]) => [now, types, [], 'w1', leaseEnds, leaseEnds.toISOString(), CLAIM_LOCK_NAMESPACE];
    const read = await db().withSession(async (session) => {
      // The session's first call reads the catalog to plan the function's statements.
      await session.query(claimSql, claimParams([warmUp]));
      return pagesRead(session, claimSql, claimParams([type]));
    });
    const { rows } = await db().query<{ state: string }>('SELECT state FROM operations WHERE id = $1', [ids[0]]);
    assert.equal(rows[0]?.state, 'PROCESSING', 'the claim started the head');
    assert.ok(read <= PAGES, `the claim read ${read} pages`);
  });

  it('the start of a successor, the running one left out, reads a bounded number of pages', async () => {
    const type = uniqueId('type');
    const { ids } = await keyWithBacklog(type);
    await db().query(`UPDATE operations SET state = 'PROCESSING' WHERE id = $1`, [ids[0]]);
    const read = await pagesRead(db(), `SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey('SELECT $2::uuid')}`, [ids[1], ids[0]]);
    assert.ok(read <= PAGES, `the successor's check read ${read} pages`);
    const { rows } = await db().query(`SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey('SELECT $2::uuid')}`, [ids[1], ids[0]]);
    assert.equal(rows.length, 1, 'the successor is the head once the running one is left out');
    const blocked = await db().query(`SELECT o.id FROM operations o WHERE o.id = $1 AND ${isHeadOfKey()}`, [ids[1]]);
    assert.equal(blocked.rows.length, 0, 'nothing starts beside the running one');
  });
});
