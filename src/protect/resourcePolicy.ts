/** At most `limit` attempts start in any window of `perMs` milliseconds. */
export interface RateLimit {
  limit: number;
  perMs: number;
}

/** Opens after `failures` failed attempts within `windowMs`; lets one probe through `cooldownMs` after it opened. */
export interface BreakerPolicy {
  failures: number;
  windowMs: number;
  cooldownMs: number;
}

/**
 * Limits that each destination of a resource's operations has on its own, with a state of its
 * own: for webhook deliveries, each host a subscriber listens on. One destination that fails or
 * asks to wait holds back only the operations bound for it.
 */
export interface DestinationLimits {
  rate?: RateLimit;
  breaker?: BreakerPolicy;
}

/**
 * A third party, or any shared thing, that the operations of some types call. Every limit holds
 * across all worker processes: the state lives in the store, and a claim takes a start, a slot and
 * the breaker's leave in the same transaction that starts the operation.
 */
export interface ResourceDefinition {
  /** Names it in `defineOperation({ resource })` and in the admin routes. */
  name: string;
  /** Attempts that may start per window, cluster-wide. Default: no rate limit. */
  rate?: RateLimit;
  /** Attempts in flight at once, cluster-wide. Default: no limit. */
  concurrency?: number;
  /** A rate per ordering key (per merchant, per tenant), on top of the resource's own. */
  perKey?: { rate: RateLimit };
  /** Default: no breaker. */
  breaker?: BreakerPolicy;
  /**
   * Limits per destination, on top of the resource's own. Only for types whose worker knows each
   * operation's destination (the built-in webhook deliveries). Default: none.
   */
  perDestination?: DestinationLimits;
  /**
   * Types governed by this resource besides those whose definition names it, such as the
   * built-in `http.request`.
   */
  types?: string[];
}

const RESOURCE = Symbol.for('opsd.resourceDefinition');

/** Declares a resource. Export it (or an array of them) from the module named by `OPSD_HANDLERS`. */
export function defineResource(definition: ResourceDefinition): ResourceDefinition {
  const where = `resource "${definition.name}"`;
  if (!/^[a-z0-9][a-z0-9._-]{0,127}$/i.test(definition.name)) {
    throw new TypeError(`${where}: the name must be 1-128 letters, digits, '.', '_' or '-'`);
  }
  const positive = (value: unknown, what: string) => {
    if (!(Number.isSafeInteger(value) && (value as number) > 0)) throw new TypeError(`${where}: ${what} must be a positive integer`);
  };
  const rate = (value: RateLimit | undefined, what: string) => {
    if (value === undefined) return;
    positive(value.limit, `${what}.limit`);
    positive(value.perMs, `${what}.perMs`);
  };
  rate(definition.rate, 'rate');
  rate(definition.perKey?.rate, 'perKey.rate');
  if (definition.perKey !== undefined && definition.perKey.rate === undefined) throw new TypeError(`${where}: perKey needs a rate`);
  const breaker = (value: BreakerPolicy | undefined, what: string) => {
    if (value === undefined) return;
    positive(value.failures, `${what}.failures`);
    positive(value.windowMs, `${what}.windowMs`);
    positive(value.cooldownMs, `${what}.cooldownMs`);
  };
  if (definition.concurrency !== undefined) positive(definition.concurrency, 'concurrency');
  breaker(definition.breaker, 'breaker');
  if (definition.perDestination !== undefined && definition.breaker !== undefined) {
    throw new TypeError(`${where}: with perDestination, the breaker is per destination (perDestination.breaker); attempts report to their destination, not to the resource`);
  }
  rate(definition.perDestination?.rate, 'perDestination.rate');
  breaker(definition.perDestination?.breaker, 'perDestination.breaker');
  if (definition.types !== undefined && !(Array.isArray(definition.types) && definition.types.every((t) => typeof t === 'string'))) {
    throw new TypeError(`${where}: types must be a list of operation types`);
  }
  return Object.assign(definition, { [RESOURCE]: true });
}

export function isResourceDefinition(value: unknown): value is ResourceDefinition {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[RESOURCE] === true;
}
