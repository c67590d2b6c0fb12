import { claimGroups, type ClaimGroup } from '../protect/claimGroups.js';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import type { WaitReason } from '../protect/resourceRules.js';
import { claimLimited } from '../store/claimLimited.js';
import { claimOperations, type ClaimedOperation, type ClaimOptions } from '../store/claimOperations.js';
import type { Db } from '../store/db.js';
import type { HandlerRegistry } from './handlerRegistry.js';

/** Counters of the waits a worker's claims met, by reason; readable for the metrics. */
export type ClaimWaits = Record<WaitReason, number>;

type LimitedGroup = Extract<ClaimGroup, { kind: 'limited' }>;

/**
 * How soon a group with per-destination limits (webhook deliveries) is looked at again after a look
 * found nothing of it due. Every worker has that group; a busy worker wakes hundreds of times a
 * second, and one read each time cost its drain about a tenth.
 */
const DESTINATION_IDLE_LOOK_MS = 100;

/**
 * A worker's claims, group by group (see claimGroups): the plain claim for types free of limits,
 * and for the others a claim that takes its starts, slots and breaker leave from the store. It
 * remembers when each limited group may start more, so that a worker does not ask the store again
 * before then: until the instant the rules named (a rate window, a pause, a cool-down), or, when
 * only an end can free room (slots, an operator's pause), until one of the group's own attempts
 * ends here or a poll interval passes (ends in other processes are seen that way).
 */
export class GroupClaims {
  readonly groups: readonly ClaimGroup[];
  readonly waits: ClaimWaits = { paused: 0, upstream_pause: 0, breaker_open: 0, probe_out: 0, concurrency: 0, rate: 0 };
  readonly #db: Db;
  readonly #pollIntervalMs: number;
  readonly #wakeAt: (at: Date) => void;
  readonly #notBefore = new Map<string, number>();
  /** Ends seen per group: a claim that counted slots before an end must not hold the group back after it. */
  readonly #ends = new Map<string, number>();
  /** Attempts let through a half-open breaker, by operation id: the resource waits for their answer. */
  readonly #probes = new Map<string, string>();
  /** Attempts bound for a destination with limits of its own, by operation id: their ends are reported to it. */
  readonly #destinations = new Map<string, ResourceDefinition>();
  /** Destinations held back here until then, by state name (see DestinationLookup.pausedHere). */
  readonly #destinationPauses = new Map<string, number>();
  readonly #registry: HandlerRegistry;

  constructor(options: {
    db: Db;
    registry: HandlerRegistry;
    typeCaps: Readonly<Record<string, number>>;
    pollIntervalMs: number;
    /** Asks the worker to claim again at `at`. */
    wakeAt: (at: Date) => void;
  }) {
    this.#db = options.db;
    this.#registry = options.registry;
    this.#pollIntervalMs = options.pollIntervalMs;
    this.#wakeAt = options.wakeAt;
    this.groups = claimGroups(options.registry.types(), (type) => options.registry.resourceOf(type), options.typeCaps);
  }

  /** The types whose next operation on a key the end of the one before may start in the same write. */
  freeTypes(): string[] {
    return this.groups.flatMap((group) => (group.kind === 'free' ? group.types : []));
  }

