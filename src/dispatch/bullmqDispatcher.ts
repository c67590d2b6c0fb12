import { Queue } from 'bullmq';
import type { DispatchTarget } from '../store/findClaimableHeads.js';
import type { Dispatcher } from './dispatcher.js';
import { jobId, queueName } from './queueNames.js';

/** The data a job carries: only the operation id. Everything else is read from PostgreSQL. */
export interface OperationJob {
  operationId: string;
}

export interface BullmqDispatcherOptions {
  redisUrl: string;
  prefix: string;
  now?: () => Date;
}

/** Parses a redis:// URL into the options BullMQ passes to ioredis. */
export function redisConnection(url: string) {
  const parsed = new URL(url);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    // BullMQ workers block on Redis; a command must wait for a reconnect rather than fail.
    maxRetriesPerRequest: null,
  };
}

/**
 * Dispatch through BullMQ: one job per operation version on the queue of its type, delayed until
 * `run_at`. Completed jobs are removed at once, so an id is free again after its job ran.
 */
export function createBullmqDispatcher(options: BullmqDispatcherOptions): Dispatcher & { queue(type: string): Queue } {
  const now = options.now ?? (() => new Date());
  const connection = redisConnection(options.redisUrl);
  const queues = new Map<string, Queue<OperationJob>>();
  const queue = (type: string) => {
    let found = queues.get(type);
    if (!found) {
      found = new Queue<OperationJob>(queueName(type), {
        connection,
        prefix: options.prefix,
        defaultJobOptions: { removeOnComplete: true, removeOnFail: { count: 1000 } },
      });
      found.on('error', () => {});
      queues.set(type, found);
    }
    return found;
  };

  return {
    kind: 'bullmq',
    queue,
    async dispatch(operations, cause) {
      const byType = new Map<string, DispatchTarget[]>();
      for (const op of operations) {
        const group = byType.get(op.type);
        if (group) group.push(op);
        else byType.set(op.type, [op]);
      }
      const at = now().getTime();
      await Promise.all(
        [...byType].map(([type, ops]) =>
          queue(type).addBulk(
            ops.map((op) => ({
              name: 'run',
              data: { operationId: op.id },
              opts: { jobId: jobId(op.id, op.version, cause), delay: Math.max(0, Date.parse(op.runAt) - at) },
            })),
          ),
        ),
      );
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
