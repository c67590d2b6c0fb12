import { createHash } from 'node:crypto';

/** One BullMQ queue per operation type, so a worker's concurrency per type is its concurrency on that queue. */
export function queueName(type: string): string {
  return `ops.${type}`;
}

/** Deterministic: the same operation in the same state always gets the same job id, so re-enqueueing is a no-op. */
export function jobId(operationId: string, version: number, cause?: string): string {
  return cause ? `${operationId}_${version}_${cause}` : `${operationId}_${version}`;
}

/** The job id of a wake-up for several operations: one operation's own id, or a digest of all of them and their versions. */
export function batchJobId(operations: readonly { id: string; version: number }[], cause?: string): string {
  const [only] = operations;
  if (operations.length === 1 && only) return jobId(only.id, only.version, cause);
  const digest = createHash('sha256');
  for (const op of operations) digest.update(`${op.id}_${op.version};`);
  const id = `batch_${digest.digest('base64url')}`;
  return cause ? `${id}_${cause}` : id;
}
