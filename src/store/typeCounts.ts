import type { Queryable } from './db.js';

/** Outcomes counted per type in 10-second buckets (see migrations/004). */
export const COUNT_KINDS = ['completed', 'rejected', 'failed', 'retried', 'deferred'] as const;
export type CountKind = (typeof COUNT_KINDS)[number];
export type Counts = Record<CountKind, number>;

export const BUCKET_MS = 10_000;

/** The bucket an instant falls in. */
export function bucketOf(at: number): number {
  return Math.floor(at / BUCKET_MS) * BUCKET_MS;
}

/** Adds a worker's counts, by type and bucket, to what the store has. */
export async function addTypeCounts(db: Queryable, worker: string, rows: readonly { type: string; bucket: number; counts: Counts }[]): Promise<void> {
  if (rows.length === 0) return;
  const column = (kind: CountKind) => rows.map((r) => r.counts[kind]);
  await db.query(
    `INSERT INTO opsd_type_counts (type, bucket, worker, completed, rejected, failed, retried, deferred)
     SELECT t, b, $3, c, r, f, rt, d
     FROM unnest($1::text[], $2::timestamptz[], $4::int[], $5::int[], $6::int[], $7::int[], $8::int[]) AS x(t, b, c, r, f, rt, d)
     ON CONFLICT (type, bucket, worker) DO UPDATE SET
       completed = opsd_type_counts.completed + EXCLUDED.completed,
       rejected = opsd_type_counts.rejected + EXCLUDED.rejected,
       failed = opsd_type_counts.failed + EXCLUDED.failed,
       retried = opsd_type_counts.retried + EXCLUDED.retried,
       deferred = opsd_type_counts.deferred + EXCLUDED.deferred`,
    [
      rows.map((r) => r.type),
      rows.map((r) => new Date(r.bucket).toISOString()),
      worker,
      column('completed'),
      column('rejected'),
      column('failed'),
      column('retried'),
      column('deferred'),
    ],
  );
}

/** Per type, the counts of every bucket from `since` on. */
export async function readTypeCounts(db: Queryable, since: number): Promise<Map<string, { bucket: number; counts: Counts }[]>> {
  const { rows } = await db.query<{ type: string; bucket: Date } & Counts>(
    `SELECT type, bucket, sum(completed)::int AS completed, sum(rejected)::int AS rejected, sum(failed)::int AS failed,
            sum(retried)::int AS retried, sum(deferred)::int AS deferred
     FROM opsd_type_counts WHERE bucket >= $1 GROUP BY type, bucket`,
    [new Date(bucketOf(since)).toISOString()],
  );
  const byType = new Map<string, { bucket: number; counts: Counts }[]>();
  for (const row of rows) {
    const list = byType.get(row.type) ?? [];
    list.push({ bucket: row.bucket.getTime(), counts: { completed: row.completed, rejected: row.rejected, failed: row.failed, retried: row.retried, deferred: row.deferred } });
    byType.set(row.type, list);
  }
  return byType;
}

/** Forgets buckets older than `before`, per-key starts too old to limit anything, and destinations idle since then. */
export async function pruneProtectionState(db: Queryable, before: Date): Promise<number> {
  const counts = await db.query('DELETE FROM opsd_type_counts WHERE bucket < $1', [before.toISOString()]);
  const keys = await db.query('DELETE FROM opsd_key_starts WHERE last_start < $1', [before.toISOString()]);
  // A destination's state (its name holds '@'), once idle with its breaker closed, says nothing a fresh one would not.
  const destinations = await db.query(
    `DELETE FROM opsd_resources WHERE name LIKE '%@%' AND updated_at < $1 AND coalesce(state->'breaker'->>'phase', 'closed') = 'closed'`,
    [before.toISOString()],
  );
  return counts.rowCount + keys.rowCount + destinations.rowCount;
}
