import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import type { IntakeServer } from '../src/intake/intakeServer.js';
import { startTestIntake } from './support/intakeServer.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { pgliteBackend, type TestDb } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger } from './support/helpers.js';

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: { error?: { code: string } } | null;
  /** The server closed the connection (no answer may follow). */
  closed: boolean;
}

/**
 * Writes `chunks` to a raw socket (each after `gapMs`), and reads the first answer. Bounded: gives
 * up after `limitMs`, so a server that never answers fails the test instead of hanging it.
 */
function rawRequest(port: number, chunks: string[], { gapMs = 0, limitMs = 15_000 } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    let closed = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = () => {
      timers.forEach(clearTimeout);
      const [head = '', ...rest] = received.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const text = rest.join('\r\n\r\n');
      let body: RawAnswer['body'] = null;
      try {
        body = text ? (JSON.parse(text) as RawAnswer['body']) : null;
      } catch {
        body = null;
      }
      socket.destroy();
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body, closed });
    };
    socket.on('data', (data) => {
      received += data.toString();
      const [head, rest] = received.split('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(head ?? '')?.[1] ?? Number.NaN);
      if (rest !== undefined && Buffer.byteLength(rest) >= length) finish();
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', () => {});
    chunks.forEach((chunk, i) => timers.push(setTimeout(() => socket.writable && socket.write(chunk), i * gapMs)));
    timers.push(setTimeout(() => reject(new Error(`no answer within ${limitMs} ms: ${received}`)), limitMs));
  });
}

/**
 * Sends a body of `bytes` without reading anything until the whole body is written, then reads the
 * answer: a server that answers and closes while the body still comes in resets the connection,
 * and the reset throws away the answer the client had not read yet.
 */
async function uploadThenRead(port: number, bytes: number): Promise<{ status: number | null; error: string | null }> {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  let error: string | null = null;
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.pause();
  socket.write(`POST /v1/operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n`);
  const chunk = Buffer.alloc(64 * 1024, 'a');
  for (let sent = 0; sent < bytes && !socket.destroyed; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve).once('close', resolve));
  }
  socket.on('data', (data) => (received += data.toString()));
  socket.resume();
  await new Promise((resolve) => {
    socket.once('close', resolve);
    setTimeout(resolve, 5000);
  });
  socket.destroy();
  const status = /^HTTP\/1\.1 (\d{3})/.exec(received)?.[1];
  return { status: status ? Number(status) : null, error };
}

const get = (path: string) => [`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`];

describe('HTTP edges answer with opsd codes on every server [pglite]', () => {
  let handle: TestDb;
  let app: FastifyInstance;
  let intake: IntakeServer;
  const servers: { name: 'api' | 'intake'; port: () => number }[] = [];
  const bodyLimit = 64 * 1024;

  before(async () => {
    handle = await pgliteBackend.open();
    const registry = await loadHandlers(undefined);
    app = buildApp({ db: handle.db, registry, dispatcher: createInProcessDispatcher(null), logger: testLogger(), bodyLimit, requestTimeoutMs: 1000, pressure: LOOP_DELAY_UNCHECKED });
    await app.listen({ port: 0, host: '127.0.0.1' });
    intake = await startTestIntake(handle.db, registry, { bodyLimit, requestTimeoutMs: 1000 });
    servers.push({ name: 'api', port: () => (app.server.address() as AddressInfo).port });
    servers.push({ name: 'intake', port: () => Number(new URL(intake.url).port) });
  });
  after(async () => {
    await app.close();
    await intake.close();
    await handle.cleanup();
  });

  it('a malformed request, and headers over the limit, get a JSON body with a code', async () => {
    for (const server of servers) {
      const garbage = await rawRequest(server.port(), ['GARBAGE\r\n\r\n']);
      assert.equal(garbage.status, 400, server.name);
      assert.equal(garbage.body?.error?.code, 'OPSD_ERR_BAD_REQUEST', server.name);
      const flood = Array.from({ length: 3000 }, (_, i) => `X-${i}: 1\r\n`).join('');
      const many = await rawRequest(server.port(), [`GET /health/live HTTP/1.1\r\nHost: x\r\n${flood}\r\n`]);
      assert.equal(many.status, 431, server.name);
      assert.equal(many.body?.error?.code, 'OPSD_ERR_HEADERS_TOO_LARGE', server.name);
      const big = await rawRequest(server.port(), [`GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
      assert.equal(big.status, 431, server.name);
    }
  });

  it('an over-long id and bad percent-encoding in a path get codes of their own', async () => {
    const api = servers[0]!.port();
    const long = await rawRequest(api, get(`/v1/operations/${'a'.repeat(150)}`));
    assert.equal(long.status, 414);
    assert.equal(long.body?.error?.code, 'OPSD_ERR_URI_TOO_LONG');
    const badUrl = await rawRequest(api, get('/v1/operations/%E0%A4%A'));
    assert.equal(badUrl.status, 400);
    assert.equal(badUrl.body?.error?.code, 'OPSD_ERR_BAD_REQUEST');
  });

  it('a known path with the wrong method gets 405 and Allow', async () => {
    const api = await rawRequest(servers[0]!.port(), [`DELETE /v1/operations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
    assert.equal(api.status, 405);
    assert.equal(api.body?.error?.code, 'OPSD_ERR_METHOD_NOT_ALLOWED');
    assert.deepEqual(api.headers.allow?.split(', '), ['GET', 'HEAD', 'POST']);
    const byId = await rawRequest(servers[0]!.port(), [`PUT /v1/operations/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`]);
    assert.equal(byId.status, 405);
    const intakeAnswer = await rawRequest(servers[1]!.port(), get('/v1/operations'));
    assert.equal(intakeAnswer.status, 405);
    assert.equal(intakeAnswer.headers.allow, 'POST');
    const unknown = await rawRequest(servers[0]!.port(), get('/nowhere'));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body?.error?.code, 'OPSD_ERR_ROUTE_NOT_FOUND');
  });

  it('a body trickled slower than the request timeout is answered 408 and the connection closed', async () => {
    for (const server of servers) {
      const head = `POST /v1/operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
      const trickle = [head, ...Array.from({ length: 40 }, () => ' ')];
      const answer = await rawRequest(server.port(), trickle, { gapMs: 250 });
      assert.equal(answer.status, 408, server.name);
      assert.equal(answer.body?.error?.code, 'OPSD_ERR_REQUEST_TIMEOUT', server.name);
    }
  });

  it('a client that uploads its whole body before reading can read its 413', async () => {
    for (const server of servers) {
      for (let i = 0; i < 3; i += 1) {
        const answer = await uploadThenRead(server.port(), 4 * 1024 * 1024);
        assert.equal(answer.status, 413, `${server.name}: ${JSON.stringify(answer)}`);
      }
    }
  });

  it('a client that sends a body far over the limit can read its 413', async () => {
    const big = JSON.stringify({ type: 'demo.echo', external_id: 'x', payload: 'a'.repeat(2 * 1024 * 1024) });
    for (const server of servers) {
      for (let i = 0; i < 5; i += 1) {
        const response = await fetch(`http://127.0.0.1:${server.port()}/v1/operations`, {
          method: 'POST',
          body: big,
          headers: { 'content-type': 'application/json' },
        });
        assert.equal(response.status, 413, server.name);
        assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'OPSD_ERR_PAYLOAD_TOO_LARGE');
      }
    }
  });
});
