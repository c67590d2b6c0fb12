import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shedsSubmission } from '../src/protect/backlogRule.js';
import { ConfigError, resolveConfig, WEBHOOK_DESTINATION_DEFAULTS } from '../src/config.js';
import { claimGroups } from '../src/protect/claimGroups.js';
import { destinationOfStateName, destinationResource, destinationStateName, planDestinationStarts } from '../src/protect/destinations.js';
import { defineResource } from '../src/protect/resourcePolicy.js';
import {
  afterOutcomes,
  afterStarts,
  allowance,
  INITIAL_RESOURCE_STATE,
  rateWindowMs,
  withOperatorPause,
  type ResourceState,
} from '../src/protect/resourceRules.js';
import { destinationOfUrl } from '../src/webhooks/deliveryDestinations.js';

const T = 1_000_000;
const bank = defineResource({ name: 'bank', rate: { limit: 5, perMs: 1000 }, concurrency: 2, breaker: { failures: 3, windowMs: 30_000, cooldownMs: 10_000 } });
const rateOnly = defineResource({ name: 'rate-only', rate: { limit: 5, perMs: 1000 } });

/** Starts every attempt it is allowed at `now`, as many times as asked; returns the state and how many started. */
function startAll(policy: typeof bank, state: ResourceState, now: number, want: number) {
  const allowed = allowance(policy, state, { now, inFlight: 0, want });
  return { allowed, state: afterStarts(policy, state, { now, started: allowed.starts }) };
}

describe('resource rules: rate', () => {
  it('never lets more than the limit start in any window of the rate (plus its margin)', () => {
    let state = INITIAL_RESOURCE_STATE;
    const starts: number[] = [];
    // Ask every 7 ms for 3 attempts, over 5 seconds.
    for (let now = T; now < T + 5000; now += 7) {
      const result = startAll(rateOnly, state, now, 3);
      state = result.state;
      for (let i = 0; i < result.allowed.starts; i += 1) starts.push(now);
    }
    for (const first of starts) {
      const inWindow = starts.filter((at) => at >= first && at < first + 1000).length;
      assert.ok(inWindow <= 5, `${inWindow} starts in the window from ${first}`);
    }
    // And it does not starve: about 5 per (window + margin).
    assert.ok(starts.length >= Math.floor(5000 / rateWindowMs({ limit: 5, perMs: 1000 })) * 5, `${starts.length} starts in 5 s`);
  });

  it('spreads starts a window-share apart, and says when the next one may come', () => {
    const first = allowance(rateOnly, INITIAL_RESOURCE_STATE, { now: T, inFlight: 0, want: 5 });
    assert.deepEqual({ starts: first.starts, reason: first.reason }, { starts: 1, reason: 'rate' });
    const state = afterStarts(rateOnly, INITIAL_RESOURCE_STATE, { now: T, started: 1 });
    assert.deepEqual(allowance(rateOnly, state, { now: T + 100, inFlight: 0, want: 1 }), { starts: 0, probe: false, reason: 'rate', retryAt: T + 200 });
    assert.equal(allowance(rateOnly, state, { now: T + 200, inFlight: 0, want: 1 }).starts, 1);
  });

  it('says when the next start frees once the window is full', () => {
    let state = INITIAL_RESOURCE_STATE;
    for (let i = 0; i < 5; i += 1) state = afterStarts(rateOnly, state, { now: T + i * 200, started: 1 });
    const blocked = allowance(rateOnly, state, { now: T + 1000, inFlight: 0, want: 1 });
    assert.deepEqual({ starts: blocked.starts, reason: blocked.reason }, { starts: 0, reason: 'rate' });
    assert.equal(blocked.retryAt, T + rateWindowMs({ limit: 5, perMs: 1000 }));
    assert.equal(allowance(rateOnly, state, { now: blocked.retryAt as number, inFlight: 0, want: 9 }).starts, 1);
  });

  it('a fast rate lets a tenth of its limit start at once, and says when the rest may come', () => {
    const fast = defineResource({ name: 'fast', rate: { limit: 100, perMs: 1000 } });
    const partial = allowance(fast, INITIAL_RESOURCE_STATE, { now: T, inFlight: 0, want: 30 });
    assert.deepEqual({ starts: partial.starts, reason: partial.reason, retryAt: partial.retryAt }, { starts: 10, reason: 'rate', retryAt: T + 10 });
  });
});

