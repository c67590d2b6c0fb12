import assert from 'node:assert/strict';
import { it } from 'node:test';
import { defineResource } from '../src/protect/resourcePolicy.js';
import { listEvents } from '../src/store/readOperations.js';
import { readResourceStates } from '../src/store/resourceState.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { RetryError } from '../src/worker/handlerErrors.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { getOperation } from '../src/store/readOperations.js';
import { describeEachBackend } from './support/backends.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';

/** A worker whose one type goes through `resource`; the handler records when it was called. */
function resourceWorker(db: ReturnType<Parameters<Parameters<typeof describeEachBackend>[1]>[0]>, resource: ReturnType<typeof defineResource>, handle: (call: number) => unknown) {
  const type = uniqueId('test.resource');
  const calls: number[] = [];
  const registry = new HandlerRegistry()
    .register(defineOperation({ type, resource: resource.name, maxAttempts: 20, backoff: { baseMs: 1, maxMs: 1 }, handle: () => handle(calls.push(Date.now())) }) as never)
    .registerResource(resource);
  const worker = new Worker({ db, registry, logger: testLogger(), concurrency: 10, pollIntervalMs: 20 });
  worker.start();
  const submit = async (count: number, orderingKey?: string) => {
    const accepted = await acceptOperations(db, Array.from({ length: count }, () => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 20, ...(orderingKey ? { orderingKey } : {}) })), new Date());
    worker.notify();
    return accepted.map((a) => a.operation.id);
  };
  const completed = (ids: string[]) =>
    Promise.all(ids.map((id) => waitFor(`operation ${id} completed`, async () => (await getOperation(db, id))?.status === 'COMPLETED', { timeoutMs: 30_000 })));
  return { worker, calls, submit, completed };
}

/** The most calls in any window of `ms` that starts at a call. */
function busiest(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  return Math.max(0, ...sorted.map((t) => sorted.filter((u) => u >= t && u < t + ms).length));
}

describeEachBackend('protection in one worker process', (db) => {
  it('a resource rate holds in every window, on the embedded store too', async () => {
    // The rate governs starts, stamped under the resource's lock: those hold it exactly. A handler's
    // call follows its start by a commit and a turn of the event loop; on a loaded machine that lag
    // varies by more than the rate's 10% margin, so the calls are held to the rate less that lag.
    const resource = defineResource({ name: uniqueId('rated'), rate: { limit: 4, perMs: 600 } });
    const { worker, calls, submit, completed } = resourceWorker(db(), resource, () => null);
    try {
      const ids = await submit(12);
      await completed(ids);
      const starts = (await Promise.all(ids.map((id) => listEvents(db(), id))))
        .flat()
        .filter((e) => e.event.type === 'started')
        .map((e) => Date.parse(e.event.at));
      assert.equal(starts.length, 12, 'one start each');
      assert.ok(busiest(starts, 600) <= 4, `${busiest(starts, 600)} starts in 600 ms`);
      assert.equal(calls.length, 12);
      assert.ok(busiest(calls, 400) <= 4, `${busiest(calls, 400)} calls in 400 ms`);
      assert.ok(worker.protection.waits.rate > 0, 'claims waited for the rate');
    } finally {
      await worker.stop(1000);
    }
  });

  it('operations queued on one key meet the rate too: the end of one does not start the next past the limit', async () => {
    const resource = defineResource({ name: uniqueId('rated-key'), rate: { limit: 2, perMs: 600 } });
    const { worker, calls, submit, completed } = resourceWorker(db(), resource, () => null);
    try {
      const ids = await submit(6, uniqueId('one-key'));
      await completed(ids);
      const starts = (await Promise.all(ids.map((id) => listEvents(db(), id)))).flat().filter((e) => e.event.type === 'started').map((e) => Date.parse(e.event.at));
      assert.equal(starts.length, 6);
      assert.ok(busiest(starts, 600) <= 2, `${busiest(starts, 600)} starts in 600 ms on one key`);
      assert.equal(calls.length, 6);
    } finally {
      await worker.stop(1000);
    }
  });

  it('an upstream that asks to wait pauses the resource and defers the attempt without counting it', async () => {
    const resource = defineResource({ name: uniqueId('throttled') });
    const { worker, calls, submit, completed } = resourceWorker(db(), resource, (call) => {
      if (call === 1) throw new RetryError('slow down', { retryAfterMs: 400, pauseResource: true, code: 'UPSTREAM_429' });
      return null;
    });
    try {
      const [first, ...rest] = await submit(1);
      await waitFor('the throttled call', () => calls.length >= 1);
      const others = await submit(3);
      await completed([first as string, ...rest, ...others]);
      const pauseStart = calls[0] as number;
      assert.ok(calls.slice(1).every((at) => at >= pauseStart + 390), `a call ${Math.min(...calls.slice(1)) - pauseStart} ms into a 400 ms pause`);
      const events = (await listEvents(db(), first as string)).map((e) => e.event.type);
      assert.deepEqual(events, ['received', 'started', 'deferred', 'started', 'completed']);
      assert.equal((await getOperation(db(), first as string))?.attempts, 1, 'the deferred attempt does not count');
      assert.equal(worker.stats.deferred, 1);
      assert.equal(worker.protection.throttled, 1);
    } finally {
      await worker.stop(1000);
    }
  });

  it('a breaker opens after its failures, holds every start through the cool-down, then one probe closes it', async () => {
    const resource = defineResource({ name: uniqueId('fragile'), breaker: { failures: 3, windowMs: 10_000, cooldownMs: 500 } });
    let healthy = false;
    const { worker, calls, submit, completed } = resourceWorker(db(), resource, () => {
      if (!healthy) throw new Error('upstream down');
      return null;
    });
    try {
      const ids = await submit(6);
      const openedAt = await waitFor('the breaker to open', async () => {
        const state = (await readResourceStates(db())).get(resource.name);
        return state?.breaker.phase === 'open' ? (state.breaker.since as number) : null;
      });
      // Attempts already running when it opened end as they will; nothing starts after that.
      const callsAtOpen = calls.length;
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(calls.length, callsAtOpen, 'nothing reached the upstream while the breaker was open');
      healthy = true;
      await completed(ids);
      assert.ok((calls[callsAtOpen] as number) >= openedAt + 500 - 20, 'the probe came after the cool-down');
      assert.equal(worker.protection.breakerOpened, 1);
    } finally {
      await worker.stop(1000);
    }
  });
});
