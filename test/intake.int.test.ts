import assert from 'node:assert/strict';
import { request as rawRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import type { IntakeServer } from '../src/intake/intakeServer.js';
import { startTestIntake } from './support/intakeServer.js';
import { createPgDb } from '../src/store/pgDb.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { describeEachBackend } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId } from './support/helpers.js';

interface Reply {
  status: number;
  headers: Headers;
  body: { error?: { code: string; message: string }; id?: string; state?: string; results?: { status: number; error?: { code: string }; operation?: { id: string } }[] };
}

describeEachBackend('intake server (node:http)', (db) => {
  let intake: IntakeServer;
  const bodyLimit = 64 * 1024;

  before(async () => {
    const registry = await loadHandlers(undefined);
    intake = await startTestIntake(db(), registry, { bodyLimit });
  });
  after(() => intake.close());

  async function send(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Reply> {
    const response = await fetch(`${intake.url}${path}`, {
      method,
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': contentType } } : {}),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as Reply['body'] };
  }
  const submit = (body: unknown) => send('POST', '/v1/operations', body);

  function assertError(reply: Reply, status: number, code: string) {
    assert.equal(reply.status, status, JSON.stringify(reply.body));
    assert.equal(reply.body.error?.code, code);
    assert.equal(typeof reply.body.error?.message, 'string');
  }

  async function countByExternalId(externalId: string): Promise<number> {
    const { rows } = await db().query<{ n: string | number }>('SELECT count(*) AS n FROM operations WHERE external_id = $1', [externalId]);
    return Number(rows[0]?.n);
  }

  it('accepts with 202 and Location, replays with 200, refuses a different payload with 409', async () => {
    const request = { type: 'demo.echo', external_id: uniqueId('in'), payload: { a: 1, b: 2 } };
    const first = await submit(request);
    assert.equal(first.status, 202);
    assert.equal(first.body.state, 'PENDING');
    assert.equal(first.headers.get('location'), `/v1/operations/${first.body.id}`);
    assert.match(first.headers.get('content-type') ?? '', /^application\/json/);

    const again = await submit({ ...request, payload: { b: 2, a: 1 } });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.id, first.body.id);
    assertError(await submit({ ...request, payload: { a: 2 } }), 409, 'OPSD_ERR_DUPLICATE_CONFLICT');
    assert.equal(await countByExternalId(request.external_id), 1);
  });

  it('refuses bad input with the same codes as the api, and writes nothing', async () => {
    const externalId = uniqueId('bad');
    assertError(await submit({ type: 'no.such.type', external_id: externalId, payload: {} }), 422, 'OPSD_ERR_UNKNOWN_TYPE');
    assertError(await submit({ type: 'demo.sleep', external_id: externalId, payload: { ms: 'soon' } }), 422, 'OPSD_ERR_PAYLOAD_INVALID');
    assertError(await submit({ type: 'demo.echo', payload: {} }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, max_attempts: '3' }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, colour: 'red' }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit({ type: 'demo.echo', external_id: externalId, payload: {}, run_at: 'tomorrow' }), 400, 'OPSD_ERR_VALIDATION');
    assertError(await submit('{"type": "demo.echo",'), 400, 'OPSD_ERR_MALFORMED_JSON');
    assertError(await submit(''), 400, 'OPSD_ERR_MALFORMED_JSON');
    assertError(
      await submit(`{"type":"demo.echo","external_id":"${externalId}","payload":{"__proto__":{"admin":true}}}`),
      400,
      'OPSD_ERR_MALFORMED_JSON',
    );
    assertError(await send('POST', '/v1/operations', 'type=demo.echo', 'text/plain'), 415, 'OPSD_ERR_UNSUPPORTED_MEDIA_TYPE');
    const tooLarge = await submit({ type: 'demo.echo', external_id: externalId, payload: { blob: 'x'.repeat(bodyLimit) } });
    assertError(tooLarge, 413, 'OPSD_ERR_PAYLOAD_TOO_LARGE');
    assert.equal(await countByExternalId(externalId), 0, 'nothing was written');
  });

  it('refuses a body that grows past the limit without a Content-Length', async () => {
    const reply = await new Promise<{ status: number; body: Reply['body'] }>((resolve, reject) => {
      const req = rawRequest(`${intake.url}/v1/operations`, { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) as Reply['body'] }));
      });
      req.on('error', reject);
      req.write('{"type":"demo.echo","external_id":"chunked","payload":{"blob":"');
      req.end(`${'y'.repeat(bodyLimit)}"}}`);
    });
    assert.equal(reply.status, 413);
    assert.equal(reply.body.error?.code, 'OPSD_ERR_PAYLOAD_TOO_LARGE');
  });

  it('batch: one result per item, a bad item fails alone', async () => {
    const fresh = uniqueId('fresh');
    const reply = await send('POST', '/v1/operations/batch', {
      operations: [
        { type: 'demo.echo', external_id: fresh, payload: { v: 1 } },
        { type: 'demo.echo', payload: {} },
        { type: 'no.such', external_id: uniqueId(), payload: {} },
        { type: 'demo.echo', external_id: fresh, payload: { v: 1 } },
      ],
    });
    assert.equal(reply.status, 200);
    const results = reply.body.results ?? [];
    assert.deepEqual(results.map((r) => r.status), [202, 400, 422, 200]);
    assert.deepEqual(results.map((r) => r.error?.code ?? null), [null, 'OPSD_ERR_VALIDATION', 'OPSD_ERR_UNKNOWN_TYPE', null]);
    assert.equal(results[0]?.operation?.id, results[3]?.operation?.id);
    assertError(await send('POST', '/v1/operations/batch', { operations: [] }), 400, 'OPSD_ERR_VALIDATION');
  });

  it('serves submission and health only', async () => {
    assert.deepEqual((await send('GET', '/health/live')).body, { status: 'live' });
    assert.deepEqual((await send('GET', '/health/ready')).body, { status: 'ready' });
    assertError(await send('GET', '/v1/operations/00000000-0000-4000-8000-000000000000'), 404, 'OPSD_ERR_ROUTE_NOT_FOUND');
    const listing = await send('GET', '/v1/operations');
    assertError(listing, 405, 'OPSD_ERR_METHOD_NOT_ALLOWED');
    assert.equal(listing.headers.get('allow'), 'POST');
    assertError(await send('POST', '/v1/operations/00000000-0000-4000-8000-000000000000/cancel', {}), 404, 'OPSD_ERR_ROUTE_NOT_FOUND');
  });
});

