import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { parseTimestamptz, timestamptzToIso } from '../src/store/timestamptzParser.js';

const driverParser = pg.types.getTypeParser(1184, 'text') as (text: string) => unknown;

/** What a parser made of `text`, comparable across parsers: a Date's time, or the value itself. */
function reading(value: unknown): unknown {
  return value instanceof Date ? ['date', value.getTime()] : ['other', value];
}

function assertSameAsDriver(text: string): void {
  assert.deepEqual(reading(parseTimestamptz(text)), reading(driverParser(text)), text);
}

/**
 * Up to `count` instants between years 1 and 9999 as a UTC session writes them, with 0 to 6
 * fraction digits (trailing zeros dropped, as PostgreSQL drops them), from a fixed seed.
 */
function randomInstants(seed: number, count: number): string[] {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const pad = (n: number, width: number) => String(n).padStart(width, '0');
  const texts: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const date = new Date(Date.UTC(2000, 0, 1) + Math.floor((random() - 0.5) * 2 * 2000 * 365.25 * 86_400_000) * (i % 2 === 0 ? 1 : 4));
    if (date.getUTCFullYear() < 1 || date.getUTCFullYear() > 9999) continue;
    const micros = Math.floor(random() * 1_000_000);
    const fraction = String(micros).padStart(6, '0').slice(0, 1 + (i % 6)).replace(/0+$/, '');
    texts.push(`${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)} ${pad(date.getUTCHours(), 2)}:${pad(date.getUTCMinutes(), 2)}:${pad(date.getUTCSeconds(), 2)}${fraction ? `.${fraction}` : ''}+00`);
  }
  return texts;
}

/** What a UTC session writes: every fraction length, and the edges of the calendar. */
const UTC_TEXTS = [
  '2026-12-04 19:45:01+00',
  '2026-12-04 19:45:01.1+00',
  '2026-12-04 19:45:01.12+00',
  '2026-12-04 19:45:01.123+00',
  '2026-12-04 19:45:01.1234+00',
  '2026-12-04 19:45:01.123456+00',
  '2026-12-04 19:45:01.999999+00',
  '1970-01-01 00:00:00+00',
  '2000-02-29 23:59:59.5+00',
  '2024-02-29 00:00:00+00',
  '9999-12-31 23:59:59.999999+00',
  '1000-01-01 00:00:00+00',
  '0001-01-01 00:00:00+00',
  '0048-02-29 12:00:00.25+00',
  '0099-12-31 23:59:59+00',
];

/** Every other shape: offsets, BC, years past 9999, infinity, seven fraction digits, garbage, NUL and lone surrogates. */
const OTHER_SHAPES = [
  '2026-12-04 19:45:01+05:30',
  '2026-12-04 19:45:01.5-08',
  '2026-12-04 19:45:01+01',
  '0044-03-15 12:00:00+00 BC',
  '10000-01-01 00:00:00+00',
  'infinity',
  '-infinity',
  '2026-12-04 19:45:01.1234567+00',
  '2026-12-04 19:45:01.+00',
  '2026-12-04 19:45:01.12x456+00',
  '2026-12-04T19:45:01+00',
  '2026-1a-04 19:45:01+00',
  '2026-12-04 19:45:0x+00',
  '+00',
  '',
  '\u0000026-12-04 19:45:01+00',
  '2026-12-04 19:45:01\uD800+00',
  '2026-12-04 19:45:\uD80001+00',
];

describe('timestamptz from PostgreSQL', () => {
  it('reads what a UTC session writes exactly as the driver does, for every fraction length', () => {
    for (const text of UTC_TEXTS) assertSameAsDriver(text);
  });

  it('years below 100 stay themselves (Date.UTC would read them as 19xx)', () => {
    for (const text of ['0001-01-01 00:00:00+00', '0048-02-29 12:00:00.25+00', '0099-12-31 23:59:59+00']) {
      const parsed = parseTimestamptz(text) as Date;
      assert.equal(parsed.getUTCFullYear(), Number(text.slice(0, 4)), text);
      assertSameAsDriver(text);
    }
  });

  it('hands every other shape to the driver: offsets, BC, years past 9999, infinity, seven fraction digits, garbage', () => {
    for (const text of OTHER_SHAPES) assertSameAsDriver(text);
  });

  it('agrees with the driver on 20,000 random instants between years 1 and 9999', () => {
    for (const text of randomInstants(20261204, 20_000)) assertSameAsDriver(text);
  });
});

/** What `read` makes of `text`, or the name of what it threw. */
function outcome(read: (text: string) => string, text: string): string {
  try {
    return read(text);
  } catch (error) {
    return `threw ${(error as Error).name}`;
  }
}

/** What an operation's time was made of this text before: a Date, written out by toISOString. */
const throughDate = (text: string) => outcome((t) => (parseTimestamptz(t) as Date).toISOString(), text);
const isoOrError = (text: string) => outcome(timestamptzToIso, text);

describe('timestamptz as ISO text', () => {
  it('writes what toISOString wrote of the parsed Date, for every fraction length and the edges of the calendar', () => {
    for (const text of UTC_TEXTS) assert.equal(timestamptzToIso(text), throughDate(text), text);
    assert.equal(timestamptzToIso('2026-12-04 19:45:01.1234+00'), '2026-12-04T19:45:01.123Z');
    assert.equal(timestamptzToIso('0048-02-29 12:00:00.25+00'), '0048-02-29T12:00:00.250Z');
  });

  it('goes through a Date for every other shape, so a day the calendar does not have moves as it did', () => {
    const impossibleDays = [
      '2026-02-29 12:00:00+00',
      '2026-02-30 12:00:00+00',
      '2026-04-31 00:00:00+00',
      '1900-02-29 00:00:00+00',
      '2026-13-01 00:00:00+00',
      '2026-12-04 24:00:00+00',
      '2026-12-04 23:60:00+00',
      '2026-12-04 23:59:60+00',
    ];
    for (const text of [...impossibleDays, ...OTHER_SHAPES]) assert.equal(isoOrError(text), throughDate(text), text);
    assert.equal(timestamptzToIso('2026-02-30 12:00:00+00'), '2026-03-02T12:00:00.000Z');
  });

  it('agrees with the Date on 20,000 random instants between years 1 and 9999', () => {
    for (const text of randomInstants(20261205, 20_000)) assert.equal(timestamptzToIso(text), throughDate(text), text);
  });
});
