import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import { runPeriodically } from '../src/lib/periodic.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { RejectError } from '../src/worker/handlerErrors.js';
import { createLeaseRescuer } from '../src/worker/leaseRescuer.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { Worker } from '../src/worker/worker.js';
import { describeEachBackend } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId, waitFor } from './support/helpers.js';
import { startWorker } from './support/workerHarness.js';

interface OperationBody {
  id: string;
  type: string;
  state: string;
}

describeEachBackend('promises under pressure', (db) => {
  it('a handler that runs for several leases is renewed, never rescued, and runs once', async () => {
    let runs = 0;
    const long = defineOperation({
      type: 'test.long',
      timeoutMs: 10_000,
      handle: async () => {
        runs += 1;
        await new Promise((resolve) => setTimeout(resolve, 1500));
        return 'done';
      },
    });
    const harness = startWorker(db(), [long as never], { leaseMs: 300 });
    // A rescuer running the whole time: without renewals it would take the lease away.
    const stopRescuer = runPeriodically(createLeaseRescuer({ db: db(), logger: testLogger() }), 100, testLogger());
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      assert.equal((await harness.settled(op!.id)).status, 'COMPLETED');
      assert.equal(runs, 1);
      assert.deepEqual(await harness.eventTypes(op!.id), ['received', 'started', 'completed']);
      assert.equal(harness.worker.stats.leaseLost, 0);
    } finally {
      await stopRescuer();
      await harness.worker.stop(1000);
    }
  });

  it('a worker that loses its lease aborts the handler, and its outcome is refused', async () => {
    const aborted: string[] = [];
    let attempts = 0;
    const obeys = defineOperation({
      type: 'test.obeys',
      timeoutMs: 60_000,
      handle: ({ signal }) => {
        attempts += 1;
        if (attempts > 1) return 'second attempt';
        return new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            aborted.push(String((signal.reason as { reason?: string }).reason));
            reject(signal.reason);
          }),
        );
      },
    });
    const harness = startWorker(db(), [obeys as never], { leaseMs: 300, workerId: uniqueId('w') });
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      await waitFor('the first attempt to run', () => attempts === 1);
      // The leader decides this worker is gone and rescues its lease.
      const rescuer = createLeaseRescuer({ db: db(), logger: testLogger(), ownersWithoutLiveness: async () => [harness.worker.id], ownerGoneAfterMs: 0 });
      await rescuer.runOnce();
      await waitFor('the handler to be aborted', () => aborted.length === 1);
      assert.deepEqual(aborted, ['lease_lost']);
      const done = await harness.settled(op!.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.result, 'second attempt');
      assert.deepEqual(await harness.eventTypes(op!.id), ['received', 'started', 'lease_expired', 'started', 'completed']);
      assert.equal(harness.worker.stats.leaseLost, 1);
    } finally {
      await harness.worker.stop(1000);
    }
  });
});

describeEachBackend('cancel and retry against a running worker', (db) => {
  let app: FastifyInstance;
  let worker: Worker;
  const ran = new Set<string>();

  before(async () => {
    const registry = await loadHandlers(undefined);
    registry.register(
      defineOperation({
        type: 'test.tracked',
        handle: async ({ operation, payload }) => {
          ran.add(operation.id);
          if ((payload as { reject?: boolean }).reject) throw new RejectError('NO', 'refused');
          await new Promise((resolve) => setTimeout(resolve, (payload as { ms?: number }).ms ?? 0));
          return 'ok';
        },
      }) as never,
    );
    worker = new Worker({ db: db(), registry, logger: testLogger(), pollIntervalMs: 20, concurrency: 4 });
    worker.start();
    app = buildApp({ db: db(), registry, dispatcher: createInProcessDispatcher(worker), logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await worker.stop(1000);
  });

  const submit = async (body: Record<string, unknown>) =>
    (await app.inject({ method: 'POST', url: '/v1/operations', payload: { type: 'test.tracked', external_id: uniqueId(), ...body } })).json<OperationBody>();
  const act = (id: string, verb: 'cancel' | 'retry') => app.inject({ method: 'POST', url: `/v1/operations/${id}/${verb}` });
  const state = async (id: string) => (await getOperation(db(), id))?.status;

  it('cancel of PROCESSING or COMPLETED, and retry of COMPLETED or REJECTED, are 409 and change nothing', async () => {
    const running = await submit({ payload: { ms: 1500 } });
    await waitFor('it to run', async () => (await state(running.id)) === 'PROCESSING');
    assert.equal((await act(running.id, 'cancel')).statusCode, 409);
    await waitFor('it to complete', async () => (await state(running.id)) === 'COMPLETED');
    assert.equal((await act(running.id, 'cancel')).statusCode, 409);
    assert.equal((await act(running.id, 'retry')).statusCode, 409);
    const rejected = await submit({ payload: { reject: true } });
    await waitFor('it to be rejected', async () => (await state(rejected.id)) === 'REJECTED');
    assert.equal((await act(rejected.id, 'retry')).statusCode, 409);
    assert.deepEqual((await listEvents(db(), running.id)).map((e) => e.event.type), ['received', 'started', 'completed']);
    assert.deepEqual((await listEvents(db(), rejected.id)).map((e) => e.event.type), ['received', 'started', 'rejected']);
  });

  it('cancel racing the claim: each operation is either cancelled and never run, or run and the cancel refused', async () => {
    const key = uniqueId('key');
    const ops = await Promise.all(Array.from({ length: 30 }, () => submit({ payload: { ms: 5 }, ordering_key: key })));
    const answers = await Promise.all(ops.map((op) => act(op.id, 'cancel')));
    for (const op of ops) await waitFor('a terminal state', async () => ['COMPLETED', 'CANCELLED'].includes((await state(op.id)) ?? ''));
    for (const [i, op] of ops.entries()) {
      const types = (await listEvents(db(), op.id)).map((e) => e.event.type);
      if (answers[i]!.statusCode === 202) {
        assert.deepEqual(types, ['received', 'cancelled'], 'a cancelled operation never starts');
        assert.ok(!ran.has(op.id), 'a cancelled operation never runs');
      } else {
        assert.equal(answers[i]!.statusCode, 409);
        assert.deepEqual(types, ['received', 'started', 'completed']);
      }
    }
  });

  it('list filters filter: every row returned matches type, state and limit', async () => {
    const done = await submit({ payload: { ms: 0 } });
    await waitFor('completion', async () => (await state(done.id)) === 'COMPLETED');
    await submit({ payload: { ms: 0 }, run_at: new Date(Date.now() + 3_600_000).toISOString() });
    for (const query of ['type=test.tracked', 'state=PENDING', 'state=COMPLETED&type=test.tracked', 'type=demo.echo']) {
      const page = (await app.inject({ method: 'GET', url: `/v1/operations?${query}&limit=500` })).json<{ operations: OperationBody[] }>();
      const wanted = new URLSearchParams(query);
      for (const row of page.operations) {
        if (wanted.get('type')) assert.equal(row.type, wanted.get('type'), query);
        if (wanted.get('state')) assert.equal(row.state, wanted.get('state'), query);
      }
      if (query !== 'type=demo.echo') assert.ok(page.operations.length > 0, `${query} found nothing`);
    }
    const limited = (await app.inject({ method: 'GET', url: '/v1/operations?limit=1' })).json<{ operations: OperationBody[] }>();
    assert.equal(limited.operations.length, 1);
  });
});