describe('resource rules: slots, pauses', () => {
  it('counts attempts in flight cluster-wide against the concurrency', () => {
    const slots = defineResource({ name: 'slots', concurrency: 2 });
    assert.equal(allowance(slots, INITIAL_RESOURCE_STATE, { now: T, inFlight: 0, want: 10 }).starts, 2);
    assert.equal(allowance(slots, INITIAL_RESOURCE_STATE, { now: T, inFlight: 1, want: 10 }).starts, 1);
    assert.deepEqual(allowance(slots, INITIAL_RESOURCE_STATE, { now: T, inFlight: 2, want: 10 }), { starts: 0, probe: false, reason: 'concurrency', retryAt: null });
  });

  it('an upstream pause stops every start until it ends; an operator pause until resumed', () => {
    const paused = afterOutcomes(bank, INITIAL_RESOURCE_STATE, { now: T, reports: [], pauseUntil: T + 2000, throttled: 1 });
    assert.deepEqual(allowance(bank, paused, { now: T + 1999, inFlight: 0, want: 1 }), { starts: 0, probe: false, reason: 'upstream_pause', retryAt: T + 2000 });
    assert.equal(allowance(bank, paused, { now: T + 2000, inFlight: 0, want: 1 }).starts, 1);
    assert.deepEqual({ throttled: paused.throttled, pauses: paused.pauses }, { throttled: 1, pauses: 1 });
    // A shorter pause reported later does not shorten it.
    const again = afterOutcomes(bank, paused, { now: T + 10, reports: [], pauseUntil: T + 500, throttled: 1 });
    assert.deepEqual({ until: again.pausedUntil, pauses: again.pauses, throttled: again.throttled }, { until: T + 2000, pauses: 1, throttled: 2 });

    const held = withOperatorPause(INITIAL_RESOURCE_STATE, true);
    assert.deepEqual(allowance(bank, held, { now: T + 1e9, inFlight: 0, want: 1 }), { starts: 0, probe: false, reason: 'paused', retryAt: null });
    assert.equal(allowance(bank, withOperatorPause(held, false), { now: T, inFlight: 0, want: 1 }).starts, 1);
  });
});

describe('resource rules: breaker', () => {
  const fail = (operationId: string) => ({ operationId, verdict: 'failure' as const });

  it('opens after the failures of its window, stops every start during the cool-down, then lets one probe through', () => {
    let state = afterOutcomes(bank, INITIAL_RESOURCE_STATE, { now: T, reports: [fail('a'), fail('b')] });
    assert.equal(state.breaker.phase, 'closed');
    state = afterOutcomes(bank, state, { now: T + 100, reports: [fail('c')] });
    assert.deepEqual({ phase: state.breaker.phase, since: state.breaker.since }, { phase: 'open', since: T + 100 });

    assert.deepEqual(allowance(bank, state, { now: T + 5000, inFlight: 0, want: 2 }), { starts: 0, probe: false, reason: 'breaker_open', retryAt: T + 10_100 });
    const probe = allowance(bank, state, { now: T + 10_100, inFlight: 0, want: 2 });
    assert.deepEqual({ starts: probe.starts, probe: probe.probe }, { starts: 1, probe: true });
    state = afterStarts(bank, state, { now: T + 10_100, started: 1, probe: { operationId: 'p1', untilMs: T + 40_100 } });
    assert.equal(state.breaker.phase, 'half_open');
    assert.equal(allowance(bank, state, { now: T + 10_200, inFlight: 0, want: 2 }).reason, 'probe_out', 'one probe at a time');
  });

  it('a probe that succeeds closes it; one that fails opens it again; one that gives no answer lets another through', () => {
    const opened = afterOutcomes(bank, INITIAL_RESOURCE_STATE, { now: T, reports: [fail('a'), fail('b'), fail('c')] });
    const probing = afterStarts(bank, opened, { now: T + 10_000, started: 1, probe: { operationId: 'p', untilMs: T + 40_000 } });

    const closed = afterOutcomes(bank, probing, { now: T + 10_050, reports: [{ operationId: 'p', verdict: 'success' }] });
    assert.equal(closed.breaker.phase, 'closed');
    // Closed again: only the rate holds it back (one start per 200 ms after the probe's).
    assert.deepEqual(allowance(bank, closed, { now: T + 10_200, inFlight: 0, want: 2 }), { starts: 1, probe: false, reason: 'rate', retryAt: T + 10_400 });

    const reopened = afterOutcomes(bank, probing, { now: T + 10_050, reports: [fail('p')] });
    assert.deepEqual({ phase: reopened.breaker.phase, since: reopened.breaker.since }, { phase: 'open', since: T + 10_050 });

    const unanswered = afterOutcomes(bank, probing, { now: T + 10_050, reports: [{ operationId: 'p', verdict: 'neutral' }] });
    assert.equal(allowance(bank, unanswered, { now: T + 10_200, inFlight: 0, want: 2 }).probe, true);

    // A straggler that started before it opened says nothing; a probe whose lease ran out is replaced.
    assert.equal(afterOutcomes(bank, probing, { now: T + 10_050, reports: [{ operationId: 'old', verdict: 'success' }] }).breaker.phase, 'half_open');
    assert.equal(allowance(bank, probing, { now: T + 40_000, inFlight: 0, want: 2 }).probe, true);
  });

  it('failures older than the window do not count', () => {
    let state = afterOutcomes(bank, INITIAL_RESOURCE_STATE, { now: T, reports: [fail('a'), fail('b')] });
    state = afterOutcomes(bank, state, { now: T + 30_001, reports: [fail('c')] });
    assert.equal(state.breaker.phase, 'closed');
  });
});

