import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPgDb } from '../src/store/pgDb.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { RejectError, RetryError } from '../src/worker/handlerErrors.js';
import { MAX_RETRY_DELAY_MS } from '../src/worker/runAttempt.js';
import { describeEachBackend, postgresBackend } from './support/backends.js';
import { concurrencyProbe, gate, uniqueId, waitFor } from './support/helpers.js';
import { startTcpProxy, throughProxy } from './support/tcpProxy.js';
import { startWorker } from './support/workerHarness.js';

/** Handler runs as [start, end] intervals per operation id, to check overlap and counts. */
function runLog() {
  const runs: { id: string; start: number; end: number }[] = [];
  return {
    runs,
    count: (id: string) => runs.filter((r) => r.id === id).length,
    async track<T>(id: string, body: () => Promise<T>): Promise<T> {
      const run = { id, start: performance.now(), end: Number.POSITIVE_INFINITY };
      runs.push(run);
      try {
        return await body();
      } finally {
        run.end = performance.now();
      }
    },
  };
}

describeEachBackend('attempt safety', (db) => {
  it('an outcome the store cannot take as given never fails the outcomes that share its batch', async () => {
    const finish = gate();
    const log = runLog();
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    const bad = defineOperation({
      type: 'test.bad-details',
      handle: ({ operation }) =>
        log.track(operation.id, async () => {
          await finish.opened;
          throw new RejectError('UPSTREAM_SAID_NO', 'nul \u0000 and lone \uD800', {
            body: 'a\u0000b',
            lone: '\uDC00x',
            big: 2n ** 70n,
            circular,
          } as never);
        }),
    });
    const farFuture = defineOperation({
      type: 'test.far-retry',
      handle: ({ operation }) =>
        log.track(operation.id, async () => {
          await finish.opened;
          throw new RetryError('come back in year 300000', { retryAfterMs: 1e16 });
        }),
    });
    const good = defineOperation({
      type: 'test.good',
      handle: ({ operation }) =>
        log.track(operation.id, async () => {
          await finish.opened;
          return { ok: true };
        }),
    });
    const harness = startWorker(db(), [bad as never, farFuture as never, good as never]);
    try {
      const [badOp] = await harness.submit({ externalId: uniqueId(), payload: null, type: harness.types[0] });
      const [farOp] = await harness.submit({ externalId: uniqueId(), payload: null, type: harness.types[1] });
      const goods = await harness.submit(
        Array.from({ length: 4 }, () => ({ externalId: uniqueId(), payload: null, type: harness.types[2] })),
      );
      await waitFor('all six attempts running', () => harness.worker.stats.running === 6);
      finish.open();

      for (const op of goods) assert.equal((await harness.settled(op.id)).status, 'COMPLETED');
      const rejected = await harness.settled(badOp!.id);
      assert.equal(rejected.status, 'REJECTED');
      assert.deepEqual(rejected.lastError, {
        code: 'UPSTREAM_SAID_NO',
        message: 'nul \uFFFD and lone \uFFFD',
        details: { body: 'a\uFFFDb', lone: '\uFFFDx', big: (2n ** 70n).toString(), circular: { name: 'loop', self: '[Circular]' } },
      });
      const far = await waitFor('the far retry to be scheduled', async () => {
        const op = await getOperation(db(), farOp!.id);
        return op?.status === 'PENDING' && op.attempts === 1 ? op : null;
      });
      const delay = Date.parse(far.runAt) - Date.parse(far.updatedAt);
      assert.ok(delay <= MAX_RETRY_DELAY_MS && delay > MAX_RETRY_DELAY_MS - 60_000, `retry delay clamped, got ${delay} ms`);
      for (const op of [badOp!, ...goods]) assert.equal(log.count(op.id), 1, `${op.id} ran once`);
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('a handler that returned something that is not JSON is completed with a normalized result, never run again', async () => {
    const log = runLog();
    const odd = defineOperation({
      type: 'test.odd-result',
      handle: ({ operation }) =>
        log.track(operation.id, async () => ({ count: 10n, callback: () => 1, when: new Date(0), list: [undefined, 1n] })),
    });
    const harness = startWorker(db(), [odd as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      const done = await harness.settled(op!.id);
      assert.equal(done.status, 'COMPLETED');
      assert.deepEqual(done.result, { count: '10', when: '1970-01-01T00:00:00.000Z', list: [null, '1'] });
      assert.equal(log.count(op!.id), 1);
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('anything thrown, even a value without a prototype, is recorded as a failed attempt at once', async () => {
    const weird = defineOperation({
      type: 'test.throws-weird',
      maxAttempts: 2,
      backoff: { baseMs: 60_000 },
      handle: () => {
        throw Object.assign(Object.create(null) as object, { reason: 'no prototype' });
      },
    });
    const badRetry = defineOperation({
      type: 'test.bad-retry-after',
      maxAttempts: 2,
      backoff: { baseMs: 60_000 },
      handle: () => {
        throw new RetryError('nonsense delay', { retryAfterMs: Number.NaN });
      },
    });
    // A lease far longer than the test: an attempt left unrecorded would show as PROCESSING.
    const harness = startWorker(db(), [weird as never, badRetry as never], { leaseMs: 600_000 });
    try {
      const [a] = await harness.submit({ externalId: uniqueId(), payload: null, type: harness.types[0] });
      const [b] = await harness.submit({ externalId: uniqueId(), payload: null, type: harness.types[1] });
      for (const op of [a!, b!]) {
        const failed = await waitFor('the attempt to be recorded', async () => {
          const current = await getOperation(db(), op.id);
          return current?.status === 'PENDING' && current.attempts === 1 ? current : null;
        });
        assert.ok(failed.lastError);
        assert.ok(Date.parse(failed.runAt) > Date.now(), 'retry scheduled by the backoff');
      }
      assert.equal((await getOperation(db(), a!.id))?.lastError?.code, 'OPSD_HANDLER_ERROR');
      assert.match((await getOperation(db(), a!.id))?.lastError?.message ?? '', /no prototype/);
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('a timed-out handler that ignores its signal keeps the key until it stops: no overlap, and its result counts', async () => {
    const log = runLog();
    const stubborn = defineOperation({
      type: 'test.ignores-signal',
      timeoutMs: 50,
      handle: ({ operation }) => log.track(operation.id, () => sleep(400).then(() => 'done anyway')),
    });
    const harness = startWorker(db(), [stubborn as never], { concurrency: 4 });
    try {
      const key = uniqueId('key');
      const ops = await harness.submit(Array.from({ length: 3 }, () => ({ externalId: uniqueId(), orderingKey: key, payload: null })));
      for (const op of ops) {
        const done = await harness.settled(op.id);
        assert.equal(done.status, 'COMPLETED');
        assert.equal(done.result, 'done anyway');
        assert.equal(log.count(op.id), 1, 'a handler that returned is never run again');
      }
      const ordered = ops.map((op) => log.runs.find((r) => r.id === op.id)!);
      for (let i = 1; i < ordered.length; i += 1) {
        assert.ok(ordered[i]!.start >= ordered[i - 1]!.end, `attempt ${i} started before attempt ${i - 1} stopped`);
      }
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('a retry after a timeout starts only once the timed-out handler has stopped', async () => {
    const log = runLog();
    const slowThenFine = defineOperation({
      type: 'test.slow-then-fine',
      timeoutMs: 50,
      backoff: { baseMs: 1, maxMs: 1 },
      handle: ({ operation }) =>
        log.track(operation.id, async () => {
          if (operation.attempt === 1) {
            await sleep(300);
            throw new Error('gave up late');
          }
          return 'second time';
        }),
    });
    const harness = startWorker(db(), [slowThenFine as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      assert.equal((await harness.settled(op!.id)).status, 'COMPLETED');
      const [first, second] = log.runs;
      assert.ok(first && second);
      assert.ok(second.start >= first.end, 'the retry overlapped the timed-out attempt');
      const failed = (await listEvents(db(), op!.id)).find((e) => e.event.type === 'attempt_failed');
      assert.equal((failed?.event as { error?: { code?: string } }).error?.code, 'OPSD_TIMEOUT');
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('a handler that never stops is reported wedged, keeps its slot, and its lease is left to expire', async () => {
    const wedged: string[] = [];
    const forever = defineOperation({ type: 'test.forever', timeoutMs: 50, handle: () => new Promise(() => {}) });
    const harness = startWorker(db(), [forever as never], {
      concurrency: 1,
      leaseMs: 300,
      wedgedAfterMs: 200,
      onWedged: (operation) => wedged.push(operation.id),
    });
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      await waitFor('the handler to be reported wedged', () => wedged.length === 1);
      assert.deepEqual(wedged, [op!.id]);
      assert.equal(harness.worker.freeSlots(), 0, 'the slot stays taken while the handler may still run');
      const held = await getOperation(db(), op!.id);
      assert.equal(held?.status, 'PROCESSING', 'nothing recorded for a handler that has not stopped');
      await waitFor('the lease to run out unrenewed', async () => {
        const current = await getOperation(db(), op!.id);
        return current?.leaseExpiresAt && Date.parse(current.leaseExpiresAt) < Date.now();
      });
    } finally {
      await harness.worker.stop(0);
    }
  });

  it('never runs more handlers at once than its concurrency, limited types included', async () => {
    const probe = concurrencyProbe(30);
    const plain = defineOperation({ type: 'test.plain', handle: probe.run });
    const limited = defineOperation({ type: 'test.limited', handle: probe.run });
    // Plain takes up to 4 and limited up to 3: sized apart, they would run 7 at once.
    const harness = startWorker(db(), [plain as never, limited as never], (types) => ({
      concurrency: 4,
      typeConcurrency: { [types[1] as string]: 3 },
      pollIntervalMs: 20,
    }));
    try {
      const ops = await harness.submit(
        Array.from({ length: 40 }, (_, i) => ({ externalId: uniqueId(), payload: null, type: harness.types[i % 2] })),
      );
      for (const op of ops) assert.equal((await harness.settled(op.id)).status, 'COMPLETED');
      assert.ok(probe.peak <= 4, `peak of ${probe.peak} handlers at once with a concurrency of 4`);
      assert.ok(probe.peak >= 2, 'operations ran in parallel');
    } finally {
      await harness.worker.stop(1000);
    }
  });
});

// A server connection to cut: PostgreSQL only (PGlite runs in the process).
describe('attempt safety through a store outage [postgres]', { skip: postgresBackend.skip }, () => {
  it('keeps retrying an outcome through a store outage longer than the lease, and runs the handler once', async (t) => {
    const base = new URL(process.env.DATABASE_URL as string);
    const proxy = await startTcpProxy({ host: base.hostname, port: Number(base.port || 5432) });
    const handle = await postgresBackend.open();
    const viaProxy = createPgDb({ connectionString: throughProxy(handle.url as string, proxy.port), max: 4 });
    t.after(async () => {
      await viaProxy.close().catch(() => {});
      await proxy.close();
      await handle.cleanup();
    });
    const finish = gate();
    const log = runLog();
    const once = defineOperation({
      type: 'test.once',
      handle: ({ operation }) =>
        log.track(operation.id, async () => {
          await finish.opened;
          return 'paid';
        }),
    });
    const harness = startWorker(viaProxy, [once as never], { leaseMs: 400 });
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      await waitFor('the attempt to run', () => log.runs.length === 1);
      proxy.cut();
      finish.open();
      // Every refused connection is a retry of the outcome or of a renewal: wait for five leases' worth.
      await waitFor('the worker to keep trying through the outage', () => proxy.refused >= 8, { timeoutMs: 30_000 });
      proxy.restore();
      const done = await waitFor('the outcome to be recorded after the outage', async () => {
        const current = await getOperation(handle.db, op!.id);
        return current?.status === 'COMPLETED' ? current : null;
      });
      assert.equal(done.result, 'paid');
      assert.equal(log.count(op!.id), 1);
    } finally {
      await harness.worker.stop(1000);
    }
  });
});
