import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelayMs } from '../src/domain/backoff.js';
import type { OperationCommand } from '../src/domain/commands.js';
import { decide } from '../src/domain/decide.js';
import { OpsdError } from '../src/domain/errors.js';
import type { OperationEvent } from '../src/domain/events.js';
import { evolve, foldEvents } from '../src/domain/evolve.js';
import { OPERATION_STATUSES, type Json, type OperationState, type OperationStatus } from '../src/domain/operation.js';
import { canonicalJson, payloadHash } from '../src/domain/payloadHash.js';

const T0 = '2030-01-01T00:00:00.000Z';
const T1 = '2030-01-01T00:00:01.000Z';
const LATER = '2030-01-01T01:00:00.000Z';

const received: OperationEvent = {
  type: 'received',
  at: T0,
  operationId: 'op-1',
  externalId: 'ext-1',
  operationType: 'demo.echo',
  payload: { a: 1 },
  payloadHash: 'h',
  orderingKey: 'ext-1',
  maxAttempts: 3,
  runAt: T0,
  priority: 0,
};

/** The shortest history that leaves an operation in `status` (after one attempt where one is needed). */
function historyFor(status: OperationStatus): OperationEvent[] {
  const started: OperationEvent = { type: 'started', at: T0, attempt: 1, fencingToken: 1, leaseOwner: 'w1', leaseExpiresAt: T1 };
  switch (status) {
    case 'PENDING':
      return [received];
    case 'PROCESSING':
      return [received, started];
    case 'COMPLETED':
      return [received, started, { type: 'completed', at: T0, result: 1 }];
    case 'REJECTED':
      return [received, started, { type: 'rejected', at: T0, reason: { code: 'NO', message: 'no' } }];
    case 'FAILED':
      return [received, started, { type: 'failed', at: T0, error: { code: 'E', message: 'e' } }];
    case 'CANCELLED':
      return [received, { type: 'cancelled', at: T0 }];
  }
}

function given(status: OperationStatus): OperationState {
  const state = foldEvents(historyFor(status));
  assert.ok(state);
  assert.equal(state.status, status);
  return state;
}

const fenced = { fencingToken: 1 };
const commands: Record<Exclude<OperationCommand['kind'], 'accept'>, OperationCommand> = {
  start: { kind: 'start', now: LATER, leaseOwner: 'w2', leaseExpiresAt: LATER },
  complete: { kind: 'complete', now: LATER, ...fenced, result: { ok: true } },
  reject: { kind: 'reject', now: LATER, ...fenced, reason: { code: 'NO', message: 'no' } },
  fail: { kind: 'fail', now: LATER, ...fenced, error: { code: 'E', message: 'e' }, retryAt: LATER },
  release: { kind: 'release', now: LATER, ...fenced },
  defer: { kind: 'defer', now: LATER, ...fenced, reason: { code: 'OPSD_HTTP_THROTTLED', message: 'upstream answered 429' }, retryAt: LATER },
  expire_lease: { kind: 'expire_lease', now: LATER, retryAt: LATER },
  cancel: { kind: 'cancel', now: LATER },
  redrive: { kind: 'redrive', now: LATER },
};

