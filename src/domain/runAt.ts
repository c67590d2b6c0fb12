import { OpsdError } from './errors.js';

/** RFC 3339 date-time, offset required (`Z` or `±hh:mm`), fraction optional. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Earliest and latest `run_at` accepted: from the Unix epoch to the end of year 9999, UTC. */
export const RUN_AT_RANGE = { min: Date.UTC(1970, 0, 1), max: Date.UTC(10000, 0, 1) - 1 } as const;

/**
 * A submitted `run_at` as an ISO-8601 UTC instant with milliseconds. Only RFC 3339 date-times with
 * an offset are accepted, each field within its calendar range (no 30 February, no hour 24), and
 * the instant within {@link RUN_AT_RANGE}: a lenient parser would guess a time zone or roll an
 * impossible date over into another one.
 */
export function parseRunAt(text: string): string {
  const match = RFC3339.exec(text);
  if (!match) throw invalid('must be an RFC 3339 date-time with an offset, e.g. 2030-01-01T09:00:00Z or 2030-01-01T10:00:00+01:00');
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const fractionMs = match[7] ? Number(match[7].padEnd(3, '0').slice(0, 3)) : 0;
  const offsetMinutes = match[8] ? 0 : (match[9] === '-' ? -1 : 1) * (Number(match[10]) * 60 + Number(match[11]));
  const lastDay = month === 2 ? (isLeap(year) ? 29 : 28) : [31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  if (month < 1 || month > 12 || day < 1 || day > lastDay || hour > 23 || minute > 59 || second > 59) {
    throw invalid('is not a real date and time');
  }
  if (Number(match[10] ?? 0) > 23 || Number(match[11] ?? 0) > 59) throw invalid('has an offset out of range');
  const local = new Date(0);
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, fractionMs);
  const ms = local.getTime() - offsetMinutes * 60_000;
  if (!(ms >= RUN_AT_RANGE.min && ms <= RUN_AT_RANGE.max)) throw invalid('must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z');
  return new Date(ms).toISOString();
}

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function invalid(why: string): OpsdError {
  return new OpsdError('OPSD_ERR_VALIDATION', `run_at ${why}`, [{ path: '/run_at', message: why }]);
}
