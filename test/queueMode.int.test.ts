import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createBullmqDispatcher } from '../src/dispatch/bullmqDispatcher.js';
import { startJobFeeder } from '../src/dispatch/jobFeeder.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { postgresBackend, serversSkip, type TestDb } from './support/backends.js';
import { concurrencyProbe, testLogger, uniqueId, waitFor } from './support/helpers.js';
import { redisPrefix } from './support/scaleout.js';

/**
 * A worker fed by BullMQ, as `opsd worker` runs it with REDIS_URL, except that it polls once a
 * minute: queue jobs and its own finishes are the only wake-ups it gets.
 */
function queueWorker(handle: TestDb, registry: HandlerRegistry, prefix: string, options: { concurrency: number; typeConcurrency?: Record<string, number> }) {
  const redisUrl = process.env.REDIS_URL as string;
  const dispatcher = createBullmqDispatcher({ redisUrl, prefix });
  const typeConcurrency = options.typeConcurrency ?? {};
  const worker = new Worker({ db: handle.db, registry, logger: testLogger(), announceTo: dispatcher, concurrency: options.concurrency, typeConcurrency, pollIntervalMs: 60_000 });
  worker.start();
  const feeder = startJobFeeder({ worker, types: registry.types(), redisUrl, prefix, logger: testLogger() });
  return {
    worker,
    dispatcher,
    async stop() {
      await Promise.all([feeder.close(), worker.stop(1000)]);
      await dispatcher.close();
    },
  };
}

describe('queue mode across workers [postgres + redis]', { skip: serversSkip }, () => {
  let handle: TestDb;
  before(async () => {
    handle = await postgresBackend.open();
  });
  after(() => handle.cleanup());

  it('two workers keep per-key order and never overlap on a key, with retries in between', async () => {
    const type = `test.flaky-${uniqueId()}`;
    const runs: { id: string; key: string; start: number; end: number }[] = [];
    const registry = new HandlerRegistry().register(
      defineOperation({
        type,
        backoff: { baseMs: 20, maxMs: 50 },
        handle: async ({ operation }) => {
          const run = { id: operation.id, key: operation.orderingKey, start: performance.now(), end: Number.POSITIVE_INFINITY };
          runs.push(run);
          await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
          run.end = performance.now();
          // Every third operation fails its first attempt.
          if (operation.attempt === 1 && operation.externalId.endsWith('0')) throw new Error('first attempt fails');
          return operation.attempt;
        },
      }) as never,
    );
    const prefix = redisPrefix();
    const workers = [queueWorker(handle, registry, prefix, { concurrency: 4 }), queueWorker(handle, registry, prefix, { concurrency: 4 })];
    try {
      const keys = Array.from({ length: 6 }, () => uniqueId('key'));
      const items = Array.from({ length: 60 }, (_, i) => ({
        externalId: `${uniqueId('op')}-${i % 3}`,
        type,
        orderingKey: keys[i % keys.length] as string,
        payload: i,
        maxAttempts: 3,
      }));
      const accepted = (await acceptOperations(handle.db, items, new Date())).map((r) => r.operation);
      await workers[0]!.dispatcher.dispatch(accepted);
      for (const op of accepted) {
        await waitFor('every operation to complete', async () => (await getOperation(handle.db, op.id))?.status === 'COMPLETED', { timeoutMs: 60_000 });
      }
      for (const key of keys) {
        const onKey = accepted.filter((op) => op.orderingKey === key).sort((a, b) => a.seq - b.seq);
        const spans = runs.filter((r) => r.key === key).sort((a, b) => a.start - b.start);
        for (let i = 1; i < spans.length; i += 1) assert.ok(spans[i]!.start >= spans[i - 1]!.end, `two attempts overlapped on ${key}`);
        // Attempts in the order the operations were accepted: each one's last run before the next one's first.
        const order = [...new Set(spans.map((s) => s.id))];
        assert.deepEqual(order, onKey.map((op) => op.id), `order on ${key}`);
      }
      const retried = (await Promise.all(accepted.map((op) => listEvents(handle.db, op.id)))).filter((events) => events.some((e) => e.event.type === 'attempt_failed'));
      assert.ok(retried.length >= 10, 'retries happened in between');
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  });

  it('a per-type limit holds when the work comes through queue jobs', async () => {
    const type = `test.limited-${uniqueId()}`;
    const probe = concurrencyProbe(30);
    const registry = new HandlerRegistry().register(defineOperation({ type, handle: probe.run }) as never);
    const worker = queueWorker(handle, registry, redisPrefix(), { concurrency: 8, typeConcurrency: { [type]: 2 } });
    try {
      const accepted = (
        await acceptOperations(handle.db, Array.from({ length: 20 }, () => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1 })), new Date())
      ).map((r) => r.operation);
      await worker.dispatcher.dispatch(accepted);
      for (const op of accepted) await waitFor('completion', async () => (await getOperation(handle.db, op.id))?.status === 'COMPLETED');
      assert.ok(probe.peak <= 2, `peak of ${probe.peak} with a type limit of 2`);
      assert.equal(probe.peak, 2, 'the limit was reached, so it was the limit that held');
    } finally {
      await worker.stop();
    }
  });
});