/** The transition table of DESIGN.md: the event a legal move yields, or the error code of an illegal one. */
const table: Record<OperationStatus, Record<keyof typeof commands, string>> = {
  PENDING: { start: 'started', complete: 'OPSD_ERR_LEASE_LOST', reject: 'OPSD_ERR_LEASE_LOST', fail: 'OPSD_ERR_LEASE_LOST', release: 'OPSD_ERR_LEASE_LOST', defer: 'OPSD_ERR_LEASE_LOST', expire_lease: 'OPSD_ERR_INVALID_STATE', cancel: 'cancelled', redrive: 'OPSD_ERR_INVALID_STATE' },
  PROCESSING: { start: 'OPSD_ERR_INVALID_STATE', complete: 'completed', reject: 'rejected', fail: 'attempt_failed', release: 'released', defer: 'deferred', expire_lease: 'lease_expired', cancel: 'OPSD_ERR_INVALID_STATE', redrive: 'OPSD_ERR_INVALID_STATE' },
  COMPLETED: { start: 'OPSD_ERR_INVALID_STATE', complete: 'OPSD_ERR_LEASE_LOST', reject: 'OPSD_ERR_LEASE_LOST', fail: 'OPSD_ERR_LEASE_LOST', release: 'OPSD_ERR_LEASE_LOST', defer: 'OPSD_ERR_LEASE_LOST', expire_lease: 'OPSD_ERR_INVALID_STATE', cancel: 'OPSD_ERR_INVALID_STATE', redrive: 'OPSD_ERR_INVALID_STATE' },
  REJECTED: { start: 'OPSD_ERR_INVALID_STATE', complete: 'OPSD_ERR_LEASE_LOST', reject: 'OPSD_ERR_LEASE_LOST', fail: 'OPSD_ERR_LEASE_LOST', release: 'OPSD_ERR_LEASE_LOST', defer: 'OPSD_ERR_LEASE_LOST', expire_lease: 'OPSD_ERR_INVALID_STATE', cancel: 'OPSD_ERR_INVALID_STATE', redrive: 'OPSD_ERR_INVALID_STATE' },
  FAILED: { start: 'OPSD_ERR_INVALID_STATE', complete: 'OPSD_ERR_LEASE_LOST', reject: 'OPSD_ERR_LEASE_LOST', fail: 'OPSD_ERR_LEASE_LOST', release: 'OPSD_ERR_LEASE_LOST', defer: 'OPSD_ERR_LEASE_LOST', expire_lease: 'OPSD_ERR_INVALID_STATE', cancel: 'OPSD_ERR_INVALID_STATE', redrive: 'redriven' },
  CANCELLED: { start: 'OPSD_ERR_INVALID_STATE', complete: 'OPSD_ERR_LEASE_LOST', reject: 'OPSD_ERR_LEASE_LOST', fail: 'OPSD_ERR_LEASE_LOST', release: 'OPSD_ERR_LEASE_LOST', defer: 'OPSD_ERR_LEASE_LOST', expire_lease: 'OPSD_ERR_INVALID_STATE', cancel: 'OPSD_ERR_INVALID_STATE', redrive: 'OPSD_ERR_INVALID_STATE' },
};

const resultingStatus: Record<string, OperationStatus> = {
  started: 'PROCESSING',
  completed: 'COMPLETED',
  rejected: 'REJECTED',
  attempt_failed: 'PENDING',
  released: 'PENDING',
  deferred: 'PENDING',
  lease_expired: 'PENDING',
  cancelled: 'CANCELLED',
  redriven: 'PENDING',
};

describe('state machine: every status × every command', () => {
  for (const status of OPERATION_STATUSES) {
    for (const [kind, command] of Object.entries(commands)) {
      const expected = table[status][kind as keyof typeof commands];
      it(`${status} + ${kind} → ${expected}`, () => {
        const state = given(status);
        if (expected.startsWith('OPSD_ERR_')) {
          assert.throws(() => decide(command, state), (error: unknown) => error instanceof OpsdError && error.code === expected);
          return;
        }
        const events = decide(command, state);
        assert.deepEqual(events.map((e) => e.type), [expected]);
        const next = events.reduce(evolve, state);
        assert.equal(next.status, resultingStatus[expected]);
        assert.equal(next.version, state.version + 1);
        assert.equal(next.updatedAt, LATER);
      });
    }
  }

  it('accept on nothing → received, and the fold is a fresh PENDING operation', () => {
    const events = decide({ kind: 'accept', now: T0, operationId: 'op-1', externalId: 'ext-1', operationType: 'demo.echo', payload: { a: 1 }, payloadHash: 'h', orderingKey: 'ext-1', maxAttempts: 3, runAt: T0, priority: 0 }, null);
    assert.deepEqual(events, [received]);
    const state = foldEvents(events);
    assert.deepEqual(
      { status: state?.status, attempts: state?.attempts, fencingToken: state?.fencingToken, version: state?.version },
      { status: 'PENDING', attempts: 0, fencingToken: 0, version: 1 },
    );
  });

  it('accept on an existing operation is refused', () => {
    assert.throws(() => decide({ kind: 'accept', now: T0, operationId: 'x', externalId: 'x', operationType: 't', payload: null, payloadHash: 'h', orderingKey: 'x', maxAttempts: 1, runAt: T0, priority: 0 }, given('PENDING')), /already exists/);
  });

  it('any other command on nothing → OPSD_ERR_NOT_FOUND', () => {
    for (const command of Object.values(commands)) {
      assert.throws(() => decide(command, null), (error: unknown) => error instanceof OpsdError && error.code === 'OPSD_ERR_NOT_FOUND');
    }
  });
});

