import { Worker as QueueWorker } from 'bullmq';
import type { Logger } from 'pino';
import { Semaphore } from '../lib/semaphore.js';
import type { Worker } from '../worker/worker.js';
import { redisConnection, type OperationJob } from './bullmqDispatcher.js';
import { closeQuietly } from './closeQuietly.js';
import { queueName } from './queueNames.js';

export interface JobFeederOptions {
  worker: Worker;
  types: readonly string[];
  redisUrl: string;
  prefix: string;
  logger: Logger;
  /** All types together. */
  concurrency: number;
  /** Per type, where set. */
  typeConcurrency: Readonly<Record<string, number>>;
}

/**
 * Feeds a worker from BullMQ: one queue consumer per operation type with that type's concurrency,
 * all sharing the worker's global limit. A job never fails: whatever happens, PostgreSQL still
 * holds the operation and the reconciler wakes it again, so a failed job would only pin its id.
 */
export function startJobFeeder(options: JobFeederOptions): { close(): Promise<void> } {
  const connection = redisConnection(options.redisUrl);
  const global = new Semaphore(options.concurrency);
  const consumers = options.types.map((type) => {
    const consumer = new QueueWorker<OperationJob>(
      queueName(type),
      async (job) => {
        const release = await global.acquire();
        try {
          const ran = await options.worker.runJob(job.data.operationId, type);
          return ran ? 'ran' : 'skipped';
        } catch (error) {
          options.logger.warn({ err: error, operation_id: job.data.operationId }, 'job could not run; the reconciler will retry');
          return 'error';
        } finally {
          release();
        }
      },
      {
        connection,
        prefix: options.prefix,
        concurrency: Math.min(options.concurrency, options.typeConcurrency[type] ?? options.concurrency),
      },
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
