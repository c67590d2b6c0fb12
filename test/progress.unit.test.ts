import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_PROGRESS_LENGTH, toProgressValue } from '../src/domain/progress.js';

describe('progress values', () => {
  it('keeps a report of exactly the longest JSON text, and refuses one character more with a RangeError', () => {
    // A string's JSON text is the string and its two quotes.
    const longest = 'x'.repeat(MAX_PROGRESS_LENGTH - 2);
    assert.equal(toProgressValue(longest), longest);
    assert.throws(() => toProgressValue(`${longest}x`), (error: unknown) => error instanceof RangeError && /4097 characters/.test(error.message));
  });

  it('counts the JSON text as stored: escapes count, and what is made storable counts as made', () => {
    // Each NUL becomes U+FFFD (one character of JSON); each quote is written as \" (two).
    assert.equal(toProgressValue('\u0000'.repeat(MAX_PROGRESS_LENGTH - 2)), '\uFFFD'.repeat(MAX_PROGRESS_LENGTH - 2));
    assert.throws(() => toProgressValue('"'.repeat(MAX_PROGRESS_LENGTH / 2)), RangeError);
  });

  it('makes numbers, dates and cycles storable as results are', () => {
    const cycle: Record<string, unknown> = { n: Number.MAX_SAFE_INTEGER + 2, inf: Infinity, at: new Date(Date.UTC(2030, 0, 1)) };
    cycle.self = cycle;
    assert.deepEqual(toProgressValue(cycle), { n: 9007199254740992, inf: null, at: '2030-01-01T00:00:00.000Z', self: '[Circular]' });
    assert.equal(toProgressValue(undefined), null);
  });
});
