import type { ClaimGroup } from '../protect/claimGroups.js';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import { afterStarts, allowance, keyAllowance, rateWindowMs, withStarts, type WaitReason } from '../protect/resourceRules.js';
import { claimOn, type ClaimedOperation, type ClaimOptions } from './claimOperations.js';
import { claimOnDestinations, DueKeysChanged, type DestinationLookup } from './claimOnDestinations.js';
import type { Db, Queryable } from './db.js';
import { countInFlight, lockResourceState, storeClockMs, writeResourceState } from './resourceState.js';

/** What a limited claim got, and when its group may start more (null: once something of it ends). */
export interface LimitedClaim {
  claimed: ClaimedOperation[];
  /** Claimed operations that are a half-open probe, with the name of the state whose breaker waits for their answer. */
  probes: { operationId: string; resource: string }[];
  /** The destination of each claimed operation that has one (see claimOnDestinations). */
  destinations: Map<string, ResourceDefinition>;
  /** Why it started fewer than asked, if a limit did (not a lack of due work). */
  reason: WaitReason | null;
  retryAt: number | null;
}

function noClaim(reason: WaitReason | null, retryAt: number | null): LimitedClaim {
  return { claimed: [], probes: [], destinations: new Map(), reason, retryAt };
}

/** Times a claim through per-destination limits is run again when keys come due under it, before it gives up until the next. */
const DESTINATION_CLAIM_TRIES = 3;

/**
 * Claims for a group that shares something across processes: a resource (rate, slots, breaker,
 * pauses, a per-key rate) and/or a cluster-wide cap on its type. One transaction locks what the
 * group shares, counts the attempts in flight cluster-wide, asks the rules how many may start,
 * claims at most that many, and records the starts, so a start is never taken without an
 * operation to spend it on and two processes never both spend the last one. Limited resources are
 * slow by nature; these claims cost a few more round trips than the plain one. A resource with
 * per-destination limits also holds the claim to what each destination allows (claimOnDestinations).
 */
export async function claimLimited(
  db: Db,
  group: Extract<ClaimGroup, { kind: 'limited' }>,
  options: ClaimOptions,
  destinations?: DestinationLookup,
): Promise<LimitedClaim> {
  if (options.limit <= 0) return noClaim(null, null);
  // Most claims find nothing bound for any destination: one read says so, with no transaction or lock.
  if (group.resource?.perDestination && destinations) {
    const due = await destinations.source.dueKeys(db, { now: options.now(), busyKeys: options.busyKeys ?? [], limit: 1 });
    if (due.length === 0) return noClaim(null, null);
  }
  for (let tries = 1; ; tries += 1) {
    try {
      return await claimLimitedOnce(db, group, options, destinations);
    } catch (error) {
      if (!(error instanceof DueKeysChanged)) throw error;
      if (tries >= DESTINATION_CLAIM_TRIES) return noClaim(null, null);
    }
  }
}

