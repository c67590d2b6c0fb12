import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import type { OperationEvent } from '../src/domain/events.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { applyCommands } from '../src/store/applyCommands.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { rowToOperation, type OperationRow } from '../src/store/operationRow.js';
import { demoEcho, httpRequest } from '../src/worker/builtinOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { RejectError, RetryError } from '../src/worker/handlerErrors.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { describeEachBackend } from './support/backends.js';
import { concurrencyProbe, gate, testLogger, uniqueId, waitFor } from './support/helpers.js';
import { assertProjectionIsFold } from './support/projectionFold.js';
import { startWorker } from './support/workerHarness.js';

let upstream: Server;
let upstreamUrl: string;
let secretUrl: string;
let secret: Server;
before(async () => {
  // Loopback is refused unless allowed: this file's upstream is on 127.0.0.1, the "secret" one on 127.0.0.2.
  process.env.OPSD_HTTP_ALLOW = '127.0.0.1';
  secret = createServer((_request, response) => response.writeHead(200).end('the secret'));
  await new Promise<void>((resolve) => secret.listen(0, '127.0.0.2', resolve));
  secretUrl = `http://127.0.0.2:${(secret.address() as AddressInfo).port}/`;
  // A third party on loopback: /ok answers 200, /busy 503 with Retry-After, /missing 404.
  upstream = createServer((request, response) => {
    const status = request.url === '/ok' ? 200 : request.url === '/busy' ? 503 : 404;
    if (status === 503) response.setHeader('retry-after', '1');
    response.setHeader('content-type', 'application/json');
    response.writeHead(status).end(JSON.stringify({ path: request.url, method: request.method }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
  await new Promise<void>((resolve) => secret.close(() => resolve()));
});

describeEachBackend('worker', (db) => {
  it('a finish does not start the next operation on its key if that one changed since (cancelled); the one after it still runs', async () => {
    const release = gate();
    const blocking = defineOperation({ type: 'test.blocking', handle: async ({ payload }) => ((payload as { wait?: boolean }).wait ? release.opened.then(() => 'x') : 'y') });
    const harness = startWorker(db(), [blocking as never], { concurrency: 4, pollIntervalMs: 200 });
    try {
      const key = uniqueId('chain');
      const [x, y, z] = await harness.submit([{ wait: true }, { wait: false }, { wait: false }].map((payload) => ({ externalId: uniqueId(), payload, orderingKey: key })));
      await waitFor('x to start', async () => (await getOperation(db(), x!.id))?.status === 'PROCESSING');
      const [cancelled] = await applyCommands(db(), [{ operationId: y!.id, command: { kind: 'cancel', now: new Date().toISOString() } }]);
      assert.equal(cancelled?.ok, true);
      release.open();
      assert.equal((await harness.settled(x!.id)).status, 'COMPLETED');
      assert.equal((await harness.settled(z!.id)).status, 'COMPLETED');
      assert.deepEqual(await harness.eventTypes(y!.id), ['received', 'cancelled']);
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('the end of an operation and the start of the next on its key are one transaction', async () => {
    // A minute between polls: nothing but the finish itself can start the next one soon.
    const harness = startWorker(db(), [demoEcho as never], { concurrency: 4, pollIntervalMs: 60_000 });
    try {
      const key = uniqueId('chain');
      const ops = await harness.submit([0, 1, 2].map((i) => ({ externalId: uniqueId(), payload: { i }, orderingKey: key })));
      for (const op of ops) assert.equal((await harness.settled(op.id, 10_000)).status, 'COMPLETED');
      // Rows written by one transaction carry its id in xmin.
      const { rows } = await db().query<{ operation_id: string; type: string; tx: string }>(
        `SELECT operation_id, type, xmin::text AS tx FROM operation_events WHERE operation_id = ANY($1::uuid[]) AND type IN ('started', 'completed')`,
        [ops.map((op) => op.id)],
      );
      const tx = (id: string, type: string) => rows.find((r) => r.operation_id === id && r.type === type)?.tx;
      assert.equal(tx(ops[1]!.id, 'started'), tx(ops[0]!.id, 'completed'));
      assert.equal(tx(ops[2]!.id, 'started'), tx(ops[1]!.id, 'completed'));
      assert.notEqual(tx(ops[0]!.id, 'started'), tx(ops[0]!.id, 'completed'));
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('runs operations on one key in acceptance order without overlap, and different keys in parallel', async () => {
    // Each run as its handler saw it, on this process's monotonic clock: the runs are what the
    // guarantee is about. The events' times come from the clock of whoever stamped them (a claim
    // stamps its starts before it reaches the store), so the store's order is read from the
    // events' positions instead: a start appended after the end it waited for.
    const runs = new Map<string, { start: number; end: number }>();
    const timed = defineOperation({
      type: 'test.timed',
      handle: async ({ operation }) => {
        const start = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 5));
        runs.set(operation.id, { start, end: performance.now() });
        return null;
      },
    });
    const harness = startWorker(db(), [timed as never], { concurrency: 10 });
    try {
      const keys = Array.from({ length: 5 }, () => uniqueId('key'));
      const accepted = [];
      for (let i = 0; i < 200; i += 1) {
        const [op] = await harness.submit({ externalId: uniqueId(), payload: null, orderingKey: keys[i % 5] });
        accepted.push(op!);
      }
      for (const op of accepted) assert.equal((await harness.settled(op.id)).status, 'COMPLETED');

      const byKey = new Map<string, { seq: number; run: { start: number; end: number }; started: number; completed: number }[]>();
      for (const op of accepted) {
        const events = await listEvents(db(), op.id);
        const started = events.filter((e) => e.event.type === 'started');
        const completed = events.find((e) => e.event.type === 'completed');
        assert.equal(started.length, 1, `operation ${op.id} ran once`);
        const list = byKey.get(op.orderingKey) ?? [];
        list.push({ seq: op.seq, run: runs.get(op.id)!, started: started[0]!.position, completed: completed!.position });
        byKey.set(op.orderingKey, list);
      }
      for (const [key, list] of byKey) {
        list.sort((a, b) => a.seq - b.seq);
        for (let i = 1; i < list.length; i += 1) {
          assert.ok(list[i]!.run.start >= list[i - 1]!.run.end, `key ${key}: operation ${i} ran before ${i - 1} had returned`);
          assert.ok(list[i]!.started > list[i - 1]!.completed, `key ${key}: operation ${i} was started in the store before ${i - 1} ended`);
        }
      }
      const all = [...byKey.entries()].flatMap(([key, list]) => list.map((s) => ({ key, ...s.run })));
      const overlapAcrossKeys = all.some((a) => all.some((b) => a.key !== b.key && a.start < b.end && b.start < a.end));
      assert.ok(overlapAcrossKeys, 'operations on different keys should have run at the same time');
    } finally {
      await harness.worker.stop(1000);
    }
    assert.equal(harness.worker.stats.running, 0);
  });

  it('retries with backoff and completes when an attempt succeeds', async () => {
    const calls = new Map<string, number>();
    const flaky = defineOperation({
      type: 'test.flaky',
      backoff: { baseMs: 5, maxMs: 20 },
      handle: ({ operation }) => {
        const n = (calls.get(operation.id) ?? 0) + 1;
        calls.set(operation.id, n);
        if (n < 3) throw new Error(`boom ${n}`);
        return { n };
      },
    });
    const harness = startWorker(db(), [flaky as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null, maxAttempts: 5 });
      const done = await harness.settled(op!.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.attempts, 3);
      assert.deepEqual(done.result, { n: 3 });
      assert.deepEqual(await harness.eventTypes(op!.id), ['received', 'started', 'attempt_failed', 'started', 'attempt_failed', 'started', 'completed']);
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('fails after max_attempts, and a re-drive gives it a fresh set', async () => {
    let succeed = false;
    const broken = defineOperation({
      type: 'test.broken',
      backoff: { baseMs: 1, maxMs: 2 },
      handle: () => {
        if (!succeed) throw new Error('always');
        return 'fixed';
      },
    });
    const harness = startWorker(db(), [broken as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null, maxAttempts: 2 });
      const failed = await harness.settled(op!.id);
      assert.equal(failed.status, 'FAILED');
      assert.deepEqual(failed.lastError, { code: 'OPSD_HANDLER_ERROR', message: 'always' });
      assert.deepEqual(await harness.eventTypes(op!.id), ['received', 'started', 'attempt_failed', 'started', 'failed']);

      succeed = true;
      const [redriven] = await applyCommands(db(), [{ operationId: op!.id, command: { kind: 'redrive', now: new Date().toISOString() } }]);
      assert.equal(redriven?.ok, true);
      harness.worker.notify();
      assert.equal((await harness.settled(op!.id)).status, 'COMPLETED');
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('a rejection is final: REJECTED, no retry', async () => {
    const refuse = defineOperation({
      type: 'test.refuse',
      handle: () => {
        throw new RejectError('INSUFFICIENT_FUNDS', 'balance too low', { balance: 3 });
      },
    });
    const harness = startWorker(db(), [refuse as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null, maxAttempts: 5 });
      const done = await harness.settled(op!.id);
      assert.equal(done.status, 'REJECTED');
      assert.equal(done.attempts, 1);
      assert.deepEqual(done.lastError, { code: 'INSUFFICIENT_FUNDS', message: 'balance too low', details: { balance: 3 } });
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('aborts an attempt past its timeout and counts it as a failure', async () => {
    let sawAbort = false;
    const slow = defineOperation({
      type: 'test.slow',
      timeoutMs: 50,
      handle: ({ signal }) =>
        new Promise((_, reject) => {
          signal.addEventListener('abort', () => {
            sawAbort = true;
            reject(signal.reason);
          });
        }),
    });
    const harness = startWorker(db(), [slow as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null, maxAttempts: 1 });
      const done = await harness.settled(op!.id);
      assert.equal(done.status, 'FAILED');
      assert.equal(done.lastError?.code, 'OPSD_TIMEOUT');
      assert.ok(sawAbort, 'the handler saw its signal abort');
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('honours a RetryError retryAfterMs exactly', async () => {
    const later = defineOperation({
      type: 'test.later',
      handle: ({ operation }) => {
        if (operation.attempt === 1) throw new RetryError('come back later', { retryAfterMs: 300 });
        return 'ok';
      },
    });
    const harness = startWorker(db(), [later as never]);
    try {
      const [op] = await harness.submit({ externalId: uniqueId(), payload: null });
      assert.equal((await harness.settled(op!.id)).status, 'COMPLETED');
      const events = (await listEvents(db(), op!.id)).map((e) => e.event);
      const failed = events.find((e) => e.type === 'attempt_failed') as Extract<OperationEvent, { type: 'attempt_failed' }>;
      assert.equal(Date.parse(failed.retryAt) - Date.parse(failed.at), 300);
      const secondStart = events.filter((e) => e.type === 'started')[1]!;
      assert.ok(Date.parse(secondStart.at) >= Date.parse(failed.retryAt));
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('on stop, lets short attempts finish and releases the ones past the grace period', async () => {
    const quick = defineOperation({ type: 'test.quick', handle: async () => new Promise((r) => setTimeout(() => r('done'), 100)) });
    const stuck = defineOperation({
      type: 'test.stuck',
      timeoutMs: 600_000,
      handle: ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    });
    const harness = startWorker(db(), [quick as never, stuck as never]);
    let quickOp, stuckOp;
    try {
      [quickOp] = await harness.submit({ externalId: uniqueId(), payload: null, type: harness.types[0] });
      [stuckOp] = await harness.submit({ externalId: uniqueId(), payload: null, type: harness.types[1] });
      await waitFor('both attempts running', () => harness.worker.stats.running === 2);
    } finally {
      await harness.worker.stop(300);
    }
    assert.equal(harness.worker.stats.running, 0);
    assert.equal((await harness.settled(quickOp!.id)).status, 'COMPLETED');
    const { rows } = await db().query<OperationRow>('SELECT * FROM operations WHERE id = $1', [stuckOp!.id]);
    const released = rowToOperation(rows[0]!);
    assert.equal(released.status, 'PENDING');
    assert.equal(released.attempts, 0, 'a released attempt does not count');
    assert.deepEqual(await harness.eventTypes(stuckOp!.id), ['received', 'started', 'released']);
  });

  it('http.request refuses loopback, private, link-local and metadata destinations that are not allowed', async () => {
    const harness = startWorker(db(), [httpRequest as never]);
    try {
      const targets = [secretUrl, 'http://[::1]:9/', 'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://0.0.0.0:9/'];
      const ops = await harness.submit(targets.map((url) => ({ externalId: uniqueId(), payload: { method: 'GET', url } })));
      for (const [i, op] of ops.entries()) {
        const done = await harness.settled(op.id);
        assert.equal(done.status, 'REJECTED', targets[i]);
        assert.equal(done.lastError?.code, 'OPSD_HTTP_DESTINATION_REFUSED', targets[i]);
        assert.doesNotMatch(JSON.stringify(done), /the secret/);
      }
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('http.request: 2xx completes, 5xx retries after Retry-After, other 4xx rejects', async () => {
    const harness = startWorker(db(), [httpRequest as never]);
    try {
      const [ok, busy, missing] = await harness.submit([
        { externalId: uniqueId(), payload: { method: 'POST', url: `${upstreamUrl}/ok`, body: { a: 1 } } },
        { externalId: uniqueId(), payload: { method: 'GET', url: `${upstreamUrl}/busy` }, maxAttempts: 2 },
        { externalId: uniqueId(), payload: { method: 'GET', url: `${upstreamUrl}/missing` } },
      ]);
      const okDone = await harness.settled(ok!.id);
      assert.equal(okDone.status, 'COMPLETED');
      assert.deepEqual(okDone.result, { status: 200, body: { path: '/ok', method: 'POST' } });
      const missingDone = await harness.settled(missing!.id);
      assert.equal(missingDone.status, 'REJECTED');
      assert.equal(missingDone.lastError?.code, 'OPSD_HTTP_REJECTED');
      const busyDone = await harness.settled(busy!.id);
      assert.equal(busyDone.status, 'FAILED');
      const events = (await listEvents(db(), busy!.id)).map((e) => e.event);
      const retry = events.find((e) => e.type === 'attempt_failed') as Extract<OperationEvent, { type: 'attempt_failed' }>;
      assert.equal(Date.parse(retry.retryAt) - Date.parse(retry.at), 1000);
      // A 503 with Retry-After asks to wait: without a resource on the type, an ordinary retry.
      assert.equal(retry.error.code, 'OPSD_HTTP_THROTTLED');
    } finally {
      await harness.worker.stop(1000);
    }
  });

  it('a per-type limit caps that type below the global concurrency', async () => {
    const probe = concurrencyProbe(40);
    const type = uniqueId('test.limited');
    const registry = new HandlerRegistry().register(defineOperation({ type, handle: probe.run }) as never);
    const worker = new Worker({ db: db(), registry, logger: testLogger(), concurrency: 10, typeConcurrency: { [type]: 2 }, pollIntervalMs: 20 });
    worker.start();
    try {
      const accepted = await acceptOperations(db(), Array.from({ length: 12 }, () => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1 })), new Date());
      worker.notify();
      for (const { operation } of accepted) {
        await waitFor(`operation ${operation.id} completed`, async () => (await getOperation(db(), operation.id))?.status === 'COMPLETED');
      }
      assert.equal(probe.peak, 2, 'two at a time, never more');
    } finally {
      await worker.stop(1000);
    }
  });

  it('outcomes the store is slow to write hold no slot, but at most `concurrency` of them wait', async () => {
    // Claims go through (a session of their own); finishes (plain statements) wait at the gate.
    const writes = gate();
    const slowToRecord = { ...db(), query: async (...args: Parameters<ReturnType<typeof db>['query']>) => {
      await writes.opened;
      return db().query(...args);
    } } as ReturnType<typeof db>;
    const type = uniqueId('test.slow-record');
    const registry = new HandlerRegistry().register(defineOperation({ type, handle: () => null }) as never);
    const worker = new Worker({ db: slowToRecord, registry, logger: testLogger(), concurrency: 3, pollIntervalMs: 20 });
    const accepted = await acceptOperations(db(), Array.from({ length: 20 }, () => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1 })), new Date());
    worker.start();
    try {
      const processing = async () =>
        Number((await db().query<{ n: string | number }>(`SELECT count(*) AS n FROM operations WHERE type = $1 AND state = 'PROCESSING'`, [type])).rows[0]?.n);
      // Handlers return at once, so slots free while outcomes wait: claims go on past 3...
      await waitFor('claims past the concurrency while outcomes wait', async () => (await processing()) === 6);
      // ...and stop at twice the concurrency: 3 slots, 3 outcomes waiting.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(await processing(), 6, 'no more than concurrency outcomes wait to be written');
      writes.open();
      for (const { operation } of accepted) {
        await waitFor(`operation ${operation.id} completed`, async () => (await getOperation(db(), operation.id))?.status === 'COMPLETED');
      }
    } finally {
      writes.open();
      await worker.stop(1000);
    }
  });

  it('an attempt whose handler is gone by the time it starts gives its slot back and leaves the operation to its lease', async () => {
    const type = uniqueId('test.vanishing');
    const registry = new HandlerRegistry().register(defineOperation({ type, handle: () => null }) as never);
    const worker = new Worker({ db: db(), registry, logger: testLogger(), concurrency: 1, pollIntervalMs: 20 });
    // The registry changes under the running worker: claims still ask for the type, attempts find no handler.
    const get = registry.get.bind(registry);
    registry.get = (asked: string) => (asked === type ? undefined : get(asked));
    const [first, second] = await acceptOperations(db(), [0, 1].map(() => ({ externalId: uniqueId(), type, payload: null, maxAttempts: 1 })), new Date());
    worker.start();
    try {
      // Its one slot came back after the first: the second was claimed too.
      for (const accepted of [first, second]) {
        await waitFor(`operation ${accepted!.operation.id} claimed`, async () => (await getOperation(db(), accepted!.operation.id))?.status === 'PROCESSING');
      }
      await waitFor('no attempt left running', async () => worker.stats.running === 0);
    } finally {
      await worker.stop(1000);
    }
  });

  it('the projection equals a fold of the events, for every operation in the store', async () => {
    // A history of its own with every kind of transition, so the check never leans on other tests.
    const reject = defineOperation({ type: 'test.fold-reject', handle: () => { throw new RejectError('NO', 'no'); } });
    const flaky = defineOperation({
      type: 'test.fold-flaky',
      backoff: { baseMs: 1, maxMs: 1 },
      handle: ({ operation }) => {
        if (operation.attempt === 1) throw new Error('once');
        return 'second';
      },
    });
    const broken = defineOperation({ type: 'test.fold-broken', backoff: { baseMs: 1, maxMs: 1 }, handle: () => { throw new Error('always'); } });
    const harness = startWorker(db(), [demoEcho as never, reject as never, flaky as never, broken as never]);
    try {
      const ops = await harness.submit([
        ...Array.from({ length: 10 }, () => ({ externalId: uniqueId(), payload: { x: 1 }, type: harness.types[0] })),
        ...Array.from({ length: 5 }, () => ({ externalId: uniqueId(), payload: null, type: harness.types[1] })),
        ...Array.from({ length: 5 }, () => ({ externalId: uniqueId(), payload: null, type: harness.types[2] })),
        ...Array.from({ length: 5 }, () => ({ externalId: uniqueId(), payload: null, type: harness.types[3], maxAttempts: 2 })),
      ]);
      const [later] = await harness.submit({ externalId: uniqueId(), payload: null, runAt: new Date(Date.now() + 3_600_000).toISOString() });
      const [cancelled] = await harness.submit({ externalId: uniqueId(), payload: null, runAt: new Date(Date.now() + 3_600_000).toISOString() });
      await applyCommands(db(), [{ operationId: cancelled!.id, command: { kind: 'cancel', now: new Date().toISOString() } }]);
      for (const op of ops) await harness.settled(op.id);
      assert.equal((await getOperation(db(), later!.id))?.status, 'PENDING');
    } finally {
      await harness.worker.stop(1000);
    }
    const states = await assertProjectionIsFold(db());
    assert.ok(states.length >= 27, `expected at least this test's operations, got ${states.length}`);
    for (const state of ['COMPLETED', 'REJECTED', 'FAILED', 'PENDING', 'CANCELLED'] as const) assert.ok(states.includes(state), `no ${state} operation to fold`);
  });
});
