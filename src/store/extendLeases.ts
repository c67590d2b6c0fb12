import { prepared, type Db } from './db.js';

/** A lease a worker holds: the operation and the fencing token it was given. */
export interface HeldLease {
  operationId: string;
  fencingToken: number;
}

/**
 * Renews the leases a worker still holds, in one statement. Returns the ids whose lease is gone
 * (expired and rescued, or taken over): their handlers should stop.
 * Renewal writes no event: a heartbeat is not a change of state.
 */
export async function extendLeases(db: Db, leases: readonly HeldLease[], expiresAt: Date): Promise<Set<string>> {
  if (leases.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>(
    RENEW_LEASES,
    [leases.map((l) => l.operationId), expiresAt.toISOString(), leases.map((l) => l.fencingToken)],
  );
  const renewed = new Set(rows.map((row) => row.id));
  return new Set(leases.map((l) => l.operationId).filter((id) => !renewed.has(id)));
}

const RENEW_LEASES = prepared(
  `UPDATE operations AS o SET lease_expires_at = $2
       FROM unnest($1::uuid[], $3::bigint[]) AS x(id, fencing_token)
       WHERE o.id = x.id AND o.fencing_token = x.fencing_token AND o.state = 'PROCESSING'
       RETURNING o.id`,
);
