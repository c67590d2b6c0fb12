import { Worker as QueueWorker } from 'bullmq';
import type { Logger } from 'pino';
import type { Wakeable } from './dispatcher.js';
import { redisConnection, type OperationJob } from './bullmqDispatcher.js';
import { closeQuietly } from './closeQuietly.js';
import { queueName } from './queueNames.js';

export interface JobFeederOptions {
  worker: Wakeable;
  types: readonly string[];
  redisUrl: string;
  prefix: string;
  logger: Logger;
}

/**
 * Jobs a consumer takes at once. A job only wakes the worker, so it ends at once; a few in flight
 * keep Redis round trips from adding up when many arrive together.
 */
const JOBS_IN_FLIGHT = 8;

/**
 * Feeds a worker from BullMQ: one queue consumer per operation type it handles. A job is a
 * wake-up: the worker claims due work from PostgreSQL in batches, in acceptance order, as in every
 * mode, so a job that names operations already taken, duplicated or replayed runs nothing twice,
 * and many jobs arriving together cost one claim. A job never fails: PostgreSQL still holds the
 * operation, the worker polls, and the reconciler wakes it again.
 */
export function startJobFeeder(options: JobFeederOptions): { close(): Promise<void> } {
  const connection = redisConnection(options.redisUrl);
  const consumers = options.types.map((type) => {
    const consumer = new QueueWorker<OperationJob>(
      queueName(type),
      async () => {
        options.worker.notify();
        return 'woken';
      },
      { connection, prefix: options.prefix, concurrency: JOBS_IN_FLIGHT },
    );
    consumer.on('error', (error) => options.logger.warn({ err: error, queue: queueName(type) }, 'queue consumer error'));
    return consumer;
  });
  return {
    async close() {
      await Promise.all(consumers.map(closeQuietly));
    },
  };
}
