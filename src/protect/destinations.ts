import type { ResourceDefinition } from './resourcePolicy.js';
import type { Allowance, WaitReason } from './resourceRules.js';

/**
 * Each destination of a resource with `perDestination` limits keeps a state of its own, under the
 * resource's name and the destination's joined by '@', which no resource name contains.
 */
export function destinationStateName(resource: string, destination: string): string {
  return `${resource}@${destination}`;
}

/** The destination named by a state's name, or null for a resource's own state. */
export function destinationOfStateName(resource: string, name: string): string | null {
  return name.startsWith(`${resource}@`) ? name.slice(resource.length + 1) : null;
}

/** A destination as a resource of its own: its limits are the resource's per-destination ones. */
export function destinationResource(resource: ResourceDefinition, destination: string): ResourceDefinition {
  return { name: destinationStateName(resource.name, destination), ...resource.perDestination };
}

/** Which due keys a claim may start, so that no destination gets more starts than it allows now. */
export interface DestinationPlan {
  /** Keys whose head may start: those without a destination, and as many of each destination's as it allows. */
  allowed: Set<string>;
  /** Due keys held back because their destination allows no more now. */
  held: string[];
  /** The allowance of each destination that has room, by destination. */
  allowances: Map<string, Allowance>;
  /** When nothing may start: why, and the earliest instant a held destination said it may start again (null: none said). */
  reason: WaitReason | null;
  retryAt: number | null;
}

/**
 * Splits due keys (oldest head first) by destination: each destination is asked once, for as many
 * starts as it has keys, and its oldest keys take what it allows. One claim starts at most one
 * operation per key, so a destination's allowed keys bound its starts.
 */
export function planDestinationStarts(
  keys: readonly string[],
  destinationOf: ReadonlyMap<string, string>,
  allowanceOf: (destination: string, want: number) => Allowance,
): DestinationPlan {
  const byDestination = new Map<string, string[]>();
  const allowed = new Set<string>();
  for (const key of keys) {
    const destination = destinationOf.get(key);
    if (destination === undefined) allowed.add(key);
    else byDestination.set(destination, [...(byDestination.get(destination) ?? []), key]);
  }
  const held: string[] = [];
  const allowances = new Map<string, Allowance>();
  let reason: WaitReason | null = null;
  let retryAt: number | null = null;
  for (const [destination, destinationKeys] of byDestination) {
    const allowance = allowanceOf(destination, destinationKeys.length);
    destinationKeys.slice(0, allowance.starts).forEach((key) => allowed.add(key));
    held.push(...destinationKeys.slice(allowance.starts));
    if (allowance.starts > 0) {
      allowances.set(destination, allowance);
      continue;
    }
    reason ??= allowance.reason;
    if (allowance.retryAt !== null) retryAt = Math.min(retryAt ?? Infinity, allowance.retryAt);
  }
  if (allowed.size > 0) return { allowed, held, allowances, reason: null, retryAt: null };
  return { allowed, held, allowances, reason, retryAt };
}
