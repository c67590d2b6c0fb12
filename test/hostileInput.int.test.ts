import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/api/app.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import type { IntakeServer } from '../src/intake/intakeServer.js';
import { startTestIntake } from './support/intakeServer.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { describeEachBackend } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId } from './support/helpers.js';

interface Answer {
  status: number;
  headers: Headers;
  body: {
    error?: { code: string; details?: unknown };
    id?: string;
    results?: { status: number; error?: { code: string }; operation?: { id: string } }[];
  };
}

/** A submission body as raw text, so that escapes and numbers reach the server exactly as written. */
const body = (externalId: string, extra: string) => `{"type":"demo.echo","external_id":"${externalId}",${extra}}`;
const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** Each hostile field, with the code it must be refused with. `externalId` is the id it would take. */
const HOSTILE: { name: string; text: (externalId: string) => string; code: string }[] = [
  { name: 'NUL in the payload', text: (id) => body(id, '"payload":{"note":"a\\u0000b"}'), code: 'OPSD_ERR_UNSTORABLE_TEXT' },
  { name: 'lone surrogate in a payload key', text: (id) => body(id, '"payload":{"\\udc00":1}'), code: 'OPSD_ERR_UNSTORABLE_TEXT' },
  { name: 'lone surrogate in external_id', text: (id) => `{"type":"demo.echo","external_id":"${id}\\ud800","payload":null}`, code: 'OPSD_ERR_UNSTORABLE_TEXT' },
  { name: 'run_at in year 10000', text: (id) => body(id, '"payload":null,"run_at":"+010000-01-01T00:00:00Z"'), code: 'OPSD_ERR_VALIDATION' },
  { name: 'run_at on 30 February', text: (id) => body(id, '"payload":null,"run_at":"2030-02-30T00:00:00Z"'), code: 'OPSD_ERR_VALIDATION' },
  { name: 'run_at without a zone', text: (id) => body(id, '"payload":null,"run_at":"2030-01-01T00:00:00"'), code: 'OPSD_ERR_VALIDATION' },
  { name: '20,000-deep array', text: (id) => body(id, `"payload":${deepArray(20_000)}`), code: 'OPSD_ERR_JSON_TOO_DEEP' },
  { name: 'integer past 2^53', text: (id) => body(id, '"payload":{"amount":9007199254740993}'), code: 'OPSD_ERR_UNSAFE_NUMBER' },
  { name: '30-digit integer', text: (id) => body(id, '"payload":{"amount":123456789012345678901234567890}'), code: 'OPSD_ERR_UNSAFE_NUMBER' },
  { name: '1e400', text: (id) => body(id, '"payload":{"amount":1e400}'), code: 'OPSD_ERR_UNSAFE_NUMBER' },
  { name: 'priority past 2^53', text: (id) => body(id, '"payload":null,"priority":9007199254740993'), code: 'OPSD_ERR_UNSAFE_NUMBER' },
  { name: 'priority above the range', text: (id) => body(id, '"payload":null,"priority":11'), code: 'OPSD_ERR_VALIDATION' },
  { name: 'priority below the range', text: (id) => body(id, '"payload":null,"priority":-11'), code: 'OPSD_ERR_VALIDATION' },
  { name: 'fractional priority', text: (id) => body(id, '"payload":null,"priority":1.5'), code: 'OPSD_ERR_VALIDATION' },
  { name: 'priority as a string', text: (id) => body(id, '"payload":null,"priority":"high"'), code: 'OPSD_ERR_VALIDATION' },
];

