import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeDispatchNotice, encodeDispatchNotices } from '../src/dispatch/notifyDispatcher.js';

describe('dispatch notices (intake → leader)', () => {
  const target = (i: number, type = 'demo.echo') => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    type,
    version: 1 + (i % 3),
    runAt: new Date(Date.UTC(2030, 0, 1, 0, 0, i % 60)).toISOString(),
  });

  it('round-trips targets, split into notices under the 8,000-byte limit of NOTIFY', () => {
    const targets = Array.from({ length: 500 }, (_, i) => target(i, i % 2 ? 'demo.echo' : 'paiement.vérifié'));
    const notices = encodeDispatchNotices(targets);
    assert.ok(notices.length > 1, 'split into several notices');
    for (const notice of notices) assert.ok(Buffer.byteLength(notice) < 8000, `notice of ${Buffer.byteLength(notice)} bytes`);
    assert.deepEqual(notices.flatMap(decodeDispatchNotice), targets);
  });

  it('encodes nothing for no targets', () => {
    assert.deepEqual(encodeDispatchNotices([]), []);
  });

  it('skips what is not a well-formed notice', () => {
    assert.deepEqual(decodeDispatchNotice('not json'), []);
    assert.deepEqual(decodeDispatchNotice('{"id":"x"}'), []);
    const good = target(1);
    const mixed = JSON.stringify([[good.id, good.type, good.version, good.runAt], ['x', 'demo.echo', '1', 'now'], 42]);
    assert.deepEqual(decodeDispatchNotice(mixed), [good]);
  });
});
