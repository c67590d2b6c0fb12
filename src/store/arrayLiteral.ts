/**
 * An element array_in reads differently unquoted: empty, the word NULL in any case, or holding
 * white space (trimmed), a brace, a quote, a comma or a backslash.
 */
const NEEDS_QUOTES = /^$|^null$|[\s{}",\\]/i;

/**
 * A flat array of strings, numbers, booleans and nulls as PostgreSQL's array literal, quoting only
 * the elements that need it. The driver quotes and escapes every element with two regular
 * expressions and a few strings each: a finish of 100 operations sends 19 such arrays, and their
 * serialization made a seventh of a worker's allocated bytes. Null for any other array (nested,
 * binary, dates, objects), which the driver then serializes itself.
 */
export function arrayLiteral(values: readonly unknown[]): string | null {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i += 1) {
    const value = values[i];
    if (value === null || value === undefined) {
      parts[i] = 'NULL';
    } else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
      parts[i] = String(value);
    } else if (typeof value === 'string') {
      parts[i] = NEEDS_QUOTES.test(value) ? `"${value.replace(/[\\"]/g, '\\$&')}"` : value;
    } else {
      return null;
    }
  }
  return `{${parts.join(',')}}`;
}

/** Query parameters with every flat array of primitives already written as an array literal. */
export function withArrayLiterals(params: readonly unknown[] | undefined): unknown[] | undefined {
  if (!params) return undefined;
  let out: unknown[] | undefined;
  for (let i = 0; i < params.length; i += 1) {
    const param = params[i];
    if (!Array.isArray(param)) continue;
    const literal = arrayLiteral(param);
    if (literal === null) continue;
    out ??= [...params];
    out[i] = literal;
  }
  return out ?? (params as unknown[]);
}
