import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Queue, Worker as QueueWorker } from 'bullmq';
import { buildApp } from '../src/api/app.js';
import { createBullmqDispatcher, redisConnection } from '../src/dispatch/bullmqDispatcher.js';
import { createReconciler } from '../src/dispatch/reconciler.js';
import { closeQuietly } from '../src/dispatch/closeQuietly.js';
import { jobId, queueName } from '../src/dispatch/queueNames.js';
import { raceTimeout } from '../src/lib/withTimeout.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { getOperation } from '../src/store/readOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { postgresBackend, serversSkip, type TestDb } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId, waitFor } from './support/helpers.js';
import { redisPrefix } from './support/scaleout.js';
import { startTcpProxy } from './support/tcpProxy.js';

/** Redis through a proxy the test can freeze: connections stay open and nothing answers. */
async function frozenRedisUrl() {
  const real = new URL(process.env.REDIS_URL as string);
  const proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 6379) });
  const url = new URL(real);
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return { proxy, url: url.toString() };
}

describe('queue faults [postgres + redis]', { skip: serversSkip }, () => {
  let handle: TestDb;
  const type = `test.ran-${uniqueId()}`;
  const runs = new Map<string, number>();
  const registry = new HandlerRegistry().register(
    defineOperation({
      type,
      handle: ({ operation }) => {
        runs.set(operation.id, (runs.get(operation.id) ?? 0) + 1);
        return 'ran';
      },
    }) as never,
  );
  const accept = async (extra: { runAt?: string } = {}) => {
    const [result] = await acceptOperations(handle.db, [{ externalId: uniqueId(), type, payload: null, maxAttempts: 3, ...extra }], new Date());
    return result!.operation;
  };

  before(async () => {
    handle = await postgresBackend.open();
  });
  after(() => handle.cleanup());

  it('a job that failed does not pin its id: the same wake-up can be dispatched again', async () => {
    const prefix = redisPrefix();
    const dispatcher = createBullmqDispatcher({ redisUrl: process.env.REDIS_URL as string, prefix });
    const failing = new QueueWorker(
      queueName(type),
      async () => {
        throw new Error('consumer crashed');
      },
      { connection: redisConnection(process.env.REDIS_URL as string), prefix },
    );
    try {
      const op = await accept();
      let failures = 0;
      failing.on('failed', () => (failures += 1));
      await dispatcher.dispatch([op]);
      await waitFor('the job to fail', () => failures === 1);
      await failing.close();
      await dispatcher.dispatch([op]);
      const job = await dispatcher.queue(type).getJob(jobId(op.id, op.version));
      assert.ok(job, 'the wake-up was queued again');
      assert.equal(await job.getState(), 'waiting');
    } finally {
      await failing.close();
      await dispatcher.close();
    }
  });

  it('the reconciler queues a due operation whose commit happened but whose enqueue did not', async () => {
    const prefix = redisPrefix();
    const dispatcher = createBullmqDispatcher({ redisUrl: process.env.REDIS_URL as string, prefix });
    try {
      const op = await accept();
      const queue = dispatcher.queue(type);
      assert.equal(await queue.getWaitingCount(), 0, 'nothing was enqueued at accept');
      const reconciler = createReconciler({ db: handle.db, dispatcher, logger: testLogger(), staleMs: 0 });
      await reconciler.runOnce();
      const waiting = await queue.getWaiting();
      assert.ok(waiting.some((job) => job.data.operationIds.includes(op.id)), 'the forgotten operation was queued');
    } finally {
      await dispatcher.close();
    }
  });

  it('reconciler passes over an operation still waiting in the queue do not queue it again', async () => {
    const prefix = redisPrefix();
    const dispatcher = createBullmqDispatcher({ redisUrl: process.env.REDIS_URL as string, prefix });
    try {
      const op = await accept();
      const reconciler = createReconciler({ db: handle.db, dispatcher, logger: testLogger(), staleMs: 0 });
      await reconciler.runOnce();
      await reconciler.runOnce();
      await reconciler.runOnce();
      const waiting = (await dispatcher.queue(type).getWaiting()).filter((job) => job.data.operationIds.includes(op.id));
      assert.equal(waiting.length, 1, 'one job per operation, however many passes');
    } finally {
      await dispatcher.close();
    }
  });

  it('with Redis not answering, a submission is answered 202 and health says degraded', async (t) => {
    const { proxy, url } = await frozenRedisUrl();
    proxy.freeze();
    const dispatcher = createBullmqDispatcher({ redisUrl: url, prefix: redisPrefix(), timeoutMs: 300 });
    const app = buildApp({ db: handle.db, registry, dispatcher, logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    t.after(async () => {
      await app.close();
      await dispatcher.close();
      await proxy.close();
    });
    const reply = await raceTimeout(
      app.inject({ method: 'POST', url: '/v1/operations', payload: { type, external_id: uniqueId(), payload: null } }),
      10_000,
    );
    assert.notEqual(reply, 'timeout', 'the submission was never answered');
    assert.equal(reply !== 'timeout' && reply.statusCode, 202);
    // The answer does not wait for the wake-up; health says degraded once the wake-up has timed out.
    const ready = await waitFor('health to say degraded', async () => {
      const answer = await app.inject({ method: 'GET', url: '/health/ready' });
      return answer.json().status === 'degraded' ? answer : null;
    });
    assert.equal(ready.statusCode, 200);
    assert.match(ready.json().checks.dispatch, /within 300 ms/);
  });

  it('with Redis unreachable, a queue-mode worker still runs due work from the store within seconds', async (t) => {
    const { proxy, url } = await frozenRedisUrl();
    proxy.cut();
    const dispatcher = createBullmqDispatcher({ redisUrl: url, prefix: redisPrefix(), timeoutMs: 300 });
    const worker = new Worker({
      db: handle.db,
      registry,
      logger: testLogger(),
      announceTo: dispatcher,
      pollIntervalMs: 100,
    });
    worker.start();
    t.after(async () => {
      await worker.stop(1000);
      await dispatcher.close();
      await proxy.close();
    });
    const op = await accept();
    const done = await waitFor('the operation to complete without its job', async () => {
      const current = await getOperation(handle.db, op.id);
      return current?.status === 'COMPLETED' ? current : null;
    });
    assert.equal(done.result, 'ran');
    assert.equal(runs.get(op.id), 1);
  });

  it('queues and consumers closed while they are still connecting never crash the process', async () => {
    // BullMQ reports a set-up cut short by close() after it removed its listeners; closeQuietly catches it.
    for (let i = 0; i < 80; i += 1) {
      const prefix = redisPrefix();
      const queue = new Queue(queueName(type), { connection: redisConnection(process.env.REDIS_URL as string, 'commands'), prefix });
      queue.on('error', () => {});
      const consumer = new QueueWorker(queueName(type), async () => {}, { connection: redisConnection(process.env.REDIS_URL as string), prefix });
      consumer.on('error', () => {});
      await new Promise((resolve) => setTimeout(resolve, i % 5));
      await Promise.all([closeQuietly(queue), closeQuietly(consumer)]);
    }
    // The late reports land a few ticks after the last close; an uncaught one would fail this file.
    await new Promise((resolve) => setTimeout(resolve, 200));
  });
});