describe('state machine: given / when / then', () => {
  it('start takes a new fencing token, counts the attempt and records the lease', () => {
    const [event] = decide(commands.start, given('PENDING'));
    assert.deepEqual(event, { type: 'started', at: LATER, attempt: 1, fencingToken: 1, leaseOwner: 'w2', leaseExpiresAt: LATER });
  });

  it('start before run_at is refused', () => {
    assert.throws(() => decide({ ...commands.start, now: '2029-12-31T23:59:59.000Z' } as OperationCommand, given('PENDING')), /not due/);
  });

  it('an outcome with a stale fencing token is refused: the lease was taken over', () => {
    const state = given('PROCESSING');
    for (const kind of ['complete', 'reject', 'fail', 'release', 'defer'] as const) {
      const stale = { ...commands[kind], fencingToken: 0 } as OperationCommand;
      assert.throws(() => decide(stale, state), (error: unknown) => error instanceof OpsdError && error.code === 'OPSD_ERR_LEASE_LOST');
    }
  });

  it('fail on the last attempt → failed (FAILED), not another retry', () => {
    let state = given('PROCESSING');
    state = { ...state, attempts: 3, maxAttempts: 3 };
    const events = decide(commands.fail, state);
    assert.deepEqual(events.map((e) => e.type), ['failed']);
    assert.equal(events.reduce(evolve, state).status, 'FAILED');
  });

  it('fail with attempts left → attempt_failed, PENDING again at retryAt', () => {
    const state = given('PROCESSING');
    const next = decide(commands.fail, state).reduce(evolve, state);
    assert.equal(next.status, 'PENDING');
    assert.equal(next.runAt, LATER);
    assert.deepEqual(next.lastError, { code: 'E', message: 'e' });
    assert.equal(next.leaseOwner, null);
  });

  it('a lease still running cannot be expired', () => {
    const state = { ...given('PROCESSING'), leaseExpiresAt: LATER };
    assert.throws(() => decide({ ...commands.expire_lease, now: T1 } as OperationCommand, state), /lease holds/);
  });

  it('an expired lease on the last attempt → failed with OPSD_LEASE_EXPIRED', () => {
    const state = { ...given('PROCESSING'), attempts: 3 };
    const [event] = decide(commands.expire_lease, state);
    assert.equal(event?.type, 'failed');
    assert.equal(event?.type === 'failed' && event.error.code, 'OPSD_LEASE_EXPIRED');
  });

  it('release gives the attempt back', () => {
    const state = given('PROCESSING');
    const next = decide(commands.release, state).reduce(evolve, state);
    assert.equal(next.attempts, 0);
    assert.equal(next.status, 'PENDING');
  });

  it('defer gives the attempt back and makes the operation due when the upstream said', () => {
    const state = given('PROCESSING');
    const next = decide(commands.defer, state).reduce(evolve, state);
    assert.deepEqual(
      { status: next.status, attempts: next.attempts, runAt: next.runAt, lastError: next.lastError?.code, lease: next.leaseOwner },
      { status: 'PENDING', attempts: 0, runAt: LATER, lastError: 'OPSD_HTTP_THROTTLED', lease: null },
    );
  });

  it('an operation received before priorities existed folds to priority 0', () => {
    const { priority: _none, ...older } = received as Extract<OperationEvent, { type: 'received' }>;
    assert.equal(foldEvents([older])?.priority, 0);
    assert.equal(foldEvents([{ ...older, priority: 7 }])?.priority, 7);
  });

  it('redrive resets attempts so the operation gets a fresh set', () => {
    const state = given('FAILED');
    const next = decide(commands.redrive, state).reduce(evolve, state);
    assert.deepEqual({ status: next.status, attempts: next.attempts, runAt: next.runAt }, { status: 'PENDING', attempts: 0, runAt: LATER });
  });

  it('evolve refuses histories that cannot exist', () => {
    assert.throws(() => evolve(null, { type: 'cancelled', at: T0 }), /before received/);
    assert.throws(() => evolve(given('PENDING'), received), /existing operation/);
  });
});