describe('claim groups', () => {
  it('types free of limits claim together; a resource groups its uncapped types; a capped type stands alone with its resource', () => {
    const resourceOf = (type: string) => (type.startsWith('bank.') ? bank : null);
    const groups = claimGroups(['demo.echo', 'bank.statement', 'bank.balance', 'pdf.render', 'bank.transfer'], resourceOf, { 'pdf.render': 3, 'bank.transfer': 1 });
    assert.deepEqual(
      groups.map((g) => (g.kind === 'free' ? { free: g.types } : { name: g.name, types: g.types, resource: g.resource?.name ?? null, resourceTypes: g.resourceTypes, cap: g.typeCap })),
      [
        { free: ['demo.echo'] },
        { name: 'resource:bank', types: ['bank.statement', 'bank.balance'], resource: 'bank', resourceTypes: ['bank.statement', 'bank.balance', 'bank.transfer'], cap: null },
        { name: 'type:pdf.render', types: ['pdf.render'], resource: null, resourceTypes: [], cap: { type: 'pdf.render', limit: 3 } },
        { name: 'type:bank.transfer', types: ['bank.transfer'], resource: 'bank', resourceTypes: ['bank.statement', 'bank.balance', 'bank.transfer'], cap: { type: 'bank.transfer', limit: 1 } },
      ],
    );
  });
});

describe('backlog shedding', () => {
  it('sheds at the cap, and priorities below 0 at half of it', () => {
    assert.equal(shedsSubmission(99, 100, 0), false);
    assert.equal(shedsSubmission(100, 100, 0), true);
    assert.equal(shedsSubmission(100, 100, 10), true);
    assert.equal(shedsSubmission(49, 100, -1), false);
    assert.equal(shedsSubmission(50, 100, -1), true);
  });
});

describe('resource definitions', () => {
  it('refuses what cannot be a limit', () => {
    assert.throws(() => defineResource({ name: 'x', rate: { limit: 0, perMs: 1000 } }), /rate.limit must be a positive integer/);
    assert.throws(() => defineResource({ name: 'x', rate: { limit: 5, perMs: 2 ** 60 } }), /rate.perMs/);
    assert.throws(() => defineResource({ name: 'x', concurrency: 1.5 }), /concurrency/);
    assert.throws(() => defineResource({ name: 'x', breaker: { failures: 10, windowMs: -1, cooldownMs: 1 } }), /breaker.windowMs/);
    assert.throws(() => defineResource({ name: 'has space' }), /name/);
    assert.throws(() => defineResource({ name: 'x', perKey: {} as never }), /perKey needs a rate/);
    assert.throws(() => defineResource({ name: 'x', perDestination: { rate: { limit: 2 ** 53 + 2, perMs: 1000 } } }), /perDestination.rate.limit/);
    assert.throws(() => defineResource({ name: 'x', perDestination: { breaker: { failures: 1, windowMs: 1, cooldownMs: NaN } } }), /perDestination.breaker.cooldownMs/);
    assert.throws(() => defineResource({ name: 'x', breaker: { failures: 1, windowMs: 1, cooldownMs: 1 }, perDestination: {} }), /breaker is per destination/);
    assert.throws(() => defineResource({ name: 'x@y' }), /name/, "'@' joins a resource to a destination; no resource name has it");
  });
});