describeEachBackend('hostile input on every server', (db) => {
  let app: FastifyInstance;
  let intake: IntakeServer;
  const servers: { name: string; url: () => string }[] = [];

  before(async () => {
    const registry = await loadHandlers(undefined);
    app = buildApp({ db: db(), registry, dispatcher: createInProcessDispatcher(null), logger: testLogger(), pressure: LOOP_DELAY_UNCHECKED });
    await app.listen({ port: 0, host: '127.0.0.1' });
    intake = await startTestIntake(db(), registry, { bodyLimit: 1024 * 1024 });
    servers.push({ name: 'api', url: () => `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` });
    servers.push({ name: 'intake', url: () => intake.url });
  });
  after(async () => {
    await app.close();
    await intake.close();
  });

  async function post(base: string, path: string, text: string): Promise<Answer> {
    const response = await fetch(`${base}${path}`, { method: 'POST', body: text, headers: { 'content-type': 'application/json' } });
    return { status: response.status, headers: response.headers, body: (await response.json()) as Answer['body'] };
  }

  async function stored(externalIdPrefix: string): Promise<number> {
    const { rows } = await db().query<{ n: string | number }>('SELECT count(*) AS n FROM operations WHERE starts_with(external_id, $1)', [externalIdPrefix]);
    return Number(rows[0]?.n);
  }

  it('refuses each hostile value with 400 and its code, and writes nothing', async () => {
    for (const server of servers) {
      for (const hostile of HOSTILE) {
        const id = uniqueId('hostile');
        const answer = await post(server.url(), '/v1/operations', hostile.text(id));
        assert.equal(answer.status, 400, `${server.name}, ${hostile.name}: ${JSON.stringify(answer.body)}`);
        assert.equal(answer.body.error?.code, hostile.code, `${server.name}, ${hostile.name}`);
        assert.equal(await stored(id), 0, `${server.name}, ${hostile.name}: nothing written`);
      }
    }
  });

  it('a hostile submission never fails the good ones sent at the same moment', async () => {
    for (const server of servers) {
      const good = Array.from({ length: 20 }, () => uniqueId('good'));
      const answers = await Promise.all([
        ...good.map((id) => post(server.url(), '/v1/operations', body(id, '"payload":{"n":1}'))),
        ...HOSTILE.map((hostile) => post(server.url(), '/v1/operations', hostile.text(uniqueId('hostile')))),
      ]);
      answers.slice(0, good.length).forEach((answer, i) => assert.equal(answer.status, 202, `${server.name}: good submission ${i} got ${answer.status}`));
      answers.slice(good.length).forEach((answer) => assert.equal(answer.status, 400));
    }
  });

  it('in a batch, every hostile item fails alone and the others are accepted', async () => {
    for (const server of servers) {
      const first = uniqueId('batch');
      const last = uniqueId('batch');
      const hostileItems = HOSTILE.map((hostile) => hostile.text(uniqueId('hostile')));
      const text = `{"operations":[${body(first, '"payload":1')},${hostileItems.join(',')},${body(last, '"payload":2')}]}`;
      const answer = await post(server.url(), '/v1/operations/batch', text);
      assert.equal(answer.status, 200, JSON.stringify(answer.body).slice(0, 500));
      const results = answer.body.results ?? [];
      assert.equal(results.length, HOSTILE.length + 2);
      assert.equal(results[0]?.status, 202);
      assert.equal(results.at(-1)?.status, 202);
      HOSTILE.forEach((hostile, i) => {
        assert.equal(results[i + 1]?.status, 400, `${server.name}, ${hostile.name}`);
        assert.equal(results[i + 1]?.error?.code, hostile.code, `${server.name}, ${hostile.name}`);
      });
    }
  });

  it('a resubmission with the same payload but other options is refused with 409, not replayed', async () => {
    for (const server of servers) {
      const id = uniqueId('opts');
      const original = body(id, '"payload":{"a":1},"max_attempts":3,"ordering_key":"k1","run_at":"2030-01-01T00:00:00Z"');
      assert.equal((await post(server.url(), '/v1/operations', original)).status, 202);
      assert.equal((await post(server.url(), '/v1/operations', original)).status, 200, 'an identical resubmission is a replay');
      const sameInstant = body(id, '"payload":{"a":1},"max_attempts":3,"ordering_key":"k1","run_at":"2030-01-01T01:00:00+01:00"');
      assert.equal((await post(server.url(), '/v1/operations', sameInstant)).status, 200, 'the same instant in another offset is the same');
      for (const [field, changed] of [
        ['max_attempts', '"payload":{"a":1},"max_attempts":4,"ordering_key":"k1"'],
        ['ordering_key', '"payload":{"a":1},"max_attempts":3,"ordering_key":"k2"'],
        ['run_at', '"payload":{"a":1},"max_attempts":3,"ordering_key":"k1","run_at":"2031-01-01T00:00:00Z"'],
      ] as const) {
        const answer = await post(server.url(), '/v1/operations', body(id, changed));
        assert.equal(answer.status, 409, `${server.name}: ${field}`);
        assert.equal(answer.body.error?.code, 'OPSD_ERR_IDEMPOTENCY_MISMATCH');
        assert.deepEqual((answer.body.error?.details as { fields: string[] }).fields, [field]);
      }
    }
  });

  it('query and path values the store cannot take are refused with 400, not sent to it', async () => {
    const base = servers[0]!.url();
    for (const path of ['/v1/operations?external_id=%00', '/v1/operations?type=a%00', '/v1/operations/%00']) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 400, path);
      const answer = (await response.json()) as Answer['body'];
      assert.match(answer.error?.code ?? '', /^OPSD_ERR_/, path);
    }
  });
});
