import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OpsdError } from '../src/domain/errors.js';
import { parseRunAt } from '../src/domain/runAt.js';
import { checkJsonText } from '../src/domain/safeJsonText.js';
import { describeThrown, MAX_JSON_DEPTH, toStorableJson, toStorableText } from '../src/domain/storableJson.js';
import { retryDelayMs, MAX_RETRY_DELAY_MS } from '../src/worker/runAttempt.js';
import { OutboundPolicy } from '../src/protect/outboundAddress.js';

const refusedWith = (code: string) => (error: unknown) => error instanceof OpsdError && error.code === code;

describe('request bodies: what opsd cannot keep faithfully is refused', () => {
  it('accepts ordinary JSON, safe integers at the edge, fractions, unicode and escaped pairs', () => {
    for (const text of [
      '{"a":1,"b":[true,null,"x"],"c":{"d":-0.5e-3}}',
      `{"max":${Number.MAX_SAFE_INTEGER},"min":${Number.MIN_SAFE_INTEGER}}`,
      '"emoji 😀 and \\ud83d\\ude00 and \\u00e9 and \\" and \\\\u0000 as text"',
      '[1.7976931348623157e308, 1e20, 0.1, 123456789.12345678]',
      '0',
      `${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`,
    ]) {
      assert.doesNotThrow(() => checkJsonText(text), text);
    }
  });

  it('refuses integers past 2^53, overflow to Infinity and underflow to zero', () => {
    for (const text of [
      `{"n":${Number.MAX_SAFE_INTEGER + 2}}`,
      '{"n":123456789012345678901234567890}',
      '[-9007199254740993]',
      '{"n":1e400}',
      '{"n":-1e400}',
      '{"n":1e-400}',
      '{"n":1.00000000000000000001}',
    ]) {
      assert.throws(() => checkJsonText(text), refusedWith('OPSD_ERR_UNSAFE_NUMBER'), text);
    }
  });

  it('refuses NUL and lone surrogates in strings and in keys, escaped or raw', () => {
    for (const text of [
      '{"a":"x\\u0000y"}',
      '{"\\u0000":1}',
      '{"a":"\\ud800"}',
      '{"a":"\\udc00"}',
      '{"a":"\\ud800x"}',
      '{"a":"\\ud800\\u0041"}',
      `{"a":"${'\uD800'}"}`,
      `{"a":"x${'\uDFFF'}"}`,
    ]) {
      assert.throws(() => checkJsonText(text), refusedWith('OPSD_ERR_UNSTORABLE_TEXT'), JSON.stringify(text));
    }
  });

  it('refuses nesting past the limit, however deep', () => {
    assert.throws(() => checkJsonText(`${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`), refusedWith('OPSD_ERR_JSON_TOO_DEEP'));
    assert.throws(() => checkJsonText(`{"a":${'['.repeat(20_000)}${']'.repeat(20_000)}}`), refusedWith('OPSD_ERR_JSON_TOO_DEEP'));
  });

  it('finds each problem wherever it stands: after white space, first in the text, behind strings that hold brackets and escaped quotes', () => {
    const deep = `${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`;
    for (const [text, code] of [
      ['{"n": 1e400}', 'OPSD_ERR_UNSAFE_NUMBER'],
      ['{"n":\n\t-1e-400}', 'OPSD_ERR_UNSAFE_NUMBER'],
      ['[0, 9007199254740993]', 'OPSD_ERR_UNSAFE_NUMBER'],
      ['9007199254740993', 'OPSD_ERR_UNSAFE_NUMBER'],
      ['-1.5E+999', 'OPSD_ERR_UNSAFE_NUMBER'],
      ['{"id":"4f9c2e1b","n":0.12345678901234567891}', 'OPSD_ERR_UNSAFE_NUMBER'],
      [`{"a":"]]]]]]]]]]]]]]]]}}}}}}}}}}}}}}}}","b":${deep}}`, 'OPSD_ERR_JSON_TOO_DEEP'],
      [`{"a":"\\"]]]]]]]]]]]]]]]]","b":${deep}}`, 'OPSD_ERR_JSON_TOO_DEEP'],
      [`{"a":"x\\\\","b":${deep}}`, 'OPSD_ERR_JSON_TOO_DEEP'],
      ['{"a":"ok","b":"\\u0000"}', 'OPSD_ERR_UNSTORABLE_TEXT'],
    ] as const) {
      assert.doesNotThrow(() => JSON.parse(text), text);
      assert.throws(() => checkJsonText(text), refusedWith(code), text);
    }
  });

  it('lets through strings shaped like what it refuses: hex ids with e, long digit runs, brackets', () => {
    for (const text of [
      '{"id":"4f9c2e1b7a","n":"123456789012345678901234567890","s":"]]]}}} [[[{{{ 1e400"}',
      `{"a":"${'['.repeat(200)}"}`,
    ]) {
      assert.doesNotThrow(() => checkJsonText(text), text);
    }
  });
});

