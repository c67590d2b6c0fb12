import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { compileErrors, validate } from '@readme/openapi-parser';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../src/api/app.js';
import { resolveConfig } from '../src/config.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import { SECRET_PATHS } from '../src/lib/logRedaction.js';
import { OpsdMetrics } from '../src/observe/metrics.js';
import { startObservability, type Observability } from '../src/observe/startObservability.js';
import { createPgDb } from '../src/store/pgDb.js';
import { migrate } from '../src/store/migrate.js';
import { getOperation } from '../src/store/readOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { Worker } from '../src/worker/worker.js';
import { describeEachBackend, postgresBackend } from './support/backends.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { prometheusSkip, promtoolCheckMetrics } from './support/prometheus.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { startTcpProxy, throughProxy } from './support/tcpProxy.js';

/** The value of one series in a scrape, 0 when it is absent (a counter that never moved). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = /\{(.*)\}/.exec(line)?.[1] ?? '';
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) return Number(line.split(' ').at(-1));
  }
  return 0;
}

/** Log lines written to memory, parsed. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info', redact: [...SECRET_PATHS] }, stream), lines };
}

describeEachBackend('observability', (db, backend) => {
  let app: FastifyInstance;
  let worker: Worker;
  let observability: Observability;
  const captured = capturedLogger();
  const types = { ok: uniqueId('obs.ok'), flaky: uniqueId('obs.flaky'), broken: uniqueId('obs.broken'), busy: uniqueId('obs.busy'), secret: uniqueId('obs.secret') };
  let flakyCalls = 0;
  const served: string[] = [];

  before(async () => {
    const registry = await loadHandlers(undefined);
    registry.register(defineOperation({ type: types.ok, handle: () => null }) as never);
    registry.register(defineOperation({ type: types.flaky, backoff: { baseMs: 1, maxMs: 1 }, handle: () => {
      flakyCalls += 1;
      if (flakyCalls === 1) throw new Error('first time fails');
      return null;
    } }) as never);
    registry.register(defineOperation({ type: types.broken, maxAttempts: 1, handle: () => { throw new Error('always'); } }) as never);
    // Blocks the event loop, as a handler doing CPU work without yielding would.
    registry.register(defineOperation({ type: types.busy, handle: () => {
      const until = Date.now() + 400;
      while (Date.now() < until) { /* busy */ }
      return null;
    } }) as never);
    registry.register(defineOperation({ type: types.secret, sensitive: ['card.number'], handle: ({ payload, log }) => {
      log.info({ payload }, 'charging');
      return null;
    } }) as never);
    const metrics = new OpsdMetrics({ role: 'start' });
    worker = new Worker({ db: db(), registry, logger: captured.logger, pollIntervalMs: 20, observer: metrics.workerObserver() });
    worker.start();
    const dispatcher = createInProcessDispatcher(worker);
    const config = resolveConfig({ OPSD_HEALTH_EVENT_LOOP_WARN_MS: '200' });
    observability = await startObservability(metrics, config, { role: 'start', db: db(), logger: captured.logger, types: registry.types(), worker, isLeader: () => true, dispatcher });
    app = buildApp({ db: db(), registry, dispatcher, logger: captured.logger, observability });
    // Routes are added when the app gets ready: a hook added now sees every one of them.
    app.addHook('onRoute', (route) => {
      for (const method of [route.method].flat()) served.push(`${method} ${route.url.replace(/:(\w+)/g, '{$1}')}`);
    });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await worker.stop(1000);
    observability.stop();
  });

  const submit = (type: string, externalId = uniqueId(), payload: unknown = null, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/operations', payload: { type, external_id: externalId, payload } as object, headers });
  const scrape = async () => (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const ended = (id: string) => waitFor(`operation ${id} to end`, async () => ['COMPLETED', 'FAILED', 'REJECTED'].includes((await getOperation(db(), id))?.status ?? ''));

  it('counters move by exactly what a known workload did', async () => {
    const before = await scrape();
    const ok = [await submit(types.ok), await submit(types.ok)];
    const flaky = await submit(types.flaky);
    const broken = await submit(types.broken);
    const replayId = uniqueId('replay');
    const original = await submit(types.ok, replayId, { a: 1 });
    assert.equal((await submit(types.ok, replayId, { a: 1 })).statusCode, 200);
    assert.equal((await submit(types.ok, replayId, { a: 1 })).statusCode, 200);
    assert.equal((await submit(types.ok, replayId, { a: 2 })).statusCode, 409);
    for (const response of [...ok, original, flaky, broken]) await ended(response.json<{ id: string }>().id);
    const afterText = await scrape();
    const delta = (name: string, labels: Record<string, string>) => sample(afterText, name, labels) - sample(before, name, labels);
    assert.equal(delta('opsd_operations_accepted_total', { type: types.ok }), 3);
    assert.equal(delta('opsd_operations_replayed_total', { type: types.ok }), 2);
    assert.equal(delta('opsd_operations_conflicts_total', { type: types.ok }), 1);
    assert.equal(delta('opsd_operations_completed_total', { type: types.ok }), 3);
    assert.equal(delta('opsd_operations_completed_total', { type: types.flaky }), 1);
    assert.equal(delta('opsd_attempts_retried_total', { type: types.flaky }), 1);
    assert.equal(delta('opsd_attempts_started_total', { type: types.flaky }), 2);
    assert.equal(delta('opsd_operations_failed_total', { type: types.broken }), 1);
    assert.equal(delta('opsd_attempt_duration_seconds_count', { type: types.ok }), 3);
    assert.equal(delta('opsd_operation_lifetime_seconds_count', { type: types.flaky, outcome: 'completed' }), 1);
    assert.equal(delta('opsd_http_request_duration_seconds_count', { route: '/v1/operations', method: 'POST', status: '2xx' }), 7);
    assert.equal(delta('opsd_submissions_total', { type: types.ok, outcome: 'mismatch' }) + delta('opsd_submissions_total', { type: types.ok, outcome: 'conflict' }), 1);
    assert.equal(delta('opsd_http_request_duration_seconds_count', { route: '/v1/operations', method: 'POST', status: '4xx' }), 1);
    assert.ok(!/operation_id|external_id|[0-9a-f]{8}-[0-9a-f]{4}-/.test(afterText.replace(/^#.*$/gm, '')), 'no series is labelled by an operation or an external id');
  });

  it('a scrape passes promtool check metrics', { skip: prometheusSkip() }, async () => {
    assert.equal(promtoolCheckMetrics(await scrape()), '');
  });

  it('health turns degraded while the event loop is blocked past its threshold', async () => {
    const healthy = (await app.inject({ method: 'GET', url: '/health' })).json<{ status: string; checks: Record<string, { status: string }> }>();
    assert.equal(healthy.checks.store?.status, 'pass');
    const busy = await submit(types.busy);
    await ended(busy.json<{ id: string }>().id);
    const response = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(response.statusCode, 200, 'degraded still answers 200');
    const health = response.json<{ status: string; checks: Record<string, { status: string; observed_value: number; output?: string }> }>();
    assert.equal(health.status, 'degraded', JSON.stringify(health.checks));
    assert.equal(health.checks.event_loop?.status, 'warn');
    assert.ok((health.checks.event_loop?.observed_value ?? 0) >= 300, JSON.stringify(health.checks.event_loop));
    assert.equal((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 200, 'ready is about the store only');
  });

  it('honours a well-formed x-request-id, makes one otherwise, and echoes it', async () => {
    const given = await app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'req-42.abc' } });
    assert.equal(given.headers['x-request-id'], 'req-42.abc');
    const made = await app.inject({ method: 'GET', url: '/health/live' });
    assert.match(String(made.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const refused = await app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'has spaces and <tags>' } });
    assert.match(String(refused.headers['x-request-id']), /^[0-9a-f-]{36}$/, 'a malformed id is replaced, not echoed');
  });

  it('every line about an operation names it, its external id, type, attempt and worker; sensitive fields are redacted', async () => {
    const externalId = uniqueId('secret');
    const response = await submit(types.secret, externalId, { card: { number: '4242424242424242', expiry: '12/30' }, amount: 5 });
    await ended(response.json<{ id: string }>().id);
    const about = captured.lines.filter((line) => line.operation_id === response.json<{ id: string }>().id);
    assert.ok(about.length >= 2, 'the handler line and the completion line');
    for (const line of about) {
      assert.equal(line.external_id, externalId);
      assert.equal(line.type, types.secret);
      assert.equal(line.attempt, 1);
      assert.equal(typeof line.worker, 'string');
    }
    const charging = about.find((line) => line.msg === 'charging') as { payload: { card: { number: string; expiry: string } } };
    assert.equal(charging.payload.card.number, '[Redacted]');
    assert.equal(charging.payload.card.expiry, '12/30');
    assert.ok(!JSON.stringify(captured.lines).includes('4242424242424242'), 'the card number is in no line');
  });

  it(`the OpenAPI document validates and lists every route [${backend.name}]`, async () => {
    const response = await app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    const document = response.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
    assert.equal(document.openapi, '3.1.0');
    const result = await validate(structuredClone(document) as never);
    assert.ok(result.valid, result.valid ? '' : compileErrors(result));
    const documented = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
    // Every route the app serves, but HEAD (implied by GET), the document itself and its reference.
    const expected = [...new Set(served.filter((r) => !r.startsWith('HEAD ') && !r.includes(' /docs') && !r.endsWith(' /openapi.json')))];
    assert.ok(expected.length >= 17, `${expected.length} routes seen`);
    assert.deepEqual([...documented].sort(), expected.sort());
    const submitResponses = document.paths['/v1/operations']?.post as { responses: Record<string, unknown> };
    assert.ok(submitResponses.responses['202'] && submitResponses.responses['4XX'], 'answers and error bodies are described');
  });
});

