import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { claimOperations } from '../src/store/claimOperations.js';
import { getOperation } from '../src/store/readOperations.js';
import { rescueExpiredLeases } from '../src/store/rescueExpiredLeases.js';
import { writeProgress } from '../src/store/writeProgress.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import type { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { Worker } from '../src/worker/worker.js';
import { describeEachBackend } from './support/backends.js';
import { completeAttempts } from './support/completeAttempts.js';
import { countingStatements } from './support/countingDb.js';
import { gate, LOOP_DELAY_UNCHECKED, testLogger, uniqueId, waitFor } from './support/helpers.js';

interface Body {
  state: string;
  result: unknown;
  progress?: { value: unknown; at: string; attempt: number } | null;
}

describeEachBackend('progress', (db) => {
  const halfway = gate();
  const deep: unknown[] = [];
  let innermost = deep;
  for (let depth = 0; depth < 100; depth += 1) {
    const next: unknown[] = [];
    innermost.push(next);
    innermost = next;
  }
  let registry: HandlerRegistry;
  const definitions = [defineOperation({
    type: 'test.progress-loop',
    handle: async ({ progress }) => {
      for (let done = 1; done <= 500; done += 1) progress({ done, of: 1000 });
      for (let done = 501; done <= 520; done += 1) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        progress({ done, of: 1000 });
      }
      await halfway.opened;
      progress({ done: 1000, of: 1000 });
      return 'finished';
    },
  }), defineOperation({
    type: 'test.progress-hostile',
    handle: ({ progress }) => {
      let refused = 'nothing';
      try {
        progress('x'.repeat(5000));
      } catch (error) {
        refused = (error as Error).name;
      }
      progress({ text: 'a\u0000b\ud800c', big: 2n ** 64n, when: new Date(8.64e15 + 1), deep });
      return { refused };
    },
  })];

  let app: FastifyInstance;
  let worker: Worker;
  let progressWrites: () => number;
  before(async () => {
    registry = await loadHandlers(undefined);
    for (const definition of definitions) registry.register(definition as never);
    const counting = countingStatements(db(), (sql) => sql.includes('SET progress'));
    progressWrites = counting.count;
    worker = new Worker({ db: counting.db, registry, logger: testLogger(), pollIntervalMs: 50 });
    worker.start();
    app = buildApp({ db: db(), registry, dispatcher: createInProcessDispatcher(worker), logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    await app.ready();
  });
  after(async () => {
    halfway.open();
    await app.close();
    await worker.stop(1000);
  });

  const submit = async (type: string) => {
    const response = await app.inject({ method: 'POST', url: '/v1/operations', payload: { type, external_id: uniqueId('progress'), payload: null } });
    assert.equal(response.statusCode, 202);
    return response.json<{ id: string }>().id;
  };
  const read = async (id: string) => (await app.inject({ method: 'GET', url: `/v1/operations/${id}` })).json<Body>();

  it("shows a running attempt's latest report, writes at most once a second, and ends with the last one", async () => {
    const id = await submit('test.progress-loop');
    const running = await waitFor('the last report before the pause', async () => {
      const body = await read(id);
      return (body.progress?.value as { done: number } | undefined)?.done === 520 ? body : null;
    });
    assert.equal(running.state, 'PROCESSING');
    assert.equal(running.progress?.attempt, 1);
    assert.ok(!Number.isNaN(Date.parse(running.progress!.at)));
    halfway.open();
    const ended = await waitFor('completed', async () => {
      const body = await read(id);
      return body.state === 'COMPLETED' ? body : null;
    });
    assert.deepEqual(ended.progress?.value, { done: 1000, of: 1000 }, 'the report made just before returning is kept');
    // A write for the first report, one a second later for the last of the 20 spaced ones, one before the outcome.
    assert.ok(progressWrites() >= 2 && progressWrites() <= 3, `521 reports took ${progressWrites()} writes`);
    const events = (await app.inject({ method: 'GET', url: `/v1/operations/${id}/events` })).json<{ events: { type: string }[] }>().events;
    assert.deepEqual(events.map((e) => e.type), ['received', 'started', 'completed'], 'a report is not an event');
    const listed = (await app.inject({ method: 'GET', url: `/v1/operations?state=COMPLETED&type=test.progress-loop` })).json<{ operations: Body[] }>();
    assert.deepEqual(listed.operations[0]?.progress?.value, { done: 1000, of: 1000 });
  });

  it('keeps hostile values as storable JSON, and refuses a report past 4,096 characters to the handler', async () => {
    const id = await submit('test.progress-hostile');
    const ended = await waitFor('completed', async () => {
      const body = await read(id);
      return body.state === 'COMPLETED' ? body : null;
    });
    assert.deepEqual(ended.result, { refused: 'RangeError' });
    const value = ended.progress?.value as { text: string; big: string; when: unknown; deep: unknown[] };
    assert.equal(value.text, 'a\uFFFDb\uFFFDc');
    assert.equal(value.big, '18446744073709551616');
    assert.equal(value.when, null);
    assert.ok(JSON.stringify(value.deep).includes('[Truncated]'));
  });

  it('demo.sleep reports how long it has slept, once a second', async () => {
    const id = (await app.inject({ method: 'POST', url: '/v1/operations', payload: { type: 'demo.sleep', external_id: uniqueId('sleep'), payload: { ms: 3500 } } })).json<{ id: string }>().id;
    const running = await waitFor('a report while it sleeps', async () => {
      const body = await read(id);
      return body.state === 'PROCESSING' && body.progress ? body : null;
    });
    const { slept_ms: slept, of_ms: of } = running.progress?.value as { slept_ms: number; of_ms: number };
    assert.ok([1000, 2000, 3000].includes(slept), `slept ${slept} ms`);
    assert.equal(of, 3500);
    const ended = await waitFor('completed', async () => {
      const body = await read(id);
      return body.state === 'COMPLETED' ? body : null;
    });
    assert.deepEqual(ended.progress?.value, { slept_ms: 3000, of_ms: 3500 });
    assert.deepEqual(ended.result, { slept_ms: 3500 });
  });

  it('a report is written only by the attempt holding the lease, and only while it runs', async () => {
    const type = uniqueId('fenced');
    const [accepted] = await acceptOperations(db(), [{ externalId: uniqueId('fenced'), type, payload: null, maxAttempts: 3 }], new Date());
    const id = accepted!.operation.id;
    const claim = (owner: string) => claimOperations(db(), { limit: 1, types: [type], now: () => new Date(), leaseOwner: owner, leaseMs: 60_000 });
    const report = (fencingToken: number, value: string) => writeProgress(db(), [{ operationId: id, fencingToken, value, at: new Date().toISOString() }]);

    const [first] = await claim('first-worker');
    assert.deepEqual([...(await report(first!.fencingToken, 'first'))], [id]);
    // The first worker is gone: its lease is rescued and a second worker claims the operation.
    await rescueExpiredLeases(db(), { now: new Date(), limit: 10, goneOwners: ['first-worker'] });
    const [second] = await claim('second-worker');
    assert.equal(second!.fencingToken, first!.fencingToken + 1);

    assert.equal((await report(first!.fencingToken, 'late, from the first')).size, 0);
    assert.deepEqual((await getOperation(db(), id))?.progress?.value, 'first');
    assert.deepEqual([...(await report(second!.fencingToken, 'second'))], [id]);
    assert.deepEqual((await getOperation(db(), id))?.progress, { value: 'second', at: (await getOperation(db(), id))!.progress!.at, attempt: 2 });

    await completeAttempts(db(), [second!]);
    assert.equal((await report(second!.fencingToken, 'after the end')).size, 0);
    const ended = await getOperation(db(), id);
    assert.equal(ended?.status, 'COMPLETED');
    assert.equal(ended?.progress?.value, 'second');
  });
});