describe('destinations', () => {
  const hooks = defineResource({ name: 'hooks', perDestination: { rate: { limit: 2, perMs: 1000 }, breaker: { failures: 2, windowMs: 10_000, cooldownMs: 5000 } } });
  const open: ResourceState = { ...INITIAL_RESOURCE_STATE, breaker: { phase: 'open', since: T, failures: [], probe: null } };

  it('names a destination apart from its resource, and back, whatever the destination holds', () => {
    for (const destination of ['hooks.example.com', '[::1]:8443', 'a@b', '\u0000\ud800', '']) {
      const name = destinationStateName('hooks', destination);
      assert.equal(destinationOfStateName('hooks', name), destination);
      assert.equal(destinationResource(hooks, destination).name, name);
    }
    assert.equal(destinationOfStateName('hooks', 'hooks'), null);
    assert.equal(destinationOfStateName('hooks', 'hooks2@x'), null);
  });

  it('gives each destination only what it allows, oldest keys first; keys without a destination pass', () => {
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5', 'free'];
    const destinationOf = new Map([['k1', 'a'], ['k2', 'a'], ['k3', 'a'], ['k4', 'b'], ['k5', 'c']]);
    const states = new Map<string, ResourceState>([['b', open]]);
    const asked: [string, number][] = [];
    const plan = planDestinationStarts(keys, destinationOf, (destination, want) => {
      asked.push([destination, want]);
      return allowance(destinationResource(hooks, destination), states.get(destination) ?? INITIAL_RESOURCE_STATE, { now: T + 1000, inFlight: 0, want });
    });
    assert.deepEqual(asked, [['a', 3], ['b', 1], ['c', 1]], 'each destination asked once, for all its keys');
    assert.deepEqual([...plan.allowed].sort(), ['free', 'k1', 'k5'], 'a: its burst of one; b: open; c: one');
    assert.deepEqual(plan.held.sort(), ['k2', 'k3', 'k4']);
    assert.equal(plan.reason, null, 'something starts: no wait to report');
  });

  it('when every destination waits, says why and when the first may start again', () => {
    const plan = planDestinationStarts(['k1', 'k2'], new Map([['k1', 'a'], ['k2', 'b']]), (destination) =>
      destination === 'a' ? { starts: 0, probe: false, reason: 'breaker_open', retryAt: T + 5000 } : { starts: 0, probe: false, reason: 'rate', retryAt: T + 300 },
    );
    assert.equal(plan.allowed.size, 0);
    assert.equal(plan.reason, 'breaker_open');
    assert.equal(plan.retryAt, T + 300);
    assert.deepEqual(planDestinationStarts([], new Map(), () => assert.fail('nothing to ask')), { allowed: new Set(), held: [], allowances: new Map(), reason: null, retryAt: null });
  });
});

describe('webhook destination settings', () => {
  const limits = (env: Record<string, string>) => resolveConfig(env).webhookDestinations;
  it('defaults to 50 per second and 10 failures in 30 s per host; each can be set or turned off', () => {
    assert.deepEqual(limits({}), WEBHOOK_DESTINATION_DEFAULTS);
    assert.deepEqual(limits({ OPSD_WEBHOOK_RATE: '4/600', OPSD_WEBHOOK_BREAKER: 'off' }), { rate: { limit: 4, perMs: 600 } });
    assert.deepEqual(limits({ OPSD_WEBHOOK_RATE: ' off ', OPSD_WEBHOOK_BREAKER: '3/10000/1500' }), { breaker: { failures: 3, windowMs: 10_000, cooldownMs: 1500 } });
    assert.equal(destinationOfUrl('https://Hooks.Example.com:443/x?y'), 'hooks.example.com');
    assert.equal(destinationOfUrl('http://127.0.0.1:8080/a'), '127.0.0.1:8080');
    assert.equal(destinationOfUrl('not a url'), null);
  });

  it('refuses anything else, naming the setting and its form', () => {
    for (const bad of ['0/1000', '5', '5/1000/1', '-1/1000', '1e3/1000', '9007199254740993/1000', '5/86400001', '5/1000\u0000', '\ud800/1', '5 / 1000', '']) {
      if (bad === '') continue;
      assert.throws(() => limits({ OPSD_WEBHOOK_RATE: bad }), (error: Error) => error instanceof ConfigError && /OPSD_WEBHOOK_RATE must be "limit\/perMs"/.test(error.message), bad);
    }
    for (const bad of ['10/30000', '0/1/1', '10/30000/30000/1', 'on']) {
      assert.throws(() => limits({ OPSD_WEBHOOK_BREAKER: bad }), /OPSD_WEBHOOK_BREAKER must be "failures\/windowMs\/cooldownMs"/, bad);
    }
  });
});