  /** Whether the group may have room now, as far as this worker knows. */
  due(group: ClaimGroup, now: number): boolean {
    return group.kind === 'free' || (this.#notBefore.get(group.name) ?? 0) <= now;
  }

  /**
   * Claims up to `limit` of the group. `short` is true when the group had fewer due operations than
   * room for them (a scan that came up short), not when a limit held it back.
   */
  async claim(group: ClaimGroup, options: ClaimOptions): Promise<{ claimed: ClaimedOperation[]; short: boolean }> {
    if (group.kind === 'free') {
      const claimed = await claimOperations(this.#db, { ...options, types: group.types });
      return { claimed, short: claimed.length < options.limit };
    }
    const endsBefore = this.#ends.get(group.name) ?? 0;
    const source = group.resource ? this.#registry.destinationsOf(group.resource.name) : undefined;
    for (const [name, until] of this.#destinationPauses) if (until <= options.now().getTime()) this.#destinationPauses.delete(name);
    const lookup = source ? { source, pausedHere: this.#destinationPauses } : undefined;
    const result = await claimLimited(this.#db, group, { ...options, types: group.types }, lookup);
    const now = options.now().getTime();
    if (result.reason) this.waits[result.reason] += 1;
    for (const probe of result.probes) this.#probes.set(probe.operationId, probe.resource);
    for (const [operationId, destination] of result.destinations) this.#destinations.set(operationId, destination);
    // One destination's wait must not hold back another's work that comes due meanwhile.
    const latest = group.resource?.perDestination ? now + this.#pollIntervalMs : Infinity;
    if (result.retryAt !== null) {
      const at = Math.min(result.retryAt, latest);
      this.#notBefore.set(group.name, at);
      this.#wakeAt(new Date(at));
    } else if (result.reason !== null && (this.#ends.get(group.name) ?? 0) === endsBefore) {
      // Only an end frees room now; one that came while this claim counted was not counted.
      this.#notBefore.set(group.name, now + this.#pollIntervalMs);
    } else if (group.resource?.perDestination && result.claimed.length === 0) {
      // Nothing bound for a destination is due: look again shortly, not on every wake of a busy worker.
      const at = now + Math.min(this.#pollIntervalMs, DESTINATION_IDLE_LOOK_MS);
      this.#notBefore.set(group.name, at);
      this.#wakeAt(new Date(at));
    }
    // A finish starts no successor of a limited type (see finishAttempts), so none is carried: the
    // attempt's slot then frees as soon as its handler stops, not after its outcome is written.
    const claimed = result.claimed.map((op) => (op.next ? { ...op, next: null } : op));
    return { claimed, short: result.reason === null && claimed.length < options.limit };
  }

  /** An attempt of `type` ended here: a group waiting for room may have some. */
  ended(type: string): void {
    for (const group of this.groups) {
      if (group.kind !== 'limited' || !(group.types.includes(type) || group.resourceTypes.includes(type))) continue;
      this.#notBefore.delete(group.name);
      this.#ends.set(group.name, (this.#ends.get(group.name) ?? 0) + 1);
    }
  }

  /** An upstream asked to wait: this worker starts nothing on `resource` (or that destination) before `until`, whatever the store says yet. */
  pauseLocally(resource: string, until: number): void {
    let isGroup = false;
    for (const group of this.groups) {
      if (group.kind !== 'limited' || group.resource?.name !== resource) continue;
      isGroup = true;
      this.#notBefore.set(group.name, Math.max(until, this.#notBefore.get(group.name) ?? 0));
    }
    // A destination's pause holds back only its own operations: the claim of its group skips them.
    if (!isGroup) this.#destinationPauses.set(resource, Math.max(until, this.#destinationPauses.get(resource) ?? 0));
    this.#wakeAt(new Date(until));
  }

  /** The resource whose breaker waits for this attempt's answer, if it was a probe; forgets it. */
  takeProbe(operationId: string): string | null {
    const resource = this.#probes.get(operationId) ?? null;
    this.#probes.delete(operationId);
    return resource;
  }

  /** The destination an attempt was bound for, if its resource has per-destination limits; forgets it. */
  takeDestination(operationId: string): ResourceDefinition | null {
    const destination = this.#destinations.get(operationId) ?? null;
    this.#destinations.delete(operationId);
    return destination;
  }

  /** The limited group a type belongs to, for its resource. */
  groupOf(type: string): LimitedGroup | null {
    for (const group of this.groups) if (group.kind === 'limited' && group.types.includes(type)) return group;
    return null;
  }
}
