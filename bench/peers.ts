import { Queue, Worker as BullWorker } from 'bullmq';
import { Logger as GraphileLogger, run as runGraphileWorker, makeWorkerUtils } from 'graphile-worker';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { freshDatabase, type Sample } from './support.js';
import type { Settings } from './scenarios.js';

/**
 * The job queues a user would pick instead of opsd, draining the same no-op jobs opsd drains:
 * seeded first, then consumed by one process. Each is tuned as its own documentation recommends
 * for many short jobs (settings in docs/performance.md). The rate runs from the first handler
 * call to the moment the store reports every job done (polled every 10 ms), the same span opsd's
 * drain reads from its event log (first `started` to last `completed`).
 */
export type Peer = 'bullmq' | 'graphile-worker' | 'pg-boss';

export const PEERS: readonly Peer[] = ['bullmq', 'graphile-worker', 'pg-boss'];

/** The settings each peer runs with, as documented. */
export const PEER_SETTINGS = {
  bullmq: { concurrency: 100, removeOnComplete: true },
  'graphile-worker': { concurrency: 24, localQueueSize: 500, completeJobBatchDelay: 0, maxPoolSize: 26 },
  'pg-boss': { workers: 4, batchSize: 1000, pollingIntervalSeconds: 0.5 },
} as const;

export async function drainPeer(peer: Peer, s: Settings): Promise<Sample> {
  const values: number[] = [];
  for (let run = 0; run < s.runs; run += 1) {
    values.push(await DRAINS[peer](s.drainCount, s));
  }
  return { scenario: `drain ${s.drainCount} no-op jobs`, mode: peer, metric: 'jobs/s', unit: 'jobs/s', values };
}

const DRAINS: Record<Peer, (count: number, s: Settings) => Promise<number>> = {
  bullmq: drainBullmq,
  'graphile-worker': drainGraphileWorker,
  'pg-boss': drainPgBoss,
};

/** Resolves with the time `done()` first answers true, checked every 10 ms. */
async function whenDone(done: () => Promise<boolean>, timeoutMs = 300_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await done()) return performance.now();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('peer drain did not finish in time');
}

function rate(count: number, firstCall: number | null, end: number): number {
  if (firstCall === null) throw new Error('no job ran');
  return count / ((end - firstCall) / 1000);
}

async function drainBullmq(count: number, s: Settings): Promise<number> {
  const connection = { url: s.redisUrl as string, maxRetriesPerRequest: null };
  const prefix = `bench-peer-${Date.now()}`;
  const queue = new Queue('noop', { connection, prefix });
  const settings = PEER_SETTINGS.bullmq;
  try {
    for (let i = 0; i < count; i += 1000) {
      const chunk = Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({ name: 'noop', data: { n: i + j }, opts: { removeOnComplete: settings.removeOnComplete } }));
      await queue.addBulk(chunk);
    }
    let firstCall: number | null = null;
    let completed = 0;
    let end = 0;
    const finished = new Promise<void>((resolve) => {
      const worker = new BullWorker('noop', async () => {
        firstCall ??= performance.now();
      }, { connection, prefix, concurrency: settings.concurrency });
      worker.on('completed', () => {
        completed += 1;
        if (completed === count) {
          end = performance.now();
          void worker.close().then(() => resolve());
        }
      });
    });
    await finished;
    return rate(count, firstCall, end);
  } finally {
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

async function drainGraphileWorker(count: number, s: Settings): Promise<number> {
  const database = await freshDatabase(s.databaseUrl as string);
  const settings = PEER_SETTINGS['graphile-worker'];
  // The pool is ours, with an error listener, and ended before the database is dropped: the
  // runner's own pool could still hold idle sessions when the drop ended them, and an idle
  // session's error on a pool nobody listens to ends the process.
  const pool = new pg.Pool({ connectionString: database.url, max: settings.maxPoolSize });
  pool.on('error', () => {});
  // Every checked-out client listens too, as graphile-worker asks of a pool it is given.
  pool.on('connect', (client) => client.on('error', () => {}));
  try {
    const utils = await makeWorkerUtils({ pgPool: pool });
    await utils.migrate();
    for (let i = 0; i < count; i += 1000) {
      await utils.addJobs(Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({ identifier: 'noop', payload: { n: i + j } })));
    }
    await utils.release();
    let firstCall: number | null = null;
    const runner = await runGraphileWorker({
      pgPool: pool,
      concurrency: settings.concurrency,
      noHandleSignals: true,
      pollInterval: 1000,
      taskList: { noop: async () => void (firstCall ??= performance.now()) },
      preset: { worker: { localQueue: { size: settings.localQueueSize }, completeJobBatchDelay: settings.completeJobBatchDelay } },
      logger: silentGraphileLogger(),
    });
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const end = await whenDone(async () => (await client.query('SELECT 1 FROM graphile_worker._private_jobs LIMIT 1')).rowCount === 0);
    await client.end();
    await runner.stop();
    await runner.promise;
    return rate(count, firstCall, end);
  } finally {
    await pool.end();
    await database.drop();
  }
}

async function drainPgBoss(count: number, s: Settings): Promise<number> {
  const database = await freshDatabase(s.databaseUrl as string);
  const settings = PEER_SETTINGS['pg-boss'];
  try {
    const boss = new PgBoss({ connectionString: database.url, supervise: false, schedule: false });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue('noop');
    for (let i = 0; i < count; i += 1000) {
      await boss.insert(Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({ name: 'noop', data: { n: i + j } })));
    }
    let firstCall: number | null = null;
    for (let w = 0; w < settings.workers; w += 1) {
      await boss.work('noop', { batchSize: settings.batchSize, pollingIntervalSeconds: settings.pollingIntervalSeconds }, async () => {
        firstCall ??= performance.now();
      });
    }
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const end = await whenDone(async () => (await client.query(`SELECT 1 FROM pgboss.job WHERE name = 'noop' AND state <> 'completed' LIMIT 1`)).rowCount === 0);
    await client.end();
    await boss.stop({ graceful: false, wait: true });
    return rate(count, firstCall, end);
  } finally {
    await database.drop();
  }
}

/** graphile-worker logs a line per job at info; the benchmark would measure the terminal. */
function silentGraphileLogger(): GraphileLogger {
  return new GraphileLogger(() => () => {});
}
