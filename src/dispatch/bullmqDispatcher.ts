import { Queue } from 'bullmq';
import type { DispatchTarget } from '../store/findClaimableHeads.js';
import type { DispatchHealth, Dispatcher } from './dispatcher.js';
import { raceTimeout, withTimeout } from '../lib/withTimeout.js';
import { closeQuietly } from './closeQuietly.js';
import { batchJobId, jobId, queueName } from './queueNames.js';

/**
 * The data a job carries: the operations it announces (for whoever reads the queue). A job is a
 * wake-up; what runs is decided by a claim in PostgreSQL.
 */
export interface OperationJob {
  operationIds: string[];
}

/** Most operations one wake-up job names. */
const MAX_IDS_PER_JOB = 500;

export interface BullmqDispatcherOptions {
  redisUrl: string;
  prefix: string;
  /** Longest wait for Redis to take a dispatch, in ms; past it the dispatch fails (the operation is safe in PostgreSQL). Default 1000. */
  timeoutMs?: number;
  now?: () => Date;
}

/**
 * Connection options for a redis:// URL. `blocking`: a BullMQ worker's connection, whose commands
 * must wait for a reconnect rather than fail (BullMQ requires it). Anything else fails a command
 * after one reconnect attempt instead of queueing it in memory while Redis is away.
 */
export function redisConnection(url: string, use: 'blocking' | 'commands' = 'blocking') {
  const parsed = new URL(url);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    maxRetriesPerRequest: use === 'blocking' ? null : 1,
    connectTimeout: 2000,
  };
}

/** A dispatch that Redis did not take in time. */
export class DispatchTimeoutError extends Error {
  readonly code = 'OPSD_DISPATCH_TIMEOUT';
}

/** How long after a failed dispatch health stays `degraded` unless one succeeds. */
const DEGRADED_FOR_MS = 10_000;

/**
 * Dispatch through BullMQ: on the queue of each type, one wake-up job per dispatched batch of due
 * operations, and one per operation due later, delayed until its `run_at`. Job ids are derived
 * from the operations and their versions, so dispatching the same thing again while its job waits
 * is a no-op. Finished jobs are removed at once, failed ones too, so an id is free again whatever
 * happened to its job. Every dispatch is bounded by `timeoutMs`: a caller never waits on Redis.
 */
export function createBullmqDispatcher(options: BullmqDispatcherOptions): Dispatcher & { queue(type: string): Queue } {
  const now = options.now ?? (() => new Date());
  const timeoutMs = options.timeoutMs ?? 1000;
  const connection = redisConnection(options.redisUrl, 'commands');
  const queues = new Map<string, Queue<OperationJob>>();
  let lastFailure: { at: number; reason: string } | null = null;
  const queue = (type: string) => {
    let found = queues.get(type);
    if (!found) {
      found = new Queue<OperationJob>(queueName(type), {
        connection,
        prefix: options.prefix,
        defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
      });
      found.on('error', () => {});
      queues.set(type, found);
    }
    return found;
  };

  const enqueue = async (operations: readonly DispatchTarget[], cause: string | undefined) => {
    const at = now().getTime();
    const jobsByType = new Map<string, { name: string; data: OperationJob; opts: { jobId: string; delay: number } }[]>();
    const add = (type: string, job: { name: string; data: OperationJob; opts: { jobId: string; delay: number } }) => {
      const jobs = jobsByType.get(type);
      if (jobs) jobs.push(job);
      else jobsByType.set(type, [job]);
    };
    const dueByType = new Map<string, DispatchTarget[]>();
    for (const op of operations) {
      const delay = Math.max(0, Date.parse(op.runAt) - at);
      if (delay > 0) {
        // A wake-up of its own at run_at.
        add(op.type, { name: 'run', data: { operationIds: [op.id] }, opts: { jobId: jobId(op.id, op.version, cause), delay } });
        continue;
      }
      const due = dueByType.get(op.type);
      if (due) due.push(op);
      else dueByType.set(op.type, [op]);
    }
    // Operations due now: one wake-up per type and batch, so a batch costs Redis one job.
    for (const [type, due] of dueByType) {
      for (let i = 0; i < due.length; i += MAX_IDS_PER_JOB) {
        const chunk = due.slice(i, i + MAX_IDS_PER_JOB);
        add(type, { name: 'run', data: { operationIds: chunk.map((op) => op.id) }, opts: { jobId: batchJobId(chunk, cause), delay: 0 } });
      }
    }
    await Promise.all([...jobsByType].map(([type, jobs]) => queue(type).addBulk(jobs)));
  };

  return {
    kind: 'bullmq',
    queue,
    async dispatch(operations, cause) {
      if (operations.length === 0) return;
      try {
        await withTimeout(enqueue(operations, cause), timeoutMs, () => new DispatchTimeoutError(`Redis did not take the dispatch within ${timeoutMs} ms`));
        lastFailure = null;
      } catch (error) {
        lastFailure = { at: Date.now(), reason: (error as Error).message };
        throw error;
      }
    },
    health(): DispatchHealth {
      if (lastFailure && Date.now() - lastFailure.at < DEGRADED_FOR_MS) {
        return { status: 'degraded', reason: `queue dispatch failing: ${lastFailure.reason}` };
      }
      return { status: 'ok' };
    },
    async queueCounts(types) {
      const counts = await withTimeout(
        Promise.all(types.map(async (type) => [queueName(type), await queue(type).getJobCounts('waiting', 'active', 'delayed')] as const)),
        timeoutMs,
        () => new DispatchTimeoutError(`Redis did not answer the job counts within ${timeoutMs} ms`),
      );
      return Object.fromEntries(counts.map(([name, c]) => [name, { waiting: c.waiting ?? 0, active: c.active ?? 0, delayed: c.delayed ?? 0 }]));
    },
    async close() {
      // Closing waits for Redis; an unreachable one must not hold up shutdown.
      await raceTimeout(Promise.all([...queues.values()].map(closeQuietly)), 2000);
    },
  };
}