describe('backoff', () => {
  it('full jitter stays within [0, min(max, base·2^(n-1))]', () => {
    const policy = { baseMs: 100, maxMs: 1000 };
    assert.equal(backoffDelayMs(1, policy, () => 0.999999), 99);
    assert.equal(backoffDelayMs(3, policy, () => 0.999999), 399);
    assert.equal(backoffDelayMs(10, policy, () => 0.999999), 999);
    assert.equal(backoffDelayMs(50, policy, () => 0), 0);
  });
});

describe('payload hash', () => {
  it('ignores key order and whitespace, not values', () => {
    assert.equal(payloadHash({ a: 1, b: [1, { c: 2, d: 3 }] }), payloadHash(JSON.parse('{ "b": [1, {"d":3,"c":2}], "a": 1 }')));
    assert.notEqual(payloadHash({ a: 1 }), payloadHash({ a: 2 }));
    assert.notEqual(payloadHash([1, 2]), payloadHash([2, 1]));
    assert.equal(canonicalJson({ z: null, a: 'x' }), '{"a":"x","z":null}');
  });

  it('is the fingerprint stored with every operation accepted so far, for hostile values too', () => {
    // A resubmission is told apart from a conflict by this fingerprint: it must never change.
    const stored: [Json, string][] = [
      [{ account: 'acct_4f9c2e1b7a', amount: 12345, currency: 'EUR', reference: 'invoice-2026-11-000123', memo: 'x'.repeat(180) }, 'a9cd58b55aa23554fbfb32f38a1099c721969080989c070b0ad8b4048875ace4'],
      [{ b: [1, { d: 3, c: 2 }], a: 1 }, '6b7a9375e00ce082873de2e4ced86e525d5c0e21cb0039301935e8027e8ecbdf'],
      [[], '4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945'],
      [{}, '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'],
      [null, '74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b'],
      ['é\u2028"\\/\n', 'c85a067def7a433fb8f089ab8615d8f5d2d9f9fffb67a0af5ff6a4dcdc92ade1'],
      [1e21, '241c4643fa70b1dcde1205b71be4e3bebb17e9f880c8e1a33d0ead6c27271d3c'],
      [-0.5, '1b07b0cffa0b3f596b5e048b0115168886cc5183dd518655b5515ee5dddac6d1'],
      [9007199254740993, 'c681da39d7273a6a24c15c9cac3a75526ff2ecf8ba4ee60346a0c70c8163bdb2'],
      [true, 'b5bea41b6c623f7c09f1bf24dcae58ebab3c0cdd90ad966bc43a45b44867e12b'],
      [{ '': { '10': 1, '9': 2, 'a b': [null, false, { Z: 'z', z: 'Z' }] } }, 'dedb0569993257442fc98362827a73cc11e1ccc73f2e3592ff3721256ffb7c56'],
      [{ ü: 1, u: 2, '\u0001': 3, '😀': 4 }, '85742a852d6e4eaf81d6282fbd021e1607f854b1f90f80f4434d3872a7b9a230'],
      [JSON.parse('{"\\ud800x": "\\udc00"}') as Json, '42f0834f4afa4042a161e62722e623ded434051afd72bb335e1ab616fb2253e1'],
    ];
    for (const [payload, hash] of stored) assert.equal(payloadHash(payload), hash, canonicalJson(payload));
  });
});
