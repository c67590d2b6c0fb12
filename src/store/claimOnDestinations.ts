import { destinationResource, destinationStateName, planDestinationStarts } from '../protect/destinations.js';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import { afterStarts, allowance, INITIAL_RESOURCE_STATE, type ResourceState, type WaitReason } from '../protect/resourceRules.js';
import { claimOn, type ClaimedOperation, type ClaimOptions } from './claimOperations.js';
import type { Queryable } from './db.js';
import type { LimitedClaim } from './claimLimited.js';
import { lockResourceStates, storeClockMs, writeResourceStates } from './resourceState.js';

/** Where the operations of a resource with per-destination limits wait, and where each goes; read on `session`. */
export interface DestinationSource {
  /**
   * Keys whose head is due and may start (nothing earlier on the key still active, nothing on it
   * running), oldest head first, leaving out `busyKeys`.
   */
  dueKeys(session: Queryable, options: { now: Date; busyKeys: readonly string[]; limit: number }): Promise<string[]>;
  /** The destination of each key it knows (keys left out have none). */
  destinationsOf(session: Queryable, orderingKeys: readonly string[]): Promise<Map<string, string>>;
}

/** How a claim learns where its operations go, and what this process saw of them before the store has it. */
export interface DestinationLookup {
  source: DestinationSource;
  /**
   * Destinations this worker holds back until then (ms since the epoch), by state name: one asked to
   * wait, and the write that tells every process may not have landed yet.
   */
  pausedHere: ReadonlyMap<string, number>;
}

/** A key came due between the look at due keys and the claim: the transaction is rolled back and tried again. */
export class DueKeysChanged extends Error {
  override readonly name = 'DueKeysChanged';
}

/**
 * Most due keys one claim weighs, oldest head first. For deliveries a key is a subscription, so a
 * claim sees every subscription with work unless more than this many have some at once; then the
 * newest wait until older ones start or their destinations let them.
 */
export const KEYS_WEIGHED = 1000;

/**
 * Claims inside the caller's transaction so that each destination starts no more than its own
 * limits allow: the due keys are mapped to their destinations, every destination's state is locked,
 * each is asked how many may start, and the claim is held to those keys (the others are passed as
 * busy). A key that comes due in between would slip past that list, so a claim that took one throws
 * DueKeysChanged and the caller runs the transaction again. Each destination's starts and probe are
 * recorded before the commit, as a resource's are.
 */
export async function claimOnDestinations(
  tx: Queryable,
  resource: ResourceDefinition,
  lookup: DestinationLookup,
  options: ClaimOptions,
): Promise<LimitedClaim> {
  const nothing = (reason: WaitReason | null, retryAt: number | null): LimitedClaim => ({ claimed: [], probes: [], destinations: new Map(), reason, retryAt });
  const busyKeys = [...(options.busyKeys ?? [])];
  const keys = await lookup.source.dueKeys(tx, { now: options.now(), busyKeys, limit: KEYS_WEIGHED });
  if (keys.length === 0) return nothing(null, null);

  const destinationOf = await lookup.source.destinationsOf(tx, keys);
  const destinations = [...new Set(destinationOf.values())];
  const { states, nowMs } = await lockResourceStates(tx, destinations.map((d) => destinationStateName(resource.name, d)));
  const stateOf = (destination: string): ResourceState => {
    const name = destinationStateName(resource.name, destination);
    const state = states.get(name) ?? INITIAL_RESOURCE_STATE;
    const pausedHere = lookup.pausedHere.get(name) ?? null;
    return pausedHere !== null && pausedHere > (state.pausedUntil ?? 0) ? { ...state, pausedUntil: pausedHere } : state;
  };
  const plan = planDestinationStarts(keys, destinationOf, (destination, want) =>
    allowance(destinationResource(resource, destination), stateOf(destination), { now: nowMs, inFlight: 0, want }),
  );
  if (plan.allowed.size === 0) return nothing(plan.reason, plan.retryAt);

  const claimed = await claimOn(tx, { ...options, limit: Math.min(options.limit, plan.allowed.size), busyKeys: [...busyKeys, ...plan.held] });
  if (claimed.some((op) => !plan.allowed.has(op.orderingKey))) throw new DueKeysChanged('a key came due during the claim');

  const started = new Map<string, ClaimedOperation[]>();
  for (const op of claimed) {
    const destination = destinationOf.get(op.orderingKey);
    if (destination !== undefined) started.set(destination, [...(started.get(destination) ?? []), op]);
  }
  const startedAt = await storeClockMs(tx);
  const written = new Map<string, ResourceState>();
  const result: LimitedClaim = { claimed, probes: [], destinations: new Map(), reason: null, retryAt: null };
  for (const [destination, ops] of started) {
    const policy = destinationResource(resource, destination);
    const probeOp = plan.allowances.get(destination)?.probe ? ops[0] : undefined;
    const probe = probeOp ? { operationId: probeOp.id, untilMs: startedAt + options.leaseMs } : undefined;
    written.set(policy.name, afterStarts(policy, stateOf(destination), { now: startedAt, started: ops.length, ...(probe ? { probe } : {}) }));
    if (probeOp) result.probes.push({ operationId: probeOp.id, resource: policy.name });
    for (const op of ops) result.destinations.set(op.id, policy);
  }
  await writeResourceStates(tx, written);
  return result;
}
