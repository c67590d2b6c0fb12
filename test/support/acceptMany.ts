import { acceptOperations } from '../../src/store/acceptOperations.js';
import type { Db } from '../../src/store/db.js';
import type { Json } from '../../src/domain/operation.js';
import { uniqueId } from './helpers.js';

/** Accepts `count` operations in batches of 500, each made by `item` (called once per operation); their ids, in order. */
export async function acceptMany(db: Db, count: number, item: () => { type: string; orderingKey: string; priority?: number; runAt?: string; payload?: Json }): Promise<string[]> {
  const ids: string[] = [];
  for (let from = 0; from < count; from += 500) {
    const items = Array.from({ length: Math.min(500, count - from) }, () => ({ externalId: uniqueId(), payload: {}, maxAttempts: 1, ...item() }));
    ids.push(...(await acceptOperations(db, items, new Date(Date.now() - 1000))).map((r) => r.operation.id));
  }
  return ids;
}
