/**
 * `at`, or `earliest` if `at` reads before it: the time of an event that must not precede one a
 * clock of another process stamped (the start of its attempt, the end that handed its key over).
 * Both are ISO-8601 UTC instants as `toISOString` writes them, which sort as text as they fall.
 */
export function notBefore(at: string, earliest: string): string {
  return at < earliest ? earliest : at;
}
