import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUuid } from '../src/domain/uuid.js';
import { uuidv7 } from '../src/lib/uuidv7.js';

const timeOf = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);

describe('uuidv7', () => {
  it('is a version 7 UUID of the RFC 9562 variant, carrying its time in ms', () => {
    for (const ms of [0, 1, 2 ** 32 - 1, 2 ** 32, Date.UTC(2026, 11, 5, 2, 30), 2 ** 48 - 1]) {
      const id = uuidv7(ms);
      assert.ok(isUuid(id), id);
      assert.equal(id[14], '7', `version of ${id}`);
      assert.ok('89ab'.includes(id[19] as string), `variant of ${id}`);
      assert.equal(timeOf(id), ms, `time of ${id}`);
    }
  });

  it('ids of later milliseconds sort after earlier ones, as text and as PostgreSQL compares uuids', () => {
    const start = Date.UTC(2026, 11, 5);
    const ids = Array.from({ length: 1000 }, (_, i) => uuidv7(start + i));
    assert.deepEqual([...ids].sort(), ids);
  });

  it('never repeats, across many refills of its random bytes', () => {
    const ms = Date.now();
    const ids = new Set(Array.from({ length: 100_000 }, () => uuidv7(ms)));
    assert.equal(ids.size, 100_000);
  });
});
