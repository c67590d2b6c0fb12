import { OpsdError } from './errors.js';
import { MAX_JSON_DEPTH } from './storableJson.js';

/** A value in a JSON text that opsd refuses, and where it sits (keys and array indexes). */
export interface JsonTextProblem {
  path: (string | number)[];
  error: OpsdError;
}

/**
 * Checks a JSON request body, as text, for what JSON.parse would accept but opsd cannot keep
 * faithfully, and refuses it with a 400 and a code instead of storing something else:
 * - a number that does not survive as a double: an integer written out beyond ±(2^53 − 1) (two
 *   payloads that differ only there would hash alike and one would pass for a replay of the
 *   other), a value that overflows to Infinity (`1e400`) or a non-zero one that underflows to 0,
 *   a decimal with more than 17 significant digits. Send such numbers as strings;
 * - a string (or key) with NUL or a lone surrogate, which PostgreSQL cannot store;
 * - nesting deeper than {@link MAX_JSON_DEPTH}.
 * Throws the first problem found.
 */
export function checkJsonText(text: string): void {
  const [first] = findJsonTextProblems(text);
  if (first) throw first.error;
}

type Container = { kind: 'object'; key: string | null; expectingKey: boolean } | { kind: 'array'; index: number };

/**
 * Every problem {@link checkJsonText} would refuse, with its path, so that a batch can refuse the
 * items that hold one and accept the rest. One pass over a text that must already parse as JSON;
 * nesting past the limit is reported once where it crosses the limit.
 */
export function findJsonTextProblems(text: string): JsonTextProblem[] {
  if (!mayHoldProblems(text)) return [];
  const problems: JsonTextProblem[] = [];
  const stack: Container[] = [];
  const path = () => stack.map((c) => (c.kind === 'array' ? c.index : (c.key ?? '')));
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    const top = stack[stack.length - 1];
    if (c === 0x22 /* " */) {
      const end = findStringEnd(text, i);
      const problem = stringProblem(text, i, end);
      const isKey = top?.kind === 'object' && top.expectingKey;
      if (isKey) top.key = problem ? '' : (JSON.parse(text.slice(i, end + 1)) as string);
      if (problem) problems.push({ path: path(), error: problem });
      i = end;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (stack.length === MAX_JSON_DEPTH) {
        problems.push({
          path: path(),
          error: new OpsdError('OPSD_ERR_JSON_TOO_DEEP', `the body nests deeper than ${MAX_JSON_DEPTH} levels`, { max_depth: MAX_JSON_DEPTH }),
        });
      }
      stack.push(c === 0x5b ? { kind: 'array', index: 0 } : { kind: 'object', key: null, expectingKey: true });
    } else if (c === 0x5d || c === 0x7d) {
      stack.pop();
    } else if (c === 0x3a /* : */ && top?.kind === 'object') {
      top.expectingKey = false;
    } else if (c === 0x2c /* , */ && top) {
      if (top.kind === 'array') top.index += 1;
      else top.expectingKey = true;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      NUMBER.lastIndex = i;
      const literal = NUMBER.exec(text)?.[0] ?? text[i] ?? '';
      const problem = numberProblem(literal);
      if (problem) problems.push({ path: path(), error: problem });
      i += literal.length - 1;
    }
  }
  return problems;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * What every problem needs somewhere in the text: NUL or a lone surrogate, a `\u` escape or a raw
 * surrogate; a number past 2^53 or with more than 17 significant digits, a token of 16 digits and
 * dots; an overflow or an underflow, a token with an exponent (or of 16 digits again). A number
 * token follows the start, `:`, `,`, `[` or white space; inside a string the same shapes only cost
 * the full scan.
 */
const SUSPECT = /\\u|[\uD800-\uDFFF]|(?:^|[:,[\s])-?(?:[0-9.]{16}|[0-9][0-9.]*[eE])/;

/**
 * False when the text surely holds nothing {@link findJsonTextProblems} refuses: the common body
 * skips the scan that follows every key and value (measured on a batch of 100 submissions of 300
 * bytes: 520-890 µs for the scan against 120 µs for this).
 */
function mayHoldProblems(text: string): boolean {
  if (SUSPECT.test(text)) return true;
  let depth = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) i = findStringEnd(text, i);
    else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > MAX_JSON_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) depth -= 1;
  }
  return false;
}

function numberProblem(literal: string): OpsdError | null {
  const value = Number(literal);
  const mantissa = literal.split(/[eE]/)[0] as string;
  const significant = mantissa.replace(/[-.]/g, '').replace(/^0+/, '').replace(/0+$/, '').length;
  const plainInteger = !/[.eE]/.test(literal);
  const unsafe =
    !Number.isFinite(value) ||
    (plainInteger && !Number.isSafeInteger(value)) ||
    (value === 0 && /[1-9]/.test(mantissa)) ||
    // A double tells apart at most 17 significant digits; more, and two numbers could be stored as one.
    (!plainInteger && significant > 17);
  if (!unsafe) return null;
  return new OpsdError('OPSD_ERR_UNSAFE_NUMBER', `the number ${literal.slice(0, 40)} cannot be kept exactly; send it as a string`, {
    number: literal.slice(0, 40),
    max_safe_integer: Number.MAX_SAFE_INTEGER,
  });
}

/** Index of the closing quote of the string that opens at `start`: the next quote not escaped by an odd run of backslashes. */
function findStringEnd(text: string, start: number): number {
  for (let quote = text.indexOf('"', start + 1); quote !== -1; quote = text.indexOf('"', quote + 1)) {
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes += 1;
    if (backslashes % 2 === 0) return quote;
  }
  return text.length;
}

/** NUL or a lone surrogate between `start` and `end` (the quotes), raw or escaped. */
function stringProblem(text: string, start: number, end: number): OpsdError | null {
  for (let i = start + 1; i < end; i += 1) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      if (!(c <= 0xdbff && i + 1 < end && isLow(text.charCodeAt(i + 1)))) return unstorable('a lone surrogate');
      i += 1;
    } else if (c === 0x5c /* \ */) {
      if (text[i + 1] !== 'u') {
        i += 1;
        continue;
      }
      const unit = Number.parseInt(text.slice(i + 2, i + 6), 16);
      if (unit === 0) return unstorable('a NUL character');
      if (isLow(unit)) return unstorable('a lone surrogate');
      if (unit >= 0xd800 && unit <= 0xdbff) {
        const next = text.slice(i + 6, i + 8) === '\\u' ? Number.parseInt(text.slice(i + 8, i + 12), 16) : Number.NaN;
        if (!isLow(next)) return unstorable('a lone surrogate');
        i += 11;
      } else {
        i += 5;
      }
    }
  }
  return null;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

function unstorable(what: string): OpsdError {
  return new OpsdError('OPSD_ERR_UNSTORABLE_TEXT', `a string in the body holds ${what}, which cannot be stored`);
}