describe('run_at: RFC 3339 with an offset, a real date, within range', () => {
  it('accepts offsets and fractions, and normalizes to UTC milliseconds', () => {
    assert.equal(parseRunAt('2030-01-01T09:00:00Z'), '2030-01-01T09:00:00.000Z');
    assert.equal(parseRunAt('2030-01-01T10:00:00+01:00'), '2030-01-01T09:00:00.000Z');
    assert.equal(parseRunAt('2030-01-01t09:00:00.123456z'), '2030-01-01T09:00:00.123Z');
    assert.equal(parseRunAt('2028-02-29T00:00:00-05:30'), '2028-02-29T05:30:00.000Z');
    assert.equal(parseRunAt('9999-12-31T23:59:59.999Z'), '9999-12-31T23:59:59.999Z');
    assert.equal(parseRunAt('1970-01-01T00:00:00Z'), '1970-01-01T00:00:00.000Z');
  });

  it('refuses dates without a zone, impossible dates and instants out of range', () => {
    for (const text of [
      '2030-01-01',
      '2030-01-01T00:00:00',
      '2030-02-30T00:00:00Z',
      '2029-02-29T00:00:00Z',
      '2030-13-01T00:00:00Z',
      '2030-01-01T24:00:00Z',
      '2030-01-01T00:60:00Z',
      '2030-01-01T00:00:60Z',
      '2030-01-01T00:00:00+24:00',
      '0000-01-01T00:00:00Z',
      '1969-12-31T23:59:59Z',
      '+275760-09-13T00:00:00Z',
      '+010000-01-01T00:00:00Z',
      '9999-12-31T23:59:59-01:00',
      'tomorrow',
      '',
    ]) {
      assert.throws(() => parseRunAt(text), refusedWith('OPSD_ERR_VALIDATION'), text);
    }
  });
});

describe('values a handler produces are made storable, never thrown on', () => {
  it('replaces NUL and lone surrogates, keeps valid pairs', () => {
    assert.equal(toStorableText('a\u0000b\uD800c\uDC00 😀'), 'a\uFFFDb\uFFFDc\uFFFD 😀');
  });

  it('turns BigInt, functions, cycles, deep nesting and throwing getters into JSON', () => {
    const cycle: Record<string, unknown> = {};
    cycle.me = cycle;
    const getter = Object.defineProperty({}, 'boom', {
      enumerable: true,
      get() {
        throw new Error('no');
      },
    });
    let deep: unknown = 'bottom';
    for (let i = 0; i < MAX_JSON_DEPTH + 5; i += 1) deep = [deep];
    const stored = toStorableJson({ big: 1n, fn: () => 1, sym: Symbol('s'), nan: Number.NaN, cycle, getter, deep, arr: [undefined] });
    assert.deepEqual(Object.keys(stored as object).sort(), ['arr', 'big', 'cycle', 'deep', 'getter', 'nan']);
    const value = stored as Record<string, unknown>;
    assert.equal(value.big, '1');
    assert.equal(value.nan, null);
    assert.deepEqual(value.cycle, { me: '[Circular]' });
    assert.equal(value.getter, '[Unreadable]');
    assert.deepEqual(value.arr, [null]);
    assert.match(JSON.stringify(value.deep), /\[Truncated\]/);
    assert.equal(toStorableJson(undefined), null);
  });

  it('describes anything thrown', () => {
    assert.equal(describeThrown(new Error('x\u0000')), 'x\uFFFD');
    assert.equal(describeThrown(Object.create(null)), '{}');
    assert.equal(describeThrown(undefined), 'undefined');
    assert.equal(describeThrown(42n), '42');
  });

  it('clamps a retry delay to a number from 0 to 30 days, else uses the backoff', () => {
    const backoff = () => 1234;
    assert.equal(retryDelayMs(500, backoff), 500);
    assert.equal(retryDelayMs(1e20, backoff), MAX_RETRY_DELAY_MS);
    assert.equal(retryDelayMs(Number.NaN, backoff), 1234);
    assert.equal(retryDelayMs(-5, backoff), 1234);
    assert.equal(retryDelayMs('10', backoff), 1234);
    assert.equal(retryDelayMs(undefined, backoff), 1234);
  });
});

describe('outbound destinations of http.request', () => {
  it('refuses loopback, private, link-local, metadata and reserved addresses, v4 and v6', () => {
    const policy = new OutboundPolicy();
    for (const address of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00:ec2::254', 'fe80::1', '::ffff:127.0.0.1', '224.0.0.1']) {
      assert.ok(policy.refusal(address), address);
    }
    for (const address of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) assert.equal(policy.refusal(address), null, address);
  });

  it('lets through what the allow-list names: addresses, ranges and host names', () => {
    const policy = new OutboundPolicy(['127.0.0.1', '10.1.0.0/16', 'Internal.Example']);
    assert.equal(policy.refusal('127.0.0.1'), null);
    assert.ok(policy.refusal('127.0.0.2'));
    assert.equal(policy.refusal('10.1.200.3'), null);
    assert.ok(policy.refusal('10.2.0.1'));
    assert.ok(policy.allowsHost('internal.example'));
    assert.ok(!policy.allowsHost('other.example'));
  });
});
