/** One BullMQ queue per operation type, so a worker's concurrency per type is its concurrency on that queue. */
export function queueName(type: string): string {
  return `ops.${type}`;
}

/** Deterministic: the same operation in the same state always gets the same job id, so re-enqueueing is a no-op. */
export function jobId(operationId: string, version: number, cause?: string): string {
  return cause ? `${operationId}_${version}_${cause}` : `${operationId}_${version}`;
}
