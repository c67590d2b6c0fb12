import type { Queryable } from './db.js';

/**
 * Holders of PROCESSING leases other than `self`. Embedded, where the data folder is locked to one
 * process, every one of them is a process that ran on this folder before and is gone.
 */
export async function findOtherLeaseHolders(db: Queryable, self: string): Promise<string[]> {
  const { rows } = await db.query<{ lease_owner: string }>(
    `SELECT DISTINCT lease_owner FROM operations WHERE state = 'PROCESSING' AND lease_owner IS NOT NULL AND lease_owner <> $1`,
    [self],
  );
  return rows.map((row) => row.lease_owner);
}
