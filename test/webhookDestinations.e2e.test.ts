import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, spawnOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { createServerDatabase } from './support/serverDatabase.js';

/** Per destination host: 4 starts in any 600 ms; the breaker opens after 3 failures in 10 s and probes 1.5 s later. */
const RATE = { limit: 4, perMs: 600 };
const COOLDOWN_MS = 1500;
/** How long after the third failure an attempt claimed before the breaker's write may still call. */
const STRAGGLER_MS = 300;

interface Request {
  at: number;
  path: string;
  webhookId: string;
}

/** A subscriber on 127.0.0.1 whose answer to each request `answer` decides (status, headers). */
async function receiver(answer: (request: Request, index: number) => { status: number; headers?: Record<string, string> }) {
  const requests: Request[] = [];
  const server: Server = createServer((incoming, response) => {
    const request = { at: Date.now(), path: incoming.url ?? '', webhookId: String(incoming.headers['webhook-id']) };
    requests.push(request);
    incoming.resume();
    incoming.on('end', () => {
      const { status, headers } = answer(request, requests.length - 1);
      response.writeHead(status, headers).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { requests, url: (path: string) => `http://127.0.0.1:${port}${path}`, host: `127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The most instants in any window of `ms` that starts at one of them. */
function busiest(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  return Math.max(0, ...sorted.map((t) => sorted.filter((u) => u >= t && u < t + ms).length));
}

interface Delivery {
  id: string;
  state: string;
  attempts: number;
  payload: { webhook_id: string };
}

describe('webhook deliveries are limited per destination host (opsd start on PostgreSQL)', { skip: process.env.DATABASE_URL ? false : 'DATABASE_URL is not set: outbound webhooks are tested on a PostgreSQL server' }, () => {
  let database: { url: string; drop(): Promise<void> };
  let opsd: OpsdProcess;
  before(async () => {
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    opsd = await spawnOpsd(['start', '--port', '0'], {
      DATABASE_URL: database.url,
      REDIS_URL: '',
      OPSD_HTTP_ALLOW: '127.0.0.1',
      OPSD_POLL_INTERVAL_MS: '200',
      OPSD_WEBHOOK_RATE: `${RATE.limit}/${RATE.perMs}`,
      OPSD_WEBHOOK_BREAKER: `3/10000/${COOLDOWN_MS}`,
    });
  });
  after(async () => {
    opsd?.child.kill('SIGTERM');
    await opsd?.exited;
    await database?.drop();
  });

  const subscribe = async (url: string) => {
    const created = await http<{ id: string }>(`${opsd.url}/v1/subscriptions`, { method: 'POST', body: { url, events: ['operation.completed'], types: ['demo.echo'] } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.id;
  };
  const unsubscribe = async (ids: readonly string[]) => {
    for (const id of ids) assert.equal((await fetch(`${opsd.url}/v1/subscriptions/${id}`, { method: 'DELETE' })).status, 204);
  };
  const submit = async (count: number) => {
    for (let i = 0; i < count; i += 1) {
      const reply = await http(`${opsd.url}/v1/operations`, { method: 'POST', body: { type: 'demo.echo', external_id: uniqueId('op'), payload: { i } } });
      assert.equal(reply.status, 202);
    }
  };
  const deliveries = async (subscription: string) =>
    (await http<{ deliveries: Delivery[] }>(`${opsd.url}/v1/subscriptions/${subscription}/deliveries`)).body.deliveries;
  const destination = async (host: string) => {
    const view = await http<{ resources: { name: string; destinations?: { destination: string; breaker: { state: string } }[] }[] }>(`${opsd.url}/v1/admin/resources`);
    return view.body.resources.find((r) => r.name === 'webhook-destinations')?.destinations?.find((d) => d.destination === host);
  };

  it('two subscriptions on one host share its rate: starts and calls stay within it together', async () => {
    const sink = await receiver(() => ({ status: 204 }));
    const subscriptions = [await subscribe(sink.url('/a')), await subscribe(sink.url('/b'))];
    try {
      await submit(6);
      await waitFor('12 deliveries', () => sink.requests.length === 12, { timeoutMs: 30_000 });
      assert.deepEqual(sink.requests.map((r) => r.path).filter((p) => p === '/a').length, 6, 'each subscription gets its six');
      const delivered = (await Promise.all(subscriptions.map(deliveries))).flat();
      assert.equal(delivered.length, 12);
      const starts = (
        await Promise.all(delivered.map(async (d) => (await http<{ events: { type: string; at: string }[] }>(`${opsd.url}/v1/operations/${d.id}/events`)).body.events))
      )
        .flat()
        .filter((e) => e.type === 'started')
        .map((e) => Date.parse(e.at));
      // Starts, stamped under the destination's lock, hold the rate exactly; calls, a commit and a request later, less that lag.
      assert.ok(busiest(starts, RATE.perMs) <= RATE.limit, `${busiest(starts, RATE.perMs)} starts in ${RATE.perMs} ms on one host`);
      assert.ok(busiest(sink.requests.map((r) => r.at), 400) <= RATE.limit, `${busiest(sink.requests.map((r) => r.at), 400)} calls in 400 ms on one host`);
    } finally {
      await unsubscribe(subscriptions);
      await sink.close();
    }
  });

  it("a failing host's breaker holds its deliveries (attempts unburned) while another host's flow, then lets them all through in order", async () => {
    let healthy = false;
    const failing = await receiver(() => ({ status: healthy ? 204 : 500 }));
    const other = await receiver(() => ({ status: 204 }));
    const toFailing = [await subscribe(failing.url('/a')), await subscribe(failing.url('/b')), await subscribe(failing.url('/c'))];
    const toOther = await subscribe(other.url('/x'));
    try {
      await submit(4);
      await waitFor('the failing host to see 3 failures', () => failing.requests.length >= 3, { timeoutMs: 15_000 });
      const thirdFailure = (failing.requests[2] as Request).at;
      await waitFor('the other host to get all 4', () => other.requests.length === 4, { timeoutMs: 15_000 });
      assert.equal((await destination(failing.host))?.breaker.state === 'closed', false, 'the failing host is open or probing');
      assert.equal((await destination(other.host))?.breaker.state, 'closed');

      // Two cool-downs from the third failure: one probe after each, nothing in between. The window
      // is counted from that failure, not from this wait, which starts once the other host has all of
      // its deliveries: a third probe comes no sooner than three cool-downs after it.
      const WINDOW_MS = 2 * COOLDOWN_MS + 500;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, thirdFailure + WINDOW_MS - Date.now())));
      // The breaker opens once the third failure is written; an attempt claimed in the few ms before may still go out.
      const later = failing.requests.slice(3).map((r) => r.at - thirdFailure).filter((ms) => ms < WINDOW_MS);
      const stragglers = later.filter((ms) => ms < STRAGGLER_MS);
      const probes = later.filter((ms) => ms >= STRAGGLER_MS);
      assert.ok(stragglers.length <= 1, `${stragglers.length} calls right after the third failure`);
      assert.ok(probes.every((ms) => ms >= COOLDOWN_MS - 50), `a call ${Math.min(...probes)} ms after the breaker opened (cool-down ${COOLDOWN_MS} ms)`);
      assert.ok(probes.every((ms, i) => i === 0 || ms - (probes[i - 1] as number) >= COOLDOWN_MS - 50), `probes closer than a cool-down: ${probes.join(', ')} ms after the third failure`);
      assert.ok(probes.length <= 2, `${probes.length} probes in two cool-downs: ${probes.join(', ')} ms after the third failure`);
      const held = (await Promise.all(toFailing.map(deliveries))).flat();
      assert.equal(held.length, 12);
      // A probe may be under way as this looks: at most one delivery running, one attempt not yet called.
      assert.ok(held.every((d) => d.state === 'PENDING' || d.state === 'PROCESSING'), 'waiting deliveries stay PENDING');
      assert.ok(held.filter((d) => d.state === 'PROCESSING').length <= 1);
      const attempts = held.reduce((sum, d) => sum + d.attempts, 0);
      assert.ok(attempts <= failing.requests.length + 1, `${attempts} attempts for ${failing.requests.length} calls: waiting spent some`);

      healthy = true;
      // One webhook-id per outcome (the same for every subscriber): a delivery is a path and an id.
      const delivered = () => new Set(failing.requests.map((r) => `${r.path} ${r.webhookId}`)).size;
      await waitFor('every delivery to the recovered host', () => delivered() === 12, { timeoutMs: 30_000 });
      for (const [i, id] of toFailing.entries()) {
        const path = ['/a', '/b', '/c'][i] as string;
        const queued = (await deliveries(id)).map((d) => d.payload.webhook_id);
        const arrived = [...new Set(failing.requests.filter((r) => r.path === path).map((r) => r.webhookId))];
        assert.deepEqual(arrived, queued, `subscription ${path}: delivered in the order queued`);
      }
      await waitFor('every delivery COMPLETED', async () => (await Promise.all(toFailing.map(deliveries))).flat().every((d) => d.state === 'COMPLETED'));
      assert.equal((await destination(failing.host))?.breaker.state, 'closed');
    } finally {
      await unsubscribe([...toFailing, toOther]);
      await Promise.all([failing.close(), other.close()]);
    }
  });

  it('a host that answers 429 with Retry-After pauses only itself, and the deferred attempt is not counted', async () => {
    const RETRY_AFTER_S = 2;
    const throttling = await receiver((_request, index) => (index === 0 ? { status: 429, headers: { 'retry-after': String(RETRY_AFTER_S) } } : { status: 204 }));
    const other = await receiver(() => ({ status: 204 }));
    const toThrottling = [await subscribe(throttling.url('/a')), await subscribe(throttling.url('/b'))];
    const toOther = await subscribe(other.url('/x'));
    try {
      await submit(1);
      await waitFor('the 429', () => throttling.requests.length >= 1, { timeoutMs: 15_000 });
      const throttledAt = (throttling.requests[0] as Request).at;
      await waitFor('the other host to get its first', () => other.requests.length >= 1, { timeoutMs: 15_000 });
      await submit(1);
      await waitFor('the other host to get its second', () => other.requests.length === 2, { timeoutMs: 15_000 });
      assert.ok((other.requests[1] as Request).at < throttledAt + RETRY_AFTER_S * 1000, 'the other host is served during the pause');
      await waitFor('all four deliveries to the throttling host', () => throttling.requests.length === 5, { timeoutMs: 20_000 });
      const afterPause = throttling.requests.slice(1).map((r) => r.at);
      assert.ok(afterPause.every((at) => at >= throttledAt + RETRY_AFTER_S * 1000 - 50), `a call ${Math.min(...afterPause) - throttledAt} ms into a ${RETRY_AFTER_S} s pause`);
      const throttledSubscription = toThrottling[(throttling.requests[0] as Request).path === '/a' ? 0 : 1] as string;
      const first = (await deliveries(throttledSubscription))[0] as Delivery;
      await waitFor('the deferred delivery to complete', async () => (await http<{ state: string }>(`${opsd.url}/v1/operations/${first.id}`)).body.state === 'COMPLETED');
      const events = (await http<{ events: { type: string }[] }>(`${opsd.url}/v1/operations/${first.id}/events`)).body.events.map((e) => e.type);
      assert.deepEqual(events, ['received', 'started', 'deferred', 'started', 'completed']);
      assert.equal((await http<{ attempts: number }>(`${opsd.url}/v1/operations/${first.id}`)).body.attempts, 1);
    } finally {
      await unsubscribe([...toThrottling, toOther]);
      await Promise.all([throttling.close(), other.close()]);
    }
  });
});
