import { decide } from '../domain/decide.js';
import type { OperationCommand } from '../domain/commands.js';
import { prepared, type Db, type Queryable } from './db.js';
import { IS_HEAD_OF_KEY } from './headOfKey.js';
import { rowToOperation, type OperationRow, type StoredOperation } from './operationRow.js';
import { stateAfter, writeTransitions } from './saveTransitions.js';

/** First key of the per-key claim locks (`pg_try_advisory_xact_lock(namespace, hash of the key)`). */
export const CLAIM_LOCK_NAMESPACE = 7_424_101;

export interface ClaimOptions {
  /** Most operations to claim in this batch. */
  limit: number;
  /**
   * The clock. Read twice: before the query (what is due) and after the rows are locked (the time
   * recorded on `started`), because the query may wait for a connection, and a start stamped before
   * the wait could precede the end of the operation before it on the key, which had to commit first.
   */
  now: () => Date;
  /** Identifies the worker process holding the lease. */
  leaseOwner: string;
  leaseMs: number;
  /** Only these operation types (the ones this worker has handlers and free slots for). */
  types: readonly string[];
  /**
   * Ordering keys this worker still runs a handler on, whatever the store says: an attempt whose
   * lease was rescued may still be running here, and nothing on its key may start beside it.
   */
  busyKeys?: readonly string[];
}

/** A claimed operation, and the one waiting next behind it on its key when it was claimed (if any). */
export type ClaimedOperation = StoredOperation & { next: StoredOperation | null };

/**
 * Claims due PENDING operations that are at the head of their ordering key, in acceptance order.
 *
 * Shaped this way because per-key order must hold across any number of workers:
 * - an operation is claimable only if nothing earlier on its key is still active, and nothing on
 *   its key is running (the second clause also covers an earlier operation whose insert committed late);
 * - `FOR UPDATE SKIP LOCKED` lets concurrent claimers pass over each other's rows instead of queueing,
 *   and a head that another claimer locked is skipped while the rows behind it fail the head check,
 *   so two workers never run two operations of one key at once.
 * The lease, the fencing token and the `started` event are written in the same short transaction.
 */
export async function claimOperations(db: Db, options: ClaimOptions): Promise<ClaimedOperation[]> {
  if (options.limit <= 0 || options.types.length === 0) return [];
  return db.transaction(async (tx) => {
    const candidates = await lockDueHeads(tx, options);
    if (candidates.length === 0) return [];
    const start = startCommand(options);
    const transitions = candidates.map(rowToOperation).map((before) => ({ before, events: decide(start, before) }));
    // The write checks the head again (see HEAD_WITH_KEY_LOCK) and starts only what still is one.
    const started = await writeTransitions(tx, transitions, 'heads');
    return transitions.flatMap((t) => {
      const written = started.get(t.before.id);
      return written ? [{ ...stateAfter(t), next: written.next }] : [];
    });
  });
}

/**
 * The start of an attempt leased to `leaseOwner`, stamped when it is decided: after the rows are
 * locked (see ClaimOptions.now).
 */
export function startCommand(claim: Pick<ClaimOptions, 'now' | 'leaseOwner' | 'leaseMs'>): Extract<OperationCommand, { kind: 'start' }> {
  const at = claim.now();
  return { kind: 'start', now: at.toISOString(), leaseOwner: claim.leaseOwner, leaseExpiresAt: new Date(at.getTime() + claim.leaseMs).toISOString() };
}

/** Due heads in acceptance order, any of the worker's types. */
async function lockDueHeads(tx: Queryable, options: ClaimOptions): Promise<OperationRow[]> {
  // A queue table grows in bursts faster than autovacuum analyzes it; on stale statistics the
  // planner expects a handful of PENDING rows and picks "anti-join every PENDING row, then sort".
  // Without a sort the only plan left walks operations_pending_idx in seq order and stops at
  // LIMIT: 47 ms -> 3.2 ms per claim of 100 with 10,000 PENDING (PostgreSQL 15, EXPLAIN ANALYZE).
  await tx.query('SET LOCAL enable_sort = off');
  const { rows } = await tx.query<OperationRow>(
    DUE_HEADS,
    [options.now().toISOString(), options.limit, [...options.types], [...(options.busyKeys ?? [])]],
  );
  return rows;
}

/**
 * The head check reads committed rows only: if X (earlier on a key) commits after Y, and another
 * claimer has claimed Y without committing yet, X still looks like a head. So a candidate's key is
 * locked for the rest of the claim transaction as the candidate is found (a claimer that holds it
 * is skipped, not waited for; CASE keeps the lock to rows that pass the head check), and the write
 * that starts them checks the head again: a statement that starts after the lock is held, so it sees
 * every claim on the key committed before ours. Both checks ride on statements the claim makes
 * anyway (quick 10-key drain on PostgreSQL: 468 ops/s with the lock in a statement of its own, 536-562
 * with the recheck in one, 627-678 before the lock existed).
 */
const HEAD_WITH_KEY_LOCK = `CASE WHEN ${IS_HEAD_OF_KEY} THEN pg_try_advisory_xact_lock(${CLAIM_LOCK_NAMESPACE}, hashtext(o.ordering_key)) ELSE false END`;

const DUE_HEADS = prepared(
  `SELECT o.* FROM operations o
       WHERE o.state = 'PENDING' AND o.run_at <= $1
         AND o.type = ANY($3::text[])
         AND NOT (o.ordering_key = ANY($4::text[]))
         AND ${HEAD_WITH_KEY_LOCK}
       ORDER BY o.seq
       LIMIT $2
       FOR UPDATE OF o SKIP LOCKED`,
);
