import pg from 'pg';

const TIMESTAMPTZ_OID = 1184;
const parseAnyTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID, 'text') as (text: string) => Date | string | number;

/** `YYYY-MM-DD HH:MM:SS`, then an optional fraction, then a UTC offset of `+00`. */
const FIXED_PART = 19;

/** The value of `length` decimal digits at `start`, or -1 when one is not a digit. */
function digits(text: string, start: number, length: number): number {
  let value = 0;
  for (let i = start; i < start + length; i += 1) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** Year, month, day, hour, minute, second and millisecond of the last text {@link readUtcShape} accepted. */
const FIELDS = new Int32Array(7);

/**
 * Whether `text` is what a UTC session with the ISO date style writes for a year from 1 to 9999
 * (`2026-12-04 19:45:01.123456+00`, 0 to 6 fraction digits); if so, its fields are in FIELDS, the
 * milliseconds cut from the fraction (a Date holds no finer). One array for every call: the
 * readers run for each time of each row, and an object per call would be garbage at once.
 */
function readUtcShape(text: string): boolean {
  const length = text.length;
  if (length < FIXED_PART + 3 || length > FIXED_PART + 10 || !text.endsWith('+00')) return false;
  if (text[4] !== '-' || text[7] !== '-' || text[10] !== ' ' || text[13] !== ':' || text[16] !== ':') return false;
  const fractionDigits = length - 3 - FIXED_PART - 1;
  if (length > FIXED_PART + 3 && (text[FIXED_PART] !== '.' || fractionDigits < 1 || fractionDigits > 6 || digits(text, FIXED_PART + 1, fractionDigits) < 0)) return false;
  FIELDS[0] = digits(text, 0, 4);
  FIELDS[1] = digits(text, 5, 2);
  FIELDS[2] = digits(text, 8, 2);
  FIELDS[3] = digits(text, 11, 2);
  FIELDS[4] = digits(text, 14, 2);
  FIELDS[5] = digits(text, 17, 2);
  FIELDS[6] = fractionDigits > 0 ? digits(text, FIXED_PART + 1, Math.min(3, fractionDigits)) * 10 ** Math.max(0, 3 - fractionDigits) : 0;
  return FIELDS[0]! >= 1 && FIELDS[1]! >= 1 && FIELDS[2]! >= 1 && FIELDS[3]! >= 0 && FIELDS[4]! >= 0 && FIELDS[5]! >= 0;
}

/**
 * A timestamptz as PostgreSQL writes it to a session in UTC with the ISO date style
 * (`2026-12-04 19:45:01.123456+00`), read in a fifth of the time of the driver's general parser,
 * which takes every other shape (other offsets, years past 9999, BC, infinity). A worker reads
 * about ten timestamps per operation, so the general parser cost it a few percent of its drain.
 */
export function parseTimestamptz(text: string): Date | string | number {
  if (!readUtcShape(text)) return parseAnyTimestamptz(text);
  const year = FIELDS[0]!;
  const date = new Date(Date.UTC(year, FIELDS[1]! - 1, FIELDS[2]!, FIELDS[3]!, FIELDS[4]!, FIELDS[5]!, FIELDS[6]!));
  // Date.UTC reads years 0-99 as 1900-1999.
  if (year < 100) date.setUTCFullYear(year);
  return date;
}

/**
 * The same timestamptz as the ISO-8601 text `Date.prototype.toISOString` writes
 * (`2026-12-04T19:45:01.123Z`), built from PostgreSQL's text without a Date in between: what an
 * operation keeps its times as. The fraction is cut to milliseconds as {@link parseTimestamptz}
 * cuts it. Every other shape, and every day Date.UTC would carry into the next month, goes through
 * a Date as before (an invalid one throws as `toISOString` does). Through a Date, 477-528 ns a
 * time; this way 64-76.
 */
export function timestamptzToIso(text: string): string {
  if (readUtcShape(text) && FIELDS[1]! <= 12 && FIELDS[2]! <= daysInMonth(FIELDS[0]!, FIELDS[1]!) && FIELDS[3]! <= 23 && FIELDS[4]! <= 59 && FIELDS[5]! <= 59) {
    return `${text.slice(0, 10)}T${text.slice(11, FIXED_PART)}.${String(FIELDS[6]!).padStart(3, '0')}Z`;
  }
  return (parseTimestamptz(text) as Date).toISOString();
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days in `month` (1-12) of `year` in the proleptic Gregorian calendar, as PostgreSQL and Date count them. */
function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number);
}

/** Type parsers for a pg client: `readTimestamptz` for timestamptz text, the driver's own for every other type. */
function typesWith(readTimestamptz: (text: string) => unknown) {
  return {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === TIMESTAMPTZ_OID && format !== 'binary') return readTimestamptz;
      return pg.types.getTypeParser(oid, format as 'text');
    },
  };
}

/** timestamptz as Dates, through the fast reader. */
export const OPSD_PG_TYPES = typesWith(parseTimestamptz);

/** timestamptz as ISO-8601 text ({@link timestamptzToIso}) instead of Dates. */
export const OPSD_PG_TYPES_ISO_TIMES = typesWith(timestamptzToIso);
