import { INITIAL_RESOURCE_STATE, type ResourceState } from '../protect/resourceRules.js';
import type { Db, Queryable } from './db.js';

/**
 * The shared state of a resource, locked for the rest of the caller's transaction: every claim for
 * the resource and every change to it line up behind this row. The row is made on first use.
 *
 * `nowMs` is the store's clock once the lock is held. Starts are counted on it rather than on the
 * caller's: one clock for every process, read after any wait for the lock (or, embedded, for the
 * one session), so a start is stamped within milliseconds of its claim's commit. Stamped before
 * such a wait, starts would look older than they are, and the next window would open early.
 */
export async function lockResourceState(tx: Queryable, name: string): Promise<{ state: ResourceState; nowMs: number }> {
  await tx.query(
    `INSERT INTO opsd_resources (name, state, updated_at) VALUES ($1, $2::jsonb, now()) ON CONFLICT (name) DO NOTHING`,
    [name, JSON.stringify(INITIAL_RESOURCE_STATE)],
  );
  const { rows } = await tx.query<{ state: ResourceState; now_ms: number }>(
    `SELECT state, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms FROM opsd_resources WHERE name = $1 FOR UPDATE`,
    [name],
  );
  return { state: { ...INITIAL_RESOURCE_STATE, ...(rows[0]?.state ?? {}) }, nowMs: Math.floor(Number(rows[0]?.now_ms ?? Date.now())) };
}

/**
 * The states of several resources, locked in name order (so two claimers never wait on each other
 * in a circle), made on first use; `nowMs` as in lockResourceState, read once every lock is held.
 */
export async function lockResourceStates(tx: Queryable, names: readonly string[]): Promise<{ states: Map<string, ResourceState>; nowMs: number }> {
  const sorted = [...new Set(names)].sort();
  await tx.query(
    `INSERT INTO opsd_resources (name, state, updated_at) SELECT n, $2::jsonb, now() FROM unnest($1::text[]) AS n ON CONFLICT (name) DO NOTHING`,
    [sorted, JSON.stringify(INITIAL_RESOURCE_STATE)],
  );
  const { rows } = await tx.query<{ name: string; state: ResourceState }>('SELECT name, state FROM opsd_resources WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE', [sorted]);
  const states = new Map(rows.map((row) => [row.name, { ...INITIAL_RESOURCE_STATE, ...row.state }]));
  return { states, nowMs: await storeClockMs(tx) };
}

/** The store's clock now, in ms since the epoch. */
export async function storeClockMs(tx: Queryable): Promise<number> {
  const { rows } = await tx.query<{ now_ms: number }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms');
  return Math.floor(Number(rows[0]?.now_ms));
}

export async function writeResourceStates(tx: Queryable, states: ReadonlyMap<string, ResourceState>): Promise<void> {
  if (states.size === 0) return;
  await tx.query(
    `UPDATE opsd_resources r SET state = s.state::jsonb, updated_at = now() FROM unnest($1::text[], $2::text[]) AS s(name, state) WHERE r.name = s.name`,
    [[...states.keys()], [...states.values()].map((state) => JSON.stringify(state))],
  );
}

export async function writeResourceState(tx: Queryable, name: string, state: ResourceState): Promise<void> {
  await tx.query('UPDATE opsd_resources SET state = $2::jsonb, updated_at = now() WHERE name = $1', [name, JSON.stringify(state)]);
}

/** Applies `change` to a resource's state under its lock; returns the state written. */
export async function updateResourceState(db: Db, name: string, change: (state: ResourceState, nowMs: number) => ResourceState): Promise<ResourceState> {
  return db.transaction(async (tx) => {
    const { state: before, nowMs } = await lockResourceState(tx, name);
    const after = change(before, nowMs);
    if (after !== before) await writeResourceState(tx, name, after);
    return after;
  });
}

/** Every resource's state as last written, by name (resources never used have none). */
export async function readResourceStates(db: Queryable): Promise<Map<string, ResourceState>> {
  const { rows } = await db.query<{ name: string; state: ResourceState }>('SELECT name, state FROM opsd_resources');
  return new Map(rows.map((row) => [row.name, { ...INITIAL_RESOURCE_STATE, ...row.state }]));
}

/** PROCESSING operations of each of `types`, cluster-wide: the attempts in flight. */
export async function countInFlight(db: Queryable, types: readonly string[]): Promise<Map<string, number>> {
  if (types.length === 0) return new Map();
  const { rows } = await db.query<{ type: string; n: number }>(
    `SELECT type, count(*)::int AS n FROM operations WHERE state = 'PROCESSING' AND type = ANY($1::text[]) GROUP BY type`,
    [[...types]],
  );
  return new Map(rows.map((row) => [row.type, row.n]));
}
