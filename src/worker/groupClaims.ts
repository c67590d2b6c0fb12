import { claimGroups, type ClaimGroup } from '../protect/claimGroups.js';
import type { WaitReason } from '../protect/resourceRules.js';
import { claimLimited } from '../store/claimLimited.js';
import { claimOperations, type ClaimedOperation, type ClaimOptions } from '../store/claimOperations.js';
import type { Db } from '../store/db.js';
import type { HandlerRegistry } from './handlerRegistry.js';

/** Counters of the waits a worker's claims met, by reason; readable for the metrics. */
export type ClaimWaits = Record<WaitReason, number>;

type LimitedGroup = Extract<ClaimGroup, { kind: 'limited' }>;

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

  constructor(options: {
    db: Db;
    registry: HandlerRegistry;
    typeCaps: Readonly<Record<string, number>>;
    pollIntervalMs: number;
    /** Asks the worker to claim again at `at`. */
    wakeAt: (at: Date) => void;
  }) {
    this.#db = options.db;
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
    const result = await claimLimited(this.#db, group, { ...options, types: group.types });
    const now = options.now().getTime();
    if (result.reason) this.waits[result.reason] += 1;
    if (result.probe && group.resource) this.#probes.set(result.probe, group.resource.name);
    if (result.retryAt !== null) {
      this.#notBefore.set(group.name, result.retryAt);
      this.#wakeAt(new Date(result.retryAt));
    } else if (result.reason !== null && (this.#ends.get(group.name) ?? 0) === endsBefore) {
      // Only an end frees room now; one that came while this claim counted was not counted.
      this.#notBefore.set(group.name, now + this.#pollIntervalMs);
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

  /** An upstream asked to wait: this worker starts nothing on `resource` before `until`, whatever the store says yet. */
  pauseLocally(resource: string, until: number): void {
    for (const group of this.groups) {
      if (group.kind === 'limited' && group.resource?.name === resource) this.#notBefore.set(group.name, Math.max(until, this.#notBefore.get(group.name) ?? 0));
    }
    this.#wakeAt(new Date(until));
  }

  /** The resource whose breaker waits for this attempt's answer, if it was a probe; forgets it. */
  takeProbe(operationId: string): string | null {
    const resource = this.#probes.get(operationId) ?? null;
    this.#probes.delete(operationId);
    return resource;
  }

  /** The limited group a type belongs to, for its resource. */
  groupOf(type: string): LimitedGroup | null {
    for (const group of this.groups) if (group.kind === 'limited' && group.types.includes(type)) return group;
    return null;
  }
}
