/** Whoever holds this session-level advisory lock runs the cluster-wide duties. */
export const LEADER_LOCK_KEY = 7_424_002;

/**
 * First key of the liveness locks: a worker holds `pg_advisory_lock(namespace, hashtext(id))` on a
 * session of its own for as long as it lives, so the leader can tell a dead lease holder (lock
 * released with its session) from a slow one without waiting for the lease to run out.
 */
export const LIVENESS_LOCK_NAMESPACE = 7_424_201;
