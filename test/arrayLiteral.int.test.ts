import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { arrayLiteral, withArrayLiterals } from '../src/store/arrayLiteral.js';
import { databaseSkip } from './support/backends.js';

const HOSTILE_TEXT = [
  '',
  'NULL',
  'null',
  'NuLl',
  'nullish',
  ' leading',
  'trailing ',
  'tab\there',
  'new\nline',
  'a,b',
  '{braces}',
  '}',
  'q"uote',
  'back\\slash',
  '\\"',
  '"',
  '\\',
  'é 😀 ü',
  'plain-value_1',
  '2026-12-04T19:45:01.123Z',
];

describe('array literals', () => {
  it('quote only what array_in would read differently, and leave other arrays to the driver', () => {
    assert.equal(arrayLiteral(['a', 'b c', '', null, undefined, 'NULL', 'x"y', 'x\\y']), '{a,"b c","",NULL,NULL,"NULL","x\\"y","x\\\\y"}');
    assert.equal(arrayLiteral([1, -2.5, 9007199254740993n, true]), '{1,-2.5,9007199254740993,true}');
    assert.equal(arrayLiteral([]), '{}');
    assert.equal(arrayLiteral([new Date(0)]), null);
    assert.equal(arrayLiteral([['nested']]), null);
    assert.equal(arrayLiteral([{ a: 1 }]), null);
    const params = [1, ['a'], [new Date(0)], 'text'];
    assert.deepEqual(withArrayLiterals(params), [1, '{a}', params[2], 'text']);
    const scalars = [1, 'a'];
    assert.equal(withArrayLiterals(scalars), scalars, 'no array: the same parameters, not a copy');
    assert.equal(withArrayLiterals(undefined), undefined);
  });
});

describe('array literals on a PostgreSQL server', { skip: databaseSkip }, () => {
  let client: pg.Client;
  before(async () => {
    client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
  });
  after(async () => {
    await client?.end();
  });

  /** What the server makes of `values` sent as our literal, and as the driver's own serialization. */
  async function readBack(values: unknown[], type: string): Promise<{ ours: unknown; drivers: unknown }> {
    const sql = `SELECT $1::${type} AS a`;
    const ours = (await client.query(sql, [arrayLiteral(values)])).rows[0].a;
    const drivers = (await client.query(sql, [values])).rows[0].a;
    return { ours, drivers };
  }

  it('hostile text reads back as sent, element by element, as with the driver', async () => {
    const values = [...HOSTILE_TEXT, null];
    const { ours, drivers } = await readBack(values, 'text[]');
    assert.deepEqual(ours, values);
    assert.deepEqual(ours, drivers);
    for (const value of HOSTILE_TEXT) {
      assert.deepEqual((await readBack([value], 'text[]')).ours, [value], JSON.stringify(value));
    }
  });

  it('numbers, numbers past 2^53, booleans, uuids and timestamps read back as with the driver', async () => {
    for (const [values, type] of [
      [[0, -1, 2147483647, null], 'int[]'],
      [[9007199254740993n, -9007199254740993n, '9223372036854775807'], 'bigint[]'],
      [[0.1, -2.5e-300, 1.7976931348623157e308], 'float8[]'],
      [[true, false, null], 'boolean[]'],
      [['6f1c2b1e-7a55-4c43-9f0b-2b7f4b9f7c11', null], 'uuid[]'],
      [['2026-12-04T19:45:01.123Z', '0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z'], 'timestamptz[]'],
    ] as const) {
      const { ours, drivers } = await readBack([...values], type);
      assert.deepEqual(ours, drivers, type);
    }
  });

  it('what the server refuses, it refuses either way: NUL in text, a number past the column type', async () => {
    for (const [values, type] of [
      [['a\u0000b'], 'text[]'],
      [[2147483648], 'int[]'],
    ] as const) {
      await assert.rejects(client.query(`SELECT $1::${type}`, [arrayLiteral([...values])]), type);
      await assert.rejects(client.query(`SELECT $1::${type}`, [[...values]]), type);
    }
  });
});
