import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { redactionFor, SECRET_PATHS } from '../src/lib/logRedaction.js';

/** One line written through a logger redacting `paths`, parsed. */
function lineOf(paths: readonly string[], fields: Record<string, unknown>, bindings: Record<string, unknown> = {}): Record<string, unknown> {
  let written = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      written += chunk.toString();
      done();
    },
  });
  pino({ redact: [...paths] }, stream).child(bindings).info(fields, 'line');
  return JSON.parse(written) as Record<string, unknown>;
}

describe('log redaction', () => {
  it('hides an authorization header at the top of a line and in every object a line carries', () => {
    const secret = 'Bearer sk_live_0123456789';
    const carriers = ['req', 'request', 'res', 'response', 'err', 'error', 'payload', 'config', 'options'];
    const fields: Record<string, unknown> = { authorization: secret, headers: { authorization: secret, accept: 'text/plain' } };
    for (const carrier of carriers) fields[carrier] = { authorization: secret, headers: { authorization: secret, accept: 'text/plain' } };
    const line = lineOf(SECRET_PATHS, fields);
    assert.ok(!JSON.stringify(line).includes('sk_live'), JSON.stringify(line));
    assert.equal(line.authorization, '[Redacted]');
    for (const carrier of carriers) {
      const carried = line[carrier] as { authorization: string; headers: { authorization: string; accept: string } };
      assert.equal(carried.headers.authorization, '[Redacted]', carrier);
      assert.equal(carried.headers.accept, 'text/plain', `${carrier}: other headers stay`);
    }
  });

  it('hides an error\'s authorization header after the error serializer ran', () => {
    const error = Object.assign(new Error('upstream said no'), { headers: { authorization: 'Basic c2VjcmV0' } });
    const line = lineOf(SECRET_PATHS, { err: error });
    assert.equal((line.err as { headers: { authorization: string } }).headers.authorization, '[Redacted]');
    assert.equal((line.err as { message: string }).message, 'upstream said no');
  });

  it('hides the sensitive payload fields of a type, nested ones included, and leaves the rest and the bindings', () => {
    const line = lineOf(redactionFor(['card.number', 'cvc']), { payload: { card: { number: '4242', expiry: '12/30' }, cvc: '123', amount: 5 } }, { operation_id: 'op_1', external_id: 'e\u0000\ud800' });
    assert.deepEqual(line.payload, { card: { number: '[Redacted]', expiry: '12/30' }, cvc: '[Redacted]', amount: 5 });
    assert.equal(line.operation_id, 'op_1');
    assert.equal(line.external_id, 'e\u0000\ud800');
  });
});