describe('health when the store goes away [postgres]', { skip: postgresBackend.skip }, () => {
  it('is unhealthy with 503, and ready is 503, while the store does not answer', async () => {
    const database = await createServerDatabase(process.env.DATABASE_URL as string);
    const real = new URL(database.url);
    const proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
    const db = createPgDb({ connectionString: throughProxy(database.url, proxy.port), max: 2, connectTimeoutMs: 500 });
    await migrate(db);
    const registry = await loadHandlers(undefined);
    const logger = pino({ level: 'silent' });
    const observability = await startObservability(new OpsdMetrics({ role: 'api' }), resolveConfig({}), { role: 'api', db, logger, types: registry.types(), isLeader: () => false });
    const app = buildApp({ db, registry, dispatcher: createInProcessDispatcher(null), logger, observability });
    try {
      assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
      proxy.cut();
      const down = await app.inject({ method: 'GET', url: '/health' });
      assert.equal(down.statusCode, 503);
      assert.ok(Number(down.headers['retry-after']) > 0);
      const body = down.json<{ status: string; checks: { store: { status: string; output: string } } }>();
      assert.equal(body.status, 'unhealthy');
      assert.equal(body.checks.store.status, 'fail');
      assert.ok(body.checks.store.output.length > 0);
      assert.equal((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 503);
      assert.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200, 'live: the process answers');
      proxy.restore();
      await waitFor('healthy again', async () => (await app.inject({ method: 'GET', url: '/health' })).statusCode === 200);
    } finally {
      await app.close();
      observability.stop();
      await db.close();
      await proxy.close();
      await database.drop();
    }
  });
});
