import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { alwaysHealthy, createInProcessDispatcher, type Dispatcher } from '../src/dispatch/dispatcher.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { Worker } from '../src/worker/worker.js';
import { acceptMany } from './support/acceptMany.js';
import { describeEachBackend } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId, waitFor } from './support/helpers.js';

interface OperationBody {
  id: string;
  external_id: string;
  type: string;
  state: string;
  attempts: number;
  result: unknown;
  error: { code: string } | null;
}

describeEachBackend('http api', (db) => {
  let app: FastifyInstance;
  let worker: Worker;

  before(async () => {
    const registry = await loadHandlers(undefined);
    registry.register(defineOperation({ type: 'test.always-fails', maxAttempts: 1, handle: () => { throw new Error('down'); } }) as never);
    worker = new Worker({ db: db(), registry, logger: testLogger(), pollIntervalMs: 50 });
    worker.start();
    app = buildApp({ db: db(), registry, dispatcher: createInProcessDispatcher(worker), logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await worker.stop(1000);
    assert.equal(worker.stats.running, 0);
  });

  const submit = (body: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/operations', payload: body as object, headers });
  const get = (url: string) => app.inject({ method: 'GET', url });
  const settled = (id: string) =>
    waitFor(`operation ${id} terminal`, async () => {
      const body = (await get(`/v1/operations/${id}`)).json<OperationBody>();
      return ['COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED'].includes(body.state) ? body : null;
    });

  function assertError(response: { statusCode: number; json: () => unknown }, status: number, code: string) {
    assert.equal(response.statusCode, status);
    const body = response.json() as { error: { code: string; message: string } };
    assert.equal(body.error.code, code);
    assert.equal(typeof body.error.message, 'string');
  }

  it('accepts with 202 and Location, then completes with events received → started → completed', async () => {
    const response = await submit({ type: 'demo.echo', external_id: uniqueId('op'), payload: { amount: 100 } });
    assert.equal(response.statusCode, 202);
    const body = response.json<OperationBody & { created_at: string; updated_at: string }>();
    assert.equal(response.headers.location, `/v1/operations/${body.id}`);
    assert.equal(body.state, 'PENDING');
    assert.equal(body.attempts, 0);
    assert.ok(body.created_at && body.updated_at);

    const done = await settled(body.id);
    assert.equal(done.state, 'COMPLETED');
    assert.deepEqual(done.result, { amount: 100 });
    const events = (await get(`/v1/operations/${body.id}/events`)).json<{ events: { seq: number; type: string }[] }>().events;
    assert.deepEqual(events.map((e) => e.type), ['received', 'started', 'completed']);
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
  });

  it('replays an identical submission with 200 and Idempotent-Replayed; a different one is 409', async () => {
    const request = { type: 'demo.echo', external_id: uniqueId('op'), payload: { a: 1, b: 2 } };
    const first = await submit(request);
    const again = await submit({ ...request, payload: { b: 2, a: 1 } });
    assert.equal(again.statusCode, 200);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.headers.location, first.headers.location);
    assert.equal(again.json<OperationBody>().id, first.json<OperationBody>().id);
    assertError(await submit({ ...request, payload: { a: 2 } }), 409, 'OPSD_ERR_DUPLICATE_CONFLICT');
    assertError(await submit({ ...request, type: 'demo.sleep', payload: { ms: 1 } }), 409, 'OPSD_ERR_DUPLICATE_CONFLICT');
  });

  it('keeps a priority, and a resubmission with another one is an idempotency mismatch', async () => {
    const request = { type: 'demo.echo', external_id: uniqueId('op'), payload: null, priority: 7 };
    const first = await submit(request);
    assert.equal(first.statusCode, 202);
    assert.equal(first.json<OperationBody & { priority: number }>().priority, 7);
    assert.equal((await submit(request)).statusCode, 200);
    const mismatch = await submit({ ...request, priority: 0 });
    assertError(mismatch, 409, 'OPSD_ERR_IDEMPOTENCY_MISMATCH');
    assert.deepEqual((mismatch.json() as { error: { details: { fields: string[] } } }).error.details.fields, ['priority']);
  });

  it('admin routes: pause and resume a type, refuse unknown types and resources with a code', async () => {
    const post = (url: string) => app.inject({ method: 'POST', url });
    const paused = await post('/v1/admin/types/demo.echo/pause');
    assert.equal(paused.statusCode, 200);
    assert.deepEqual(paused.json(), { type: 'demo.echo', paused: true });
    const stats = (await get('/v1/admin/stats')).json<{ types: { type: string; paused: boolean }[] }>();
    assert.equal(stats.types.find((t) => t.type === 'demo.echo')?.paused, true);
    assert.deepEqual((await post('/v1/admin/types/demo.echo/resume')).json(), { type: 'demo.echo', paused: false });
    assertError(await post('/v1/admin/types/no.such.type/pause'), 422, 'OPSD_ERR_UNKNOWN_TYPE');
    assertError(await post('/v1/admin/resources/no-such-resource/pause'), 404, 'OPSD_ERR_UNKNOWN_RESOURCE');
    assertError(await post(`/v1/admin/types/${'a'.repeat(129)}/pause`), 414, 'OPSD_ERR_URI_TOO_LONG');
    assertError(await post('/v1/admin/types/a%00b/pause'), 400, 'OPSD_ERR_UNSTORABLE_TEXT');
    assert.deepEqual((await get('/v1/admin/resources')).json(), { resources: [] });
  });

  it('resuming a type wakes its due heads, however many heads of other types come first', async () => {
    const resumed = uniqueId('resumed');
    const registry = new HandlerRegistry().register(defineOperation({ type: resumed, handle: async () => null }) as never);
    const woken: string[] = [];
    const dispatcher: Dispatcher = {
      kind: 'in-process',
      async dispatch(targets) {
        woken.push(...targets.map((t) => t.id));
      },
      health: alwaysHealthy,
      async close() {},
    };
    const admin = buildApp({ db: db(), registry, dispatcher, logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    await admin.ready();
    try {
      // Heads of a type nobody here runs, ahead in claim order: more than a wake-up takes at once.
      const other = uniqueId('other');
      await acceptMany(db(), 1_100, () => ({ type: other, orderingKey: uniqueId('key'), priority: 10 }));
      const [waiting] = await acceptMany(db(), 1, () => ({ type: resumed, orderingKey: uniqueId('key') }));
      assert.equal((await admin.inject({ method: 'POST', url: `/v1/admin/types/${resumed}/pause` })).statusCode, 200);
      assert.equal((await admin.inject({ method: 'POST', url: `/v1/admin/types/${resumed}/resume` })).statusCode, 200);
      assert.deepEqual(woken, [waiting]);
    } finally {
      await admin.close();
    }
  });

  it('50 concurrent identical HTTP submissions make one operation', async () => {
    const request = { type: 'demo.echo', external_id: uniqueId('op'), payload: { n: 50 } };
    const responses = await Promise.all(Array.from({ length: 50 }, () => submit(request)));
    assert.deepEqual(
      responses.map((r) => r.statusCode).sort(),
      [...Array(49).fill(200), 202].sort(),
    );
    assert.equal(new Set(responses.map((r) => r.json<OperationBody>().id)).size, 1);
    const list = (await get(`/v1/operations?external_id=${request.external_id}`)).json<{ operations: unknown[] }>();
    assert.equal(list.operations.length, 1);
    const id = responses[0]!.json<OperationBody>().id;
    await settled(id);
    const events = (await get(`/v1/operations/${id}/events`)).json<{ events: { type: string }[] }>().events;
    assert.equal(events.filter((e) => e.type === 'received').length, 1);
  });

  it('refuses bad input with a 4xx and a code, and writes nothing', async () => {
    const externalId = uniqueId('bad');
    assertError(await submit({ type: 'no.such.type', external_id: externalId, payload: {} }), 422, 'OPSD_ERR_UNKNOWN_TYPE');
    assertError(await submit({ type: 'demo.sleep', external_id: externalId, payload: { ms: 'soon' } }), 422, 'OPSD_ERR_PAYLOAD_INVALID');
    assertError(await submit({ type: 'demo.echo', payload: {} }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: 42, payload: {} }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, max_attempts: '3' }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, max_attempts: 0 }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, colour: 'red' }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, run_at: 'tomorrow' }), 400, 'OPSD_ERR_VALIDATION');
    assertError(
      await app.inject({ method: 'POST', url: '/v1/operations', payload: '{"type": "demo.echo",', headers: { 'content-type': 'application/json' } }),
      400,
      'OPSD_ERR_MALFORMED_JSON',
    );
    assertError(
      await app.inject({ method: 'POST', url: '/v1/operations', payload: 'type=demo.echo', headers: { 'content-type': 'text/plain' } }),
      415,
      'OPSD_ERR_UNSUPPORTED_MEDIA_TYPE',
    );
    assertError(
      await submit({ type: 'demo.echo', external_id: externalId, payload: { blob: 'x'.repeat(1024 * 1024) } }),
      413,
      'OPSD_ERR_PAYLOAD_TOO_LARGE',
    );
    const list = (await get(`/v1/operations?external_id=${externalId}`)).json<{ operations: unknown[] }>();
    assert.equal(list.operations.length, 0, 'nothing was written');
  });

  it('answers 404 with a code for unknown operations and routes', async () => {
    assertError(await get('/v1/operations/00000000-0000-4000-8000-000000000000'), 404, 'OPSD_ERR_NOT_FOUND');
    assertError(await get('/v1/operations/not-a-uuid'), 404, 'OPSD_ERR_NOT_FOUND');
    assertError(await get('/v1/operations/00000000-0000-4000-8000-000000000000/events'), 404, 'OPSD_ERR_NOT_FOUND');
    assertError(await get('/v1/nothing-here'), 404, 'OPSD_ERR_ROUTE_NOT_FOUND');
  });

  it('lists with filters and keyset pagination', async () => {
    const ids: string[] = [];
    const prefix = uniqueId('list');
    for (let i = 0; i < 5; i += 1) {
      const response = await submit({ type: 'demo.echo', external_id: `${prefix}-${i}`, payload: { i }, ordering_key: prefix });
      ids.push(response.json<OperationBody>().id);
    }
    for (const id of ids) await settled(id);
    const seen: string[] = [];
    let url = `/v1/operations?type=demo.echo&state=COMPLETED&limit=2`;
    for (;;) {
      const page = (await get(url)).json<{ operations: OperationBody[]; next_cursor: string | null }>();
      seen.push(...page.operations.map((o) => o.id));
      if (!page.next_cursor) break;
      url = `/v1/operations?type=demo.echo&state=COMPLETED&limit=2&cursor=${page.next_cursor}`;
    }
    const ours = seen.filter((id) => ids.includes(id));
    assert.deepEqual(ours, [...ids].reverse(), 'newest first, each exactly once');
    assertError(await get('/v1/operations?cursor=garbage'), 400, 'OPSD_ERR_INVALID_CURSOR');
    assertError(await get('/v1/operations?state=DONE'), 400, 'OPSD_ERR_VALIDATION');
    assertError(await get('/v1/operations?limit=0'), 400, 'OPSD_ERR_VALIDATION');
  });

  it('cancels a PENDING operation (202) and refuses to cancel it twice (409)', async () => {
    const runAt = new Date(Date.now() + 3_600_000).toISOString();
    const { id } = (await submit({ type: 'demo.echo', external_id: uniqueId('later'), payload: {}, run_at: runAt })).json<OperationBody>();
    const cancelled = await app.inject({ method: 'POST', url: `/v1/operations/${id}/cancel` });
    assert.equal(cancelled.statusCode, 202);
    assert.equal(cancelled.headers.location, `/v1/operations/${id}`);
    assert.equal(cancelled.json<OperationBody>().state, 'CANCELLED');
    assertError(await app.inject({ method: 'POST', url: `/v1/operations/${id}/cancel` }), 409, 'OPSD_ERR_INVALID_STATE');
    assertError(await app.inject({ method: 'POST', url: `/v1/operations/${id}/retry` }), 409, 'OPSD_ERR_INVALID_STATE');
    assertError(await app.inject({ method: 'POST', url: '/v1/operations/00000000-0000-4000-8000-000000000000/cancel' }), 404, 'OPSD_ERR_NOT_FOUND');
  });

  it('re-drives a FAILED operation to PENDING with retry', async () => {
    const { id } = (await submit({ type: 'test.always-fails', external_id: uniqueId('fail'), payload: {} })).json<OperationBody>();
    const failed = await settled(id);
    assert.equal(failed.state, 'FAILED');
    assert.equal(failed.error?.code, 'OPSD_HANDLER_ERROR');
    const retried = await app.inject({ method: 'POST', url: `/v1/operations/${id}/retry` });
    assert.equal(retried.statusCode, 202);
    assert.equal(retried.json<OperationBody>().attempts, 0);
    assert.equal((await settled(id)).state, 'FAILED');
    const events = (await get(`/v1/operations/${id}/events`)).json<{ events: { type: string }[] }>().events;
    assert.deepEqual(events.map((e) => e.type), ['received', 'started', 'failed', 'redriven', 'started', 'failed']);
  });

  it('batch: one result per item, each with its own status; a bad item fails alone', async () => {
    const taken = uniqueId('taken');
    await submit({ type: 'demo.echo', external_id: taken, payload: { v: 1 } });
    const fresh = uniqueId('fresh');
    const response = await app.inject({
      method: 'POST',
      url: '/v1/operations/batch',
      payload: {
        operations: [
          { type: 'demo.echo', external_id: fresh, payload: { v: 1 } },
          { type: 'demo.echo', payload: {} },
          { type: 'no.such', external_id: uniqueId(), payload: {} },
          { type: 'demo.echo', external_id: taken, payload: { v: 2 } },
          { type: 'demo.echo', external_id: taken, payload: { v: 1 } },
          { type: 'demo.echo', external_id: fresh, payload: { v: 1 } },
        ],
      },
    });
    assert.equal(response.statusCode, 200);
    const results = response.json<{ results: { status: number; error?: { code: string }; operation?: OperationBody }[] }>().results;
    assert.deepEqual(results.map((r) => r.status), [202, 400, 422, 409, 200, 200]);
    assert.deepEqual(results.map((r) => r.error?.code ?? null), [null, 'OPSD_ERR_VALIDATION', 'OPSD_ERR_UNKNOWN_TYPE', 'OPSD_ERR_DUPLICATE_CONFLICT', null, null]);
    assert.equal(results[0]!.operation!.id, results[5]!.operation!.id);
    await settled(results[0]!.operation!.id);

    const tooMany = { operations: Array.from({ length: 1001 }, (_, i) => ({ type: 'demo.echo', external_id: `x${i}`, payload: {} })) };
    assertError(await app.inject({ method: 'POST', url: '/v1/operations/batch', payload: tooMany }), 400, 'OPSD_ERR_VALIDATION');
  });

  it('health: live always, ready when the store answers', async () => {
    assert.equal((await get('/health/live')).statusCode, 200);
    const ready = await get('/health/ready');
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json(), { status: 'ready' });
  });
});
