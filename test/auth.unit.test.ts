import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearerToken, generateApiKey, parseApiKey, secretDigest, secretMatches } from '../src/auth/apiKey.js';
import { FailureWindow } from '../src/auth/failureWindow.js';
import { authModeOf, parseScopes, requiredScope } from '../src/auth/scopes.js';

describe('API key rules', () => {
  it('a generated key parses back to its id and secret, and only its own secret matches its digest', () => {
    const key = generateApiKey();
    assert.deepEqual(parseApiKey(key.token), { id: key.id, secret: key.secret });
    assert.ok(secretMatches(key.secret, secretDigest(key.secret)));
    assert.ok(!secretMatches(generateApiKey().secret, secretDigest(key.secret)));
    assert.ok(!secretMatches(key.secret, Buffer.alloc(3)), 'a digest of another length is simply unequal');
  });

  it('anything not shaped like a key is refused before any lookup: NUL, surrogates, huge, truncated, padded', () => {
    const { token } = generateApiKey();
    for (const bad of ['', 'opsd_', token.slice(0, -1), `${token}x`, `${token}\u0000`, `opsd_${'0'.repeat(16)}_\ud800${'A'.repeat(42)}`, 'x'.repeat(100_000), token.replace('opsd_', 'OPSD_')]) {
      assert.equal(parseApiKey(bad), null, JSON.stringify(bad.slice(0, 40)));
    }
  });

  it('reads a Bearer token, case-insensitively, and nothing else', () => {
    assert.equal(bearerToken('Bearer abc'), 'abc');
    assert.equal(bearerToken('bearer   abc '), 'abc');
    assert.equal(bearerToken(['Bearer one', 'Bearer two']), 'one');
    for (const bad of [undefined, '', 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b', 'abc']) assert.equal(bearerToken(bad), null, String(bad));
  });

  it('scopes parse from a list and refuse unknown words', () => {
    assert.deepEqual(parseScopes('submit, read,submit'), ['submit', 'read']);
    assert.throws(() => parseScopes('submit,root'), /scopes must be/);
    assert.throws(() => parseScopes(' , '), /scopes must be/);
  });

  it('each route needs the scope of the README table; probes, metrics (by default) and webhooks need none', () => {
    const open = { metricsOpen: true };
    assert.equal(requiredScope('GET', '/health', open), null);
    assert.equal(requiredScope('GET', '/health/ready', open), null);
    assert.equal(requiredScope('GET', '/metrics', open), null);
    assert.equal(requiredScope('GET', '/metrics', { metricsOpen: false }), 'read');
    assert.equal(requiredScope('POST', '/v1/webhooks/github', open), null);
    assert.equal(requiredScope('POST', '/v1/operations', open), 'submit');
    assert.equal(requiredScope('POST', '/v1/operations/batch', open), 'submit');
    assert.equal(requiredScope('GET', '/v1/operations/abc/events', open), 'read');
    assert.equal(requiredScope('POST', '/v1/operations/abc/cancel', open), 'admin');
    assert.equal(requiredScope('GET', '/v1/admin/stats', open), 'admin');
    assert.equal(requiredScope('GET', '/v1/subscriptions', open), 'admin');
    assert.equal(requiredScope('PUT', '/v1/operations', open), 'admin', 'an unknown write needs the most');
    assert.equal(requiredScope('GET', '/healthz', open), 'read', 'only /health and what is under it is open');
  });

  it('keys are required by default on the processes of a deployment, and only once one exists on opsd start', () => {
    assert.equal(authModeOf(undefined, 'api'), 'required');
    assert.equal(authModeOf(undefined, 'intake'), 'required');
    assert.equal(authModeOf(undefined, 'worker'), 'required');
    assert.equal(authModeOf(undefined, 'start'), 'auto');
    assert.equal(authModeOf('off', 'api'), 'off');
  });
});

describe('bad keys per address', () => {
  it('refuses an address past its failures until the window ends, and forgets the oldest address past its bound', () => {
    const window = new FailureWindow({ max: 3, windowMs: 60_000, maxAddresses: 2 });
    for (let i = 0; i < 3; i += 1) {
      assert.equal(window.blockedForMs('a', 1000), 0);
      window.fail('a', 1000);
    }
    assert.equal(window.blockedForMs('a', 1000), 60_000);
    assert.equal(window.blockedForMs('a', 60_999), 1);
    assert.equal(window.blockedForMs('a', 61_000), 0);
    window.fail('b', 1);
    window.fail('c', 1);
    window.fail('d', 1);
    assert.equal(window.blockedForMs('b', 2), 0, 'b was forgotten');
  });
});
