import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, spawnOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { createServerDatabase } from './support/serverDatabase.js';

interface Received {
  id: string;
  type: string;
  data: { id: string; external_id: string; state: string };
}

/** A subscriber on 127.0.0.1 that verifies every delivery with the Standard Webhooks library and keeps each webhook-id once. */
function subscriber(secret: () => string) {
  const received: Received[] = [];
  const seen = new Map<string, number>();
  let refusedSignatures = 0;
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        const event = new Webhook(secret()).verify(body, request.headers as Record<string, string>) as Omit<Received, 'id'>;
        const id = request.headers['webhook-id'] as string;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        if (seen.get(id) === 1) received.push({ id, ...event });
        response.writeHead(204).end();
      } catch {
        refusedSignatures += 1;
        response.writeHead(400).end();
      }
    });
  });
  return { server, received, seen, refusedSignatures: () => refusedSignatures };
}

describe('outbound status webhooks (opsd start on PostgreSQL, a subscriber that is down at first)', { skip: process.env.DATABASE_URL ? false : 'DATABASE_URL is not set: outbound webhooks are tested on a PostgreSQL server' }, () => {
  let database: { url: string; drop(): Promise<void> };
  let opsd: OpsdProcess;
  before(async () => {
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    opsd = await spawnOpsd(['start', '--port', '0'], { DATABASE_URL: database.url, REDIS_URL: '', OPSD_HTTP_ALLOW: '127.0.0.1', OPSD_POLL_INTERVAL_MS: '200' });
  });
  after(async () => {
    opsd?.child.kill('SIGTERM');
    await opsd?.exited;
    await database?.drop();
  });

  it('delivers every operation.completed once, signed, in the order the outcomes were recorded, to a subscriber down for the first 10 s', async () => {
    // A port that nobody listens on yet: deliveries meet a refused connection until the subscriber starts.
    let secret = '';
    const sink = subscriber(() => secret);
    await new Promise<void>((resolve) => sink.server.listen(0, '127.0.0.1', resolve));
    const { port } = sink.server.address() as AddressInfo;
    await new Promise<void>((resolve) => sink.server.close(() => resolve()));

    const created = await http<{ id: string; secret: string }>(`${opsd.url}/v1/subscriptions`, {
      method: 'POST',
      body: { url: `http://127.0.0.1:${port}/hooks`, events: ['operation.completed'], types: ['demo.echo'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.body.secret, /^whsec_/);
    secret = created.body.secret;
    const listed = await http<{ subscriptions: { id: string; secret?: string }[] }>(`${opsd.url}/v1/subscriptions`);
    assert.deepEqual(listed.body.subscriptions.map((s) => [s.id, s.secret]), [[created.body.id, undefined]], 'the secret is shown once');

    const key = uniqueId('key');
    const submitted: string[] = [];
    for (let i = 0; i < 8; i += 1) {
      const reply = await http<{ id: string }>(`${opsd.url}/v1/operations`, { method: 'POST', body: { type: 'demo.echo', external_id: uniqueId('op'), ordering_key: key, payload: { i } } });
      assert.equal(reply.status, 202);
      submitted.push(reply.body.id);
    }
    // A type the subscription does not name, and an outcome it does not ask for: neither is delivered.
    await http(`${opsd.url}/v1/operations`, { method: 'POST', body: { type: 'demo.sleep', external_id: uniqueId('other'), payload: { ms: 1 } } });

    await new Promise((resolve) => setTimeout(resolve, 10_000));
    assert.equal(sink.received.length, 0);
    const whileDown = await http<{ deliveries: { state: string; attempts: number; error: { code: string } | null }[] }>(`${opsd.url}/v1/subscriptions/${created.body.id}/deliveries`);
    assert.equal(whileDown.body.deliveries.length, 8);
    assert.ok(whileDown.body.deliveries[0]!.attempts >= 1, 'the first delivery has been tried against the closed port');
    assert.equal(whileDown.body.deliveries[0]!.error?.code, 'OPSD_HTTP_NETWORK_ERROR');

    await new Promise<void>((resolve) => sink.server.listen(port, '127.0.0.1', resolve));
    try {
      await waitFor('all 8 deliveries', () => sink.received.length === 8, { timeoutMs: 60_000 });
      assert.deepEqual(sink.received.map((r) => r.data.id), submitted, 'in the order the outcomes were recorded');
      assert.ok(sink.received.every((r) => r.type === 'operation.completed' && r.data.state === 'COMPLETED'));
      assert.deepEqual([...sink.seen.values()], Array(8).fill(1), 'each webhook-id arrives once');
      assert.equal(sink.refusedSignatures(), 0);
      // The receiver answers before the worker records the last delivery's outcome.
      const states = async () => (await http<{ deliveries: { state: string }[] }>(`${opsd.url}/v1/subscriptions/${created.body.id}/deliveries`)).body.deliveries.map((d) => d.state);
      await waitFor('every delivery to be COMPLETED', async () => (await states()).every((state) => state === 'COMPLETED'));
      assert.equal((await states()).length, 8);
    } finally {
      await new Promise<void>((resolve) => sink.server.close(() => resolve()));
    }
  });

  it('an outcome whose transaction commits late is still announced, after later outcomes were: its outbox row commits with it', async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const deliveries = async (id: string) => (await http<{ deliveries: { payload: { event: string } }[] }>(`${opsd.url}/v1/subscriptions/${id}/deliveries`)).body.deliveries;
    try {
      const created = await http<{ id: string }>(`${opsd.url}/v1/subscriptions`, { method: 'POST', body: { url: 'http://127.0.0.1:9/never', events: ['operation.cancelled', 'operation.completed'] } });
      const op = await http<{ id: string }>(`${opsd.url}/v1/operations`, { method: 'POST', body: { type: 'demo.sleep', external_id: uniqueId('late'), payload: { ms: 1 }, run_at: '2099-01-01T00:00:00Z' } });
      // An outcome recorded in a transaction that stays open while a later one commits and is relayed.
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO operation_events (operation_id, seq, type, data, occurred_at)
         SELECT id, version + 1, 'cancelled', '{}'::jsonb, now() FROM operations WHERE id = $1`,
        [op.body.id],
      );
      await http(`${opsd.url}/v1/operations`, { method: 'POST', body: { type: 'demo.echo', external_id: uniqueId('later'), payload: {} } });
      await waitFor('the later outcome to be queued', async () => (await deliveries(created.body.id)).length === 1);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.deepEqual((await deliveries(created.body.id)).map((d) => d.payload.event), ['operation.completed'], 'nothing of the open transaction is visible');
      await client.query('COMMIT');
      await waitFor('the late outcome to be queued', async () => (await deliveries(created.body.id)).length === 2, { timeoutMs: 10_000 });
      assert.deepEqual((await deliveries(created.body.id)).map((d) => d.payload.event), ['operation.completed', 'operation.cancelled']);
      const removed = await fetch(`${opsd.url}/v1/subscriptions/${created.body.id}`, { method: 'DELETE' });
      assert.equal(removed.status, 204);
    } finally {
      await client.end();
    }
  });
});
