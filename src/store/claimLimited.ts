import type { ClaimGroup } from '../protect/claimGroups.js';
import { afterStarts, allowance, keyAllowance, rateWindowMs, withStarts, type WaitReason } from '../protect/resourceRules.js';
import { claimOn, type ClaimedOperation, type ClaimOptions } from './claimOperations.js';
import type { Db, Queryable } from './db.js';
import { countInFlight, lockResourceState, writeResourceState } from './resourceState.js';

/** What a limited claim got, and when its group may start more (null: once something of it ends). */
export interface LimitedClaim {
  claimed: ClaimedOperation[];
  /** The claimed operation that is its resource's half-open probe, if one is. */
  probe: string | null;
  /** Why it started fewer than asked, if a limit did (not a lack of due work). */
  reason: WaitReason | null;
  retryAt: number | null;
}

/**
 * Claims for a group that shares something across processes: a resource (rate, slots, breaker,
 * pauses, a per-key rate) and/or a cluster-wide cap on its type. One transaction locks what the
 * group shares, counts the attempts in flight cluster-wide, asks the rules how many may start,
 * claims at most that many, and records the starts, so a start is never taken without an
 * operation to spend it on and two processes never both spend the last one. Limited resources are
 * slow by nature; these claims cost a few more round trips than the plain one.
 */
export async function claimLimited(db: Db, group: Extract<ClaimGroup, { kind: 'limited' }>, options: ClaimOptions): Promise<LimitedClaim> {
  if (options.limit <= 0) return { claimed: [], probe: null, reason: null, retryAt: null };
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
      if (free <= 0) return { claimed: [], probe: null, reason: 'concurrency', retryAt: null };
      want = Math.min(want, free);
    }
    const allowed = resource && state
      ? allowance(resource, state, { now, inFlight: group.resourceTypes.reduce((sum, t) => sum + (inFlight.get(t) ?? 0), 0), want })
      : { starts: want, probe: false, reason: null, retryAt: null };
    if (allowed.starts <= 0) return { claimed: [], probe: null, reason: allowed.reason, retryAt: allowed.retryAt };

    const keysWaiting = resource?.perKey ? await keysOverTheirRate(tx, resource.name, resource.perKey.rate, now) : [];
    const claimed = await claimOn(tx, {
      ...options,
      limit: allowed.starts,
      types: group.types,
      busyKeys: [...(options.busyKeys ?? []), ...keysWaiting],
    });
    const probe = allowed.probe && claimed[0] ? { operationId: claimed[0].id, untilMs: now + options.leaseMs } : undefined;
    if (resource && state && claimed.length > 0) {
      // Stamped as the claim ends, just before its commit: as close as the store can see to the calls it allows.
      const startedAt = await storeClock(tx);
      await writeResourceState(tx, resource.name, afterStarts(resource, state, { now: startedAt, started: claimed.length, ...(probe ? { probe } : {}) }));
      if (resource.perKey) await recordKeyStarts(tx, resource.name, resource.perKey.rate, claimed, startedAt);
    }
    return { claimed, probe: probe?.operationId ?? null, reason: claimed.length < allowed.starts ? null : allowed.reason, retryAt: allowed.retryAt };
  });
}

async function storeClock(tx: Queryable): Promise<number> {
  const { rows } = await tx.query<{ now_ms: number }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms');
  return Math.floor(Number(rows[0]?.now_ms));
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