async function claimLimitedOnce(
  db: Db,
  group: Extract<ClaimGroup, { kind: 'limited' }>,
  options: ClaimOptions,
  destinations: DestinationLookup | undefined,
): Promise<LimitedClaim> {
  return db.transaction(async (tx) => {
    const { resource, typeCap } = group;
    const locked = resource ? await lockResourceState(tx, resource.name) : null;
    const state = locked?.state ?? null;
    const now = locked?.nowMs ?? options.now().getTime();
    if (typeCap) await lockTypeCap(tx, typeCap.type);
    const inFlight = await countInFlight(tx, [...new Set([...group.resourceTypes, ...group.types])]);

    let want = options.limit;
    if (typeCap) {
      const free = typeCap.limit - (inFlight.get(typeCap.type) ?? 0);
      if (free <= 0) return noClaim('concurrency', null);
      want = Math.min(want, free);
    }
    const allowed = resource && state
      ? allowance(resource, state, { now, inFlight: group.resourceTypes.reduce((sum, t) => sum + (inFlight.get(t) ?? 0), 0), want })
      : { starts: want, probe: false, reason: null, retryAt: null };
    if (allowed.starts <= 0) return noClaim(allowed.reason, allowed.retryAt);

    const keysWaiting = resource?.perKey ? await keysOverTheirRate(tx, resource.name, resource.perKey.rate, now) : [];
    const claimOptions = { ...options, limit: allowed.starts, types: group.types, busyKeys: [...(options.busyKeys ?? []), ...keysWaiting] };
    const byDestination = resource?.perDestination && destinations ? await claimOnDestinations(tx, resource, destinations, claimOptions) : null;
    if (byDestination && byDestination.claimed.length === 0) return noClaim(byDestination.reason, byDestination.retryAt);
    const claimed = byDestination ? byDestination.claimed : await claimOn(tx, claimOptions);
    const probe = allowed.probe && claimed[0] ? { operationId: claimed[0].id, untilMs: now + options.leaseMs } : undefined;
    if (resource && state && claimed.length > 0) {
      // Stamped as the claim ends, just before its commit: as close as the store can see to the calls it allows.
      const startedAt = await storeClockMs(tx);
      await writeResourceState(tx, resource.name, afterStarts(resource, state, { now: startedAt, started: claimed.length, ...(probe ? { probe } : {}) }));
      if (resource.perKey) await recordKeyStarts(tx, resource.name, resource.perKey.rate, claimed, startedAt);
    }
    return {
      claimed,
      probes: [...(probe && resource ? [{ operationId: probe.operationId, resource: resource.name }] : []), ...(byDestination?.probes ?? [])],
      destinations: byDestination?.destinations ?? new Map(),
      reason: claimed.length < allowed.starts ? null : allowed.reason,
      retryAt: allowed.retryAt,
    };
  });
}

async function lockTypeCap(tx: Queryable, type: string): Promise<void> {
  await tx.query('INSERT INTO opsd_type_controls (type, updated_at) VALUES ($1, now()) ON CONFLICT (type) DO NOTHING', [type]);
  await tx.query('SELECT 1 FROM opsd_type_controls WHERE type = $1 FOR UPDATE', [type]);
}

/** Keys on the resource whose own rate has no start left now: their operations wait. */
async function keysOverTheirRate(tx: Queryable, resource: string, rate: { limit: number; perMs: number }, now: number): Promise<string[]> {
  const { rows } = await tx.query<{ ordering_key: string; starts: number[] }>(
    'SELECT ordering_key, starts FROM opsd_key_starts WHERE resource = $1 AND last_start > $2',
    [resource, new Date(now - rateWindowMs(rate)).toISOString()],
  );
  return rows.filter((row) => !keyAllowance(rate, row.starts, now).allowed).map((row) => row.ordering_key);
}

async function recordKeyStarts(tx: Queryable, resource: string, rate: { limit: number; perMs: number }, claimed: readonly ClaimedOperation[], now: number): Promise<void> {
  const keys = [...new Set(claimed.map((op) => op.orderingKey))];
  const { rows } = await tx.query<{ ordering_key: string; starts: number[] }>(
    'SELECT ordering_key, starts FROM opsd_key_starts WHERE resource = $1 AND ordering_key = ANY($2::text[]) FOR UPDATE',
    [resource, keys],
  );
  const before = new Map(rows.map((row) => [row.ordering_key, row.starts]));
  const counts = new Map<string, number>();
  for (const op of claimed) counts.set(op.orderingKey, (counts.get(op.orderingKey) ?? 0) + 1);
  const starts = keys.map((key) => JSON.stringify(withStarts(rate, before.get(key) ?? [], now, counts.get(key) ?? 0)));
  await tx.query(
    `INSERT INTO opsd_key_starts (resource, ordering_key, starts, last_start)
     SELECT $1, k.key, k.starts::jsonb, $4 FROM unnest($2::text[], $3::text[]) AS k(key, starts)
     ON CONFLICT (resource, ordering_key) DO UPDATE SET starts = EXCLUDED.starts, last_start = EXCLUDED.last_start`,
    [resource, keys, starts, new Date(now).toISOString()],
  );
}
