import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Webhook } from 'standardwebhooks';
import { buildApp } from '../src/api/app.js';
import { createBodyValidator } from '../src/api/bodyValidator.js';
import { newOperationSchema } from '../src/api/schemas.js';
import { createSubmissions } from '../src/api/submissions.js';
import { createInProcessDispatcher } from '../src/dispatch/dispatcher.js';
import { startIntakeServer, type IntakeServer } from '../src/intake/intakeServer.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import type { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { loadHandlers } from '../src/worker/loadHandlers.js';
import { createWebhookReceiver } from '../src/webhooks/receiveWebhook.js';
import { githubSignature, hmacSignature, standardWebhooksSignature, stripeSignature } from '../src/webhooks/verifiers.js';
import { defineWebhookSource } from '../src/webhooks/webhookSource.js';
import type { Db } from '../src/store/db.js';
import { describeEachBackend } from './support/backends.js';
import { LOOP_DELAY_UNCHECKED, testLogger, uniqueId } from './support/helpers.js';

const GITHUB_SECRET = 'github-test-secret';
const STRIPE_SECRETS = ['whsec_stripe_old', 'whsec_stripe_new'];
const STANDARD_SECRETS = ['whsec_' + Buffer.from('standard-secret-one-32-bytes-long').toString('base64'), 'whsec_' + Buffer.from('standard-secret-two-32-bytes-long').toString('base64')];
const HMAC_SECRET = 'plain-shared-secret';

async function registryWithSources(): Promise<HandlerRegistry> {
  const registry = await loadHandlers(undefined);
  registry.register(defineOperation({ type: 'review.pull_request', handle: () => ({ reviewed: true }) }) as never);
  registry.register(defineOperation({ type: 'payment.event', handle: () => null }) as never);
  registry.registerWebhookSource(
    defineWebhookSource({
      name: 'github',
      verifier: githubSignature({ secrets: [GITHUB_SECRET] }),
      type: 'review.pull_request',
      map: (delivery) => {
        if (delivery.event !== 'pull_request') return null;
        const body = delivery.body as { repository: { full_name: string }; number: number; action: string };
        return { type: 'review.pull_request', orderingKey: `${body.repository.full_name}#${body.number}`, payload: { action: body.action, number: body.number } };
      },
    }),
  );
  registry.registerWebhookSource(defineWebhookSource({ name: 'stripe', verifier: stripeSignature({ secrets: STRIPE_SECRETS }), type: 'payment.event' }));
  registry.registerWebhookSource(defineWebhookSource({ name: 'standard', verifier: standardWebhooksSignature({ secrets: STANDARD_SECRETS }), type: 'payment.event' }));
  registry.registerWebhookSource(defineWebhookSource({ name: 'plain', verifier: hmacSignature({ secrets: [HMAC_SECRET] }), type: 'payment.event', events: ['paid'] }));
  return registry;
}

const hex = (secret: string, ...parts: (string | Buffer)[]) => {
  const mac = createHmac('sha256', secret);
  for (const p of parts) mac.update(p);
  return mac.digest('hex');
};

function githubDelivery(body: string, delivery = uniqueId('gh'), event = 'pull_request', secret = GITHUB_SECRET) {
  return { body, headers: { 'x-github-delivery': delivery, 'x-github-event': event, 'x-hub-signature-256': `sha256=${hex(secret, body)}` } };
}

function stripeDelivery(body: string, { secret = STRIPE_SECRETS[1] as string, at = Math.floor(Date.now() / 1000) } = {}) {
  return { body, headers: { 'stripe-signature': `t=${at},v1=${hex(secret, `${at}.`, body)}` } };
}

