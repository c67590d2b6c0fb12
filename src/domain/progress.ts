import type { Json } from './operation.js';
import { toStorableJson } from './storableJson.js';

/**
 * Longest progress a handler may report, in characters of its JSON text: the latest report is
 * written with the operation's row, at most once a second, and read back with every look at it.
 */
export const MAX_PROGRESS_LENGTH = 4096;

/**
 * How far an attempt has got, as its handler last said. Not an event: a report changes no state,
 * only the latest is kept, and a rebuild from the events does not bring it back.
 */
export interface OperationProgress {
  value: Json;
  /** When the handler reported it (ISO-8601). */
  at: string;
  /** The attempt that reported it. */
  attempt: number;
}

/**
 * What a handler's report is kept as: made storable as a result is (see toStorableJson), and
 * refused with a RangeError past {@link MAX_PROGRESS_LENGTH}, so that the handler hears of it.
 */
export function toProgressValue(value: unknown): Json {
  const storable = toStorableJson(value);
  const length = JSON.stringify(storable).length;
  if (length > MAX_PROGRESS_LENGTH) {
    throw new RangeError(`progress is ${length} characters of JSON; at most ${MAX_PROGRESS_LENGTH} are kept`);
  }
  return storable;
}
