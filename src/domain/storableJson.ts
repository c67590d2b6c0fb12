import type { Json } from './operation.js';

/** Deepest nesting kept in a stored value; PostgreSQL's jsonb refuses far deeper ones with an error. */
export const MAX_JSON_DEPTH = 64;

/** What replaces a character PostgreSQL cannot store in text or jsonb (NUL, a lone surrogate). */
const REPLACEMENT = '\uFFFD';

/**
 * Turns whatever a handler produced (a result, error details, a message) into JSON that
 * PostgreSQL will store, without ever throwing:
 * - strings: NUL and lone surrogates become U+FFFD;
 * - BigInt becomes its decimal string; non-finite numbers become null (as JSON.stringify does);
 * - functions, symbols and undefined are dropped from objects and become null in arrays;
 * - `toJSON` is honoured (dates become ISO strings); a repeated reference becomes "[Circular]";
 * - nesting past {@link MAX_JSON_DEPTH} becomes "[Truncated]", a throwing getter "[Unreadable]".
 * Pure: a value is made storable where it enters, so one bad item never fails a batch it shares.
 */
export function toStorableJson(value: unknown): Json {
  const converted = convert(value, 0, new Set());
  return converted === OMIT ? null : converted;
}

/** The text with NUL and lone surrogates replaced: what PostgreSQL can store. */
export function toStorableText(text: string): string {
  const wellFormed = text.isWellFormed() ? text : text.toWellFormed();
  return wellFormed.includes('\u0000') ? wellFormed.replaceAll('\u0000', REPLACEMENT) : wellFormed;
}

/** A message for anything thrown, never throwing itself (`Object.create(null)` has no toString). */
export function describeThrown(thrown: unknown): string {
  try {
    if (thrown instanceof Error) return toStorableText(String(thrown.message));
    if (typeof thrown === 'string') return toStorableText(thrown);
    if (thrown === null || thrown === undefined) return String(thrown);
    if (typeof thrown === 'object') {
      const json = JSON.stringify(toStorableJson(thrown));
      return toStorableText(json.length > 1000 ? `${json.slice(0, 1000)}…` : json);
    }
    return toStorableText(String(thrown));
  } catch {
    return 'a value that cannot be described was thrown';
  }
}

const OMIT = Symbol('omit');

function convert(value: unknown, depth: number, ancestors: Set<object>): Json | typeof OMIT {
  switch (typeof value) {
    case 'string':
      return toStorableText(value);
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return OMIT;
    case 'object':
      break;
    default:
      return OMIT;
  }
  if (value === null) return null;
  if (ancestors.has(value)) return '[Circular]';
  if (depth >= MAX_JSON_DEPTH) return '[Truncated]';
  try {
    const withToJson = value as { toJSON?: unknown };
    if (typeof withToJson.toJSON === 'function') {
      ancestors.add(value);
      try {
        return convert((withToJson.toJSON as () => unknown).call(value), depth, ancestors);
      } finally {
        ancestors.delete(value);
      }
    }
    ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        return value.map((item) => {
          const converted = convert(item, depth + 1, ancestors);
          return converted === OMIT ? null : converted;
        });
      }
      const out: Record<string, Json> = {};
      for (const key of Object.keys(value)) {
        const converted = convert((value as Record<string, unknown>)[key], depth + 1, ancestors);
        if (converted !== OMIT) out[toStorableText(key)] = converted;
      }
      return out;
    } finally {
      ancestors.delete(value);
    }
  } catch {
    return '[Unreadable]';
  }
}