function standardDelivery(body: string, { secret = STANDARD_SECRETS[0] as string, at = new Date(), id = uniqueId('msg') } = {}) {
  const signature = new Webhook(secret).sign(id, at, body);
  return { body, headers: { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': signature } };
}

const pullRequest = (number: number, action = 'opened') => JSON.stringify({ action, number, repository: { full_name: 'acme/shop' }, pull_request: { title: 'Add cart ü' } });

interface Reply {
  status: number;
  headers: Headers;
  body: { id?: string; state?: string; ordering_key?: string; payload?: unknown; status?: string; error?: { code: string } };
}

/** The two servers that take webhooks: the api (Fastify) and the intake (node:http). */
type Server = { url: string; close(): Promise<void> };

async function startApi(db: Db, registry: HandlerRegistry, bodyLimit: number): Promise<Server> {
  const app: FastifyInstance = buildApp({ db, registry, dispatcher: createInProcessDispatcher(null), logger: testLogger(), bodyLimit, pressure: LOOP_DELAY_UNCHECKED });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
}

async function startIntake(db: Db, registry: HandlerRegistry, bodyLimit: number): Promise<Server> {
  const validator = createBodyValidator();
  const submissions = createSubmissions({ db, registry, dispatcher: createInProcessDispatcher(null), logger: testLogger(), now: () => new Date(), validateItem: validator.compile(newOperationSchema) });
  const intake: IntakeServer = await startIntakeServer({
    port: 0,
    host: '127.0.0.1',
    db,
    submissions,
    validator,
    logger: testLogger(),
    bodyLimit,
    webhooks: createWebhookReceiver({ db, registry, submissions, now: () => new Date() }),
  });
  return intake;
}

describeEachBackend('webhook intake', (db) => {
  for (const [serverName, start] of [['api', startApi], ['intake', startIntake]] as const) {
    describe(`on the ${serverName}`, () => {
      let server: Server;
      const bodyLimit = 32 * 1024;
      before(async () => {
        server = await start(db(), await registryWithSources(), bodyLimit);
      });
      after(() => server.close());

      async function deliver(source: string, delivery: { body: string | Buffer; headers: Record<string, string> }, contentType = 'application/json'): Promise<Reply> {
        const response = await fetch(`${server.url}/v1/webhooks/${source}`, { method: 'POST', body: delivery.body, headers: { 'content-type': contentType, ...delivery.headers } });
        return { status: response.status, headers: response.headers, body: (await response.json()) as Reply['body'] };
      }
      async function count(table: string): Promise<number> {
        const { rows } = await db().query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
        return Number(rows[0]?.n);
      }
      async function writes() {
        return { operations: await count('operations'), events: await count('operation_events'), ignored: await count('opsd_webhook_ignored') };
      }
      async function refusedWithNothingWritten(source: string, delivery: { body: string | Buffer; headers: Record<string, string> }, status: number, code: string, contentType?: string) {
        const before = await writes();
        const reply = await deliver(source, delivery, contentType);
        assert.equal(reply.status, status, JSON.stringify(reply.body));
        assert.equal(reply.body.error?.code, code);
        assert.deepEqual(await writes(), before);
      }

      it('GitHub: a signed pull_request becomes an operation ordered per pull request, with the raw delivery kept on its received event', async () => {
        const body = pullRequest(101);
        const delivery = githubDelivery(body);
        const reply = await deliver('github', delivery);
        assert.equal(reply.status, 202, JSON.stringify(reply.body));
        assert.equal(reply.body.state, 'PENDING');
        assert.equal(reply.body.ordering_key, 'acme/shop#101');
        assert.deepEqual(reply.body.payload, { action: 'opened', number: 101 });
        const { rows } = await db().query<{ data: { delivery: { source: string; delivery_id: string; event: string; headers: Record<string, string>; body: string } } }>(
          `SELECT data FROM operation_events WHERE operation_id = $1 AND type = 'received'`,
          [reply.body.id],
        );
        const kept = rows[0]?.data.delivery;
        assert.equal(kept?.source, 'github');
        assert.equal(kept?.event, 'pull_request');
        assert.equal(kept?.delivery_id, delivery.headers['x-github-delivery']);
        assert.equal(kept?.body, body, 'the raw body, byte for byte as text');
        assert.equal(kept?.headers['x-hub-signature-256'], delivery.headers['x-hub-signature-256']);
      });

      it('GitHub: the same delivery sent 20 times at once makes one operation; each answer is 202 or a 200 replay', async () => {
        const delivery = githubDelivery(pullRequest(202));
        const replies = await Promise.all(Array.from({ length: 20 }, () => deliver('github', delivery)));
        const ids = new Set(replies.map((r) => r.body.id));
        assert.equal(ids.size, 1);
        assert.equal(replies.filter((r) => r.status === 202).length, 1);
        assert.equal(replies.filter((r) => r.status === 200).length, 19);
        const { rows } = await db().query<{ n: string }>(`SELECT count(*) AS n FROM operations WHERE external_id = $1`, [`github:${delivery.headers['x-github-delivery']}`]);
        assert.equal(Number(rows[0]?.n), 1);
      });

      it('GitHub: a changed byte, a wrong secret and a missing signature are refused with 401 and nothing written', async () => {
        const good = githubDelivery(pullRequest(303));
        await refusedWithNothingWritten('github', { ...good, body: good.body.replace('303', '304') }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
        await refusedWithNothingWritten('github', githubDelivery(pullRequest(303), uniqueId('gh'), 'pull_request', 'not-the-secret'), 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
        const { 'x-hub-signature-256': _dropped, ...unsigned } = good.headers;
        await refusedWithNothingWritten('github', { body: good.body, headers: unsigned }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
        await refusedWithNothingWritten('github', { body: good.body, headers: { ...good.headers, 'x-hub-signature-256': 'sha256=zz' } }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
      });

      it('GitHub: an event the mapping ignores is answered 200 and recorded once as ignored', async () => {
        const delivery = githubDelivery(JSON.stringify({ zen: 'Keep it logically awesome.' }), uniqueId('gh'), 'ping');
        const before = await writes();
        const first = await deliver('github', delivery);
        assert.equal(first.status, 200);
        assert.equal(first.body.status, 'ignored');
        const again = await deliver('github', delivery);
        assert.equal(again.status, 200);
        assert.equal(again.headers.get('idempotent-replayed'), 'true');
        const after = await writes();
        assert.deepEqual(after, { ...before, ignored: before.ignored + 1 });
      });

      it('Stripe: accepted with either rolling secret, keyed by the event id; an old timestamp is 400 and a bad signature 401, nothing written', async () => {
        const body = JSON.stringify({ id: uniqueId('evt'), type: 'payment_intent.succeeded', data: { object: { amount: 2000 } } });
        const reply = await deliver('stripe', stripeDelivery(body, { secret: STRIPE_SECRETS[0] as string }));
        assert.equal(reply.status, 202, JSON.stringify(reply.body));
        assert.equal((reply.body.payload as { event: string }).event, 'payment_intent.succeeded');
        // Stripe signs each retry anew: a new timestamp, the same event, the same operation.
        const retry = await deliver('stripe', stripeDelivery(body, { at: Math.floor(Date.now() / 1000) - 60 }));
        assert.equal(retry.status, 200);
        assert.equal(retry.body.id, reply.body.id);
        const fresh = JSON.stringify({ id: uniqueId('evt'), type: 'charge.refunded' });
        await refusedWithNothingWritten('stripe', stripeDelivery(fresh, { at: Math.floor(Date.now() / 1000) - 301 }), 400, 'OPSD_ERR_WEBHOOK_TIMESTAMP');
        await refusedWithNothingWritten('stripe', stripeDelivery(fresh, { secret: 'whsec_wrong' }), 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
        await refusedWithNothingWritten('stripe', { body: fresh, headers: { 'stripe-signature': 't=abc,v1=00' } }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
        await refusedWithNothingWritten('stripe', { body: fresh, headers: {} }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
      });

      it('Standard Webhooks: verified with the standardwebhooks library and either secret of a rotation; out of tolerance is 400', async () => {
        const body = JSON.stringify({ type: 'invoice.paid', data: { n: 1 } });
        const first = await deliver('standard', standardDelivery(body, { secret: STANDARD_SECRETS[1] as string }));
        assert.equal(first.status, 202, JSON.stringify(first.body));
        const tooOld = standardDelivery(body, { at: new Date(Date.now() - 6 * 60_000) });
        await refusedWithNothingWritten('standard', tooOld, 400, 'OPSD_ERR_WEBHOOK_TIMESTAMP');
        const tooNew = standardDelivery(body, { at: new Date(Date.now() + 6 * 60_000) });
        await refusedWithNothingWritten('standard', tooNew, 400, 'OPSD_ERR_WEBHOOK_TIMESTAMP');
        const good = standardDelivery(body);
        await refusedWithNothingWritten('standard', { ...good, body: body.replace('1', '2') }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
        const { 'webhook-id': _id, ...noId } = good.headers;
        await refusedWithNothingWritten('standard', { body, headers: noId }, 401, 'OPSD_ERR_WEBHOOK_SIGNATURE');
      });

      it('plain HMAC: events outside the declared list are ignored; signed NUL, a lone surrogate or deep nesting is 400 with nothing written', async () => {
        const sign = (body: string, event: string) => ({ body, headers: { 'x-signature': `sha256=${hex(HMAC_SECRET, body)}`, 'x-delivery-id': uniqueId('d'), 'x-event': event } });
        const paid = await deliver('plain', sign('{"amount":1}', 'paid'));
        assert.equal(paid.status, 202, JSON.stringify(paid.body));
        const other = await deliver('plain', sign('{"amount":1}', 'refunded'));
        assert.equal(other.status, 200);
        assert.equal(other.body.status, 'ignored');
        await refusedWithNothingWritten('plain', sign('{"a":"x\\u0000y"}', 'paid'), 400, 'OPSD_ERR_UNSTORABLE_TEXT');
        await refusedWithNothingWritten('plain', sign('{"a":"\\ud800"}', 'paid'), 400, 'OPSD_ERR_UNSTORABLE_TEXT');
        await refusedWithNothingWritten('plain', sign('{"a":' + '['.repeat(5000) + ']'.repeat(5000) + '}', 'paid'), 400, 'OPSD_ERR_JSON_TOO_DEEP');
        await refusedWithNothingWritten('plain', sign('{"n":123456789012345678901234567890}', 'paid'), 400, 'OPSD_ERR_UNSAFE_NUMBER');
        await refusedWithNothingWritten('plain', sign('not json', 'paid'), 400, 'OPSD_ERR_MALFORMED_JSON');
      });

      it('an unknown source is 404, another content type 415 and an oversized body 413, nothing written', async () => {
        const delivery = githubDelivery(pullRequest(404));
        await refusedWithNothingWritten('gitlab', delivery, 404, 'OPSD_ERR_UNKNOWN_WEBHOOK_SOURCE');
        await refusedWithNothingWritten('github', delivery, 415, 'OPSD_ERR_UNSUPPORTED_MEDIA_TYPE', 'application/x-www-form-urlencoded');
        await refusedWithNothingWritten('github', githubDelivery(JSON.stringify({ pad: 'x'.repeat(bodyLimit) })), 413, 'OPSD_ERR_PAYLOAD_TOO_LARGE');
      });
    });
  }
});