describe('api and intake when the store is unreachable', () => {
  it('answer 503 with Retry-After and OPSD_ERR_UNAVAILABLE, and are not ready', async () => {
    // A real driver against a port nothing listens on: every query fails to connect.
    const db = createPgDb({ connectionString: 'postgres://postgres@127.0.0.1:1/none', max: 1 });
    const registry = await loadHandlers(undefined);
    const intake = await startTestIntake(db, registry, { bodyLimit: 1024 * 1024 });
    const app = buildApp({ db, registry, dispatcher: createInProcessDispatcher(null), logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    try {
      const body = { type: 'demo.echo', external_id: uniqueId('down'), payload: {} };
      const viaIntake = await fetch(`${intake.url}/v1/operations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const viaApi = await app.inject({ method: 'POST', url: '/v1/operations', payload: body });
      for (const [status, retryAfter, reply] of [
        [viaIntake.status, viaIntake.headers.get('retry-after'), (await viaIntake.json()) as { error: { code: string } }],
        [viaApi.statusCode, viaApi.headers['retry-after'], viaApi.json<{ error: { code: string } }>()],
      ] as const) {
        assert.equal(status, 503);
        assert.equal(retryAfter, '5');
        assert.equal(reply.error.code, 'OPSD_ERR_UNAVAILABLE');
      }
      assert.equal((await fetch(`${intake.url}/health/ready`)).status, 503);
      assert.equal((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 503);
    } finally {
      await app.close();
      await intake.close();
      await db.close();
    }
  });
});
